"""The type every top-level key of the DHCP TOML file must have, checked before use.

TOML values are typed; a value of the wrong type must be a one-line error naming the
key, the value and what is expected, never a traceback later on (``domain = 5``) nor a
silent reinterpretation (``pxe-vendor-class = "HW-Client"`` read as single letters,
``all = "no"`` read as true, ``lease-time = "3600"`` read as a number).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ptftpd.dhcp.settings import ConfigError


def _is_text(v: object) -> bool:
    return isinstance(v, str)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_bool(v: object) -> bool:
    return isinstance(v, bool)


def _is_table(v: object) -> bool:
    return isinstance(v, Mapping)


def _list_of(check: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda v: isinstance(v, list) and all(check(item) for item in v)


def _text_or_texts(v: object) -> bool:
    return _is_text(v) or _list_of(_is_text)(v)


def _pair_of_texts(v: object) -> bool:
    return _list_of(_is_text)(v) and isinstance(v, list) and len(v) == 2


def _host(v: object) -> bool:
    return _is_text(v) or _is_table(v)


KEY_TYPES: dict[str, tuple[Callable[[object], bool], str]] = {
    "range": (_pair_of_texts, 'two addresses, e.g. ["10.0.0.100", "10.0.0.200"]'),
    "lease-time": (_is_int, "an integer number of seconds"),
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
    "pxe-vendor-class": (_list_of(_is_text), 'a list of strings, e.g. ["HW-Client"]'),
    "port": (_is_int, "an integer UDP port"),
    "subnet": (_list_of(_is_table), "[[subnet]] tables"),
}


def check_types(toml: Mapping[str, object], source: object) -> None:
    """Raise ConfigError (one line) for the first key whose value has the wrong type,
    or for an unknown key (listing the valid ones)."""
    unknown = sorted(set(toml) - set(KEY_TYPES))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: "
            f"{', '.join(sorted(KEY_TYPES))}"
        )
    for key, value in toml.items():
        check, expected = KEY_TYPES[key]
        if not check(value):
            shown = repr(value)
            if len(shown) > 60:
                shown = shown[:57] + "..."
            raise ConfigError(f"{source}: {key} = {shown}: expected {expected}")
