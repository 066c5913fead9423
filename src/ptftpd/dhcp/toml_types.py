"""The TOML type of each DHCP setting, checked before use (dhcpd, bootpd and pxed files).

These are the keys whose type is more than their flag's (lists, tables, keys only a file
holds); every other key takes its field's TOML type (`ptftpd.fields`).

TOML values are typed; a value of the wrong type must be a one-line error naming the
key, the value and what is expected, never a traceback later on (``domain = 5``) nor a
silent reinterpretation (``pxe-vendor-class = "HW-Client"`` read as single letters,
``all = "no"`` read as true, ``lease-time = "3600"`` read as a number).
"""

from __future__ import annotations

from collections.abc import Callable

from ptftpd.config import is_bool as _is_bool
from ptftpd.config import is_int as _is_int
from ptftpd.config import is_number as _is_number
from ptftpd.config import is_table as _is_table
from ptftpd.config import is_text as _is_text
from ptftpd.config import list_of as _list_of
from ptftpd.values import is_duration


def _text_or_texts(v: object) -> bool:
    return _is_text(v) or _list_of(_is_text)(v)


def _pair_of_texts(v: object) -> bool:
    return _list_of(_is_text)(v) and isinstance(v, list) and len(v) == 2


def _host(v: object) -> bool:
    return _is_text(v) or _is_table(v)


KEY_TYPES: dict[str, tuple[Callable[[object], bool], str]] = {
    "range": (_pair_of_texts, 'two addresses, e.g. ["10.0.0.100", "10.0.0.200"]'),
    "lease-time": (is_duration, 'seconds or a duration ("30m", "12h", "7d")'),
    "leases": (_is_text, "a file path string"),
    "lease-sync": (_is_text, 'a string, "normal" or "full"'),
    "gateway": (_is_text, "an IPv4 address string"),
    "tftp-server": (_is_text, "an address or host name string"),
    "dns": (_text_or_texts, "an IPv4 address string or a list of them"),
    "exclude": (_text_or_texts, "an IPv4 address string or a list of them"),
    "domain": (_is_text, "a domain name string"),
    "ipxe-bootfile": (_is_text, "a file name or URL string"),
    "all": (_is_bool, "true or false"),
    "authoritative": (_is_bool, "true or false"),
    "hosts": (_list_of(_host), 'a list of "MAC=IP[,NAME]" strings or {mac, ip, name} tables'),
    "options": (_is_table, "a table of option = value"),
    "reply-delay": (_is_number, "a number of seconds"),
    "peer-timeout": (_is_number, "a number of seconds"),
    "pxe-vendor-class": (_list_of(_is_text), 'a list of strings, e.g. ["HW-Client"]'),
    "port": (_is_int, "an integer UDP port"),
    "subnet": (_list_of(_is_table), "[[subnet]] tables"),
}
