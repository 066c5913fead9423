"""The DHCP server's settings model: one mapping of TOML-form values -> `DhcpConfig`.

dhcpd, bootpd and pxed all hold their settings as one mapping keyed like dhcpd's long
flags and TOML file (``range = ["10.0.0.100", "10.0.0.200"]``, ``lease-time = 3600``,
``hosts = [...]``, ``[[subnet]]``...): built-in defaults, then the ``--config`` file, then
the flags given. This module is the one place that turns such a mapping, plus the
interface and boot file, into the engine's `DhcpConfig`, checking every value against
what the wire can carry; it knows nothing of argparse, so a tool (pxed) composes it with
its other settings instead of borrowing another tool's command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import socket
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from ptftpd.dhcp.balance import DEFAULT_PEER_TIMEOUT
from ptftpd.dhcp.engine import DhcpConfig
from ptftpd.dhcp.settings import (
    MAX_LEASE_TIME,
    ConfigError,
    check_duration,
    check_int,
    ip,
    ips,
    parse_host,
    parse_options,
    parse_range,
    parse_subnets,
    text,
)
from ptftpd.dhcp.store import default_leases_path
from ptftpd.dhcp.toml_types import KEY_TYPES
from ptftpd.fields import Field
from ptftpd.netif import interface_addresses

__all__ = [
    "DEFAULT_LEASE_TIME",
    "RESTART_ONLY",
    "dhcp_config",
    "keep_restart_only",
    "lease_location",
    "peer_timeout_field",
]

DEFAULT_LEASE_TIME = 3600
DEFAULT_PORT = 67
PEER_TIMEOUT_RANGE = (0.5, 600.0)

# What a reload cannot change (name in the reloaded: line -> DhcpConfig field): the
# socket, the addresses taken from IFACE at start and the lease store opened then.
RESTART_ONLY = {
    "interface": "interface",
    "port": "port",
    "server address": "server_ip",
    "network": "network",
    "leases": "leases_path",
    "leases url": "leases_url",
    "lease-sync": "lease_sync",
    "peer-timeout": "peer_timeout",
}


def keep_restart_only(old: DhcpConfig, new: DhcpConfig) -> tuple[DhcpConfig, list[str]]:
    """The one reload rule of every DHCP server: `new` applies but for the restart-only
    settings, which keep `old`'s values; returns it and the names of those `new` wanted
    changed (for the reloaded: line)."""
    changed = [
        name for name, attr in RESTART_ONLY.items() if getattr(old, attr) != getattr(new, attr)
    ]
    kept = {attr: getattr(old, attr) for attr in RESTART_ONLY.values()}
    return dataclasses.replace(new, client_port=old.client_port, **kept), changed


def _next_server(tftp: object) -> tuple[IPv4Address | None, str | None]:
    """(siaddr, name) for `tftp-server`: an address, or a name resolved once now."""
    if tftp is None:
        return None, None
    name = text(tftp, ("tftp-server",), "an address or host name string")
    try:
        return IPv4Address(name), None
    except ValueError:
        pass
    try:
        return IPv4Address(socket.gethostbyname(name)), name
    except (OSError, UnicodeError, ValueError):
        raise ConfigError(f"cannot resolve TFTP server name {name!r}", ("tftp-server",)) from None


def _seconds(value: object, key: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"expected seconds, got {value!r}", (key,))
    if not lo <= value <= hi:
        raise ConfigError(f"must be between {lo:g} and {hi:g} seconds", (key,))
    return float(value)


def _peer_seconds(text: str) -> float:
    try:
        return _seconds(float(text), "peer-timeout", *PEER_TIMEOUT_RANGE)
    except (ValueError, ConfigError):
        lo, hi = PEER_TIMEOUT_RANGE
        raise argparse.ArgumentTypeError(
            f"not a number of seconds between {lo:g} and {hi:g}: {text}"
        ) from None


def peer_timeout_field(group: str | None = None) -> Field:
    """The `peer-timeout` setting (a flag and a file key) of every DHCP server sharing
    its leases in PostgreSQL: dhcpd, bootpd, pxed (DHCPv4 and DHCPv6) and
    `python -m ptftpd.dhcp6`."""
    return Field(
        "peer-timeout",
        "with a postgresql:// --leases: a server sharing the database that has not "
        "beaten for this long loses its share of the clients (RFC 3074 hash buckets) "
        "to the others until it is back (3)",
        group=group,
        parse=_peer_seconds,
        default=DEFAULT_PEER_TIMEOUT,
        metavar="SECONDS",
        live=False,
        check=KEY_TYPES["peer-timeout"],
    )


def _switch(settings: Mapping[str, object], key: str) -> bool:
    value = settings.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"expected true or false, got {value!r}", (key,))
    return value


def _optional_text(settings: Mapping[str, object], key: str) -> str | None:
    value = settings.get(key)
    return None if value is None else text(value, (key,))


def dhcp_config(settings: Mapping[str, object], iface: str, bootfile: str, tool: str) -> DhcpConfig:
    """The `DhcpConfig` for serving `iface`; raises ConfigError (a bad setting) or
    InterfaceError (`iface` cannot be served)."""
    addrs = interface_addresses(iface, family=4)
    here = addrs[0]
    if here.interface is None:
        raise ConfigError(f"{iface} is not an address of any interface here")  # IFACE
    network = IPv4Network(str(here.network))

    next_server, tftp_name = _next_server(settings.get("tftp-server"))
    gateway = settings.get("gateway")
    rng = settings.get("range")
    start, end = parse_range(rng, network) if rng is not None else (None, None)

    hosts_raw = settings.get("hosts") or []
    if not isinstance(hosts_raw, list):
        raise ConfigError(f"expected a list of hosts, got {hosts_raw!r}", ("hosts",))
    hosts = tuple(parse_host(h, ("hosts", i)) for i, h in enumerate(hosts_raw))
    for i, h in enumerate(hosts):
        if h.address not in network:
            raise ConfigError(f"{h.mac}: {h.address} is not on {network}", ("hosts", i))
    exclude = set(ips(settings.get("exclude") or [], "exclude"))
    # The server's other addresses on this interface are not for clients either.
    others = sorted({IPv4Address(str(a.address)) for a in addrs[1:] if a.address.version == 4})

    lease_time = check_duration(
        settings.get("lease-time", DEFAULT_LEASE_TIME), "lease-time", 1, MAX_LEASE_TIME
    )
    port = check_int(settings.get("port", DEFAULT_PORT), "port", 1, 65534)
    leases_path, leases_url = lease_location(settings.get("leases"), tool, iface)
    lease_sync = settings.get("lease-sync", "normal")
    if lease_sync not in ("normal", "full"):
        raise ConfigError(f"must be normal or full, not {lease_sync!r}", ("lease-sync",))
    classes = settings.get("pxe-vendor-class") or []
    if not isinstance(classes, list):
        raise ConfigError(f"expected a list of strings, got {classes!r}", ("pxe-vendor-class",))
    prefixes = ("PXEClient", *(text(p, ("pxe-vendor-class",)) for p in classes))

    return DhcpConfig(
        server_ip=IPv4Address(str(here.address)),
        network=network,
        bootfile=bootfile,
        interface=here.interface,
        next_server=next_server,
        tftp_server_name=tftp_name,
        routers=None if gateway is None else (ip(gateway, "gateway"),),
        dns=ips(settings.get("dns") or [], "dns"),
        domain_name=_optional_text(settings, "domain"),
        answer_all=_switch(settings, "all"),
        pxe_vendor_prefixes=prefixes,
        range_start=start,
        range_end=end,
        static_hosts=hosts,
        exclude=tuple(sorted(exclude)),
        other_addresses=tuple(others),
        lease_time=lease_time,
        extra_options=parse_options(settings.get("options", {})),
        leases_path=leases_path,
        leases_url=leases_url,
        lease_sync=str(lease_sync),
        port=port,
        client_port=68 if port == DEFAULT_PORT else port + 1,
        reply_delay=_seconds(settings.get("reply-delay", 0.0), "reply-delay", 0, 10),
        peer_timeout=_seconds(
            settings.get("peer-timeout", DEFAULT_PEER_TIMEOUT), "peer-timeout", *PEER_TIMEOUT_RANGE
        ),
        ipxe_bootfile=_optional_text(settings, "ipxe-bootfile"),
        authoritative=_switch(settings, "authoritative"),
        subnets=parse_subnets(settings.get("subnet", []), network),
    )


_DB_SCHEMES = ("postgresql:", "postgres:")
# `mysql://...`, `postgressql://...` (a Path folds `//` to `/`): a mistyped URI, never a file
_OTHER_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/")


def lease_location(value: object, tool: str, iface: str) -> tuple[Path | None, str | None]:
    """(SQLite file, None) or (None, PostgreSQL URI) from the `leases` setting.

    A value that went through a `Path` arrives with `//` folded to `/`: the URI's
    authority is put back (`postgresql:/u@h/db` -> `postgresql://u@h/db`, and
    `postgresql:/db?host=/run` -> `postgresql:///db?host=/run`)."""
    if value is None:
        return default_leases_path(tool, iface), None
    if not isinstance(value, (str, Path)):
        raise ConfigError(f"expected a path or a postgresql:// URI, got {value!r}", ("leases",))
    text = str(value)
    scheme = next((s for s in _DB_SCHEMES if text.startswith(s)), None)
    if scheme is None:
        if _OTHER_SCHEME.match(text):
            msg = f"{text!r}: expected a file path or a postgresql://USER@HOST/DB URI"
            raise ConfigError(msg, ("leases",))
        path = Path(text)
        try:
            missing = not path.parent.is_dir()
        except OSError:  # a directory this user may not look into: the start will say
            missing = False
        if missing:
            msg = f"{text!r}: directory {str(path.parent)!r} does not exist (create it first)"
            raise ConfigError(msg, ("leases",))
        return path, None
    rest = text[len(scheme) :]
    if isinstance(value, Path) and not rest.startswith("//"):
        tail = rest.lstrip("/")
        first = tail.split("?", 1)[0]
        rest = ("//" if "/" in first else "///") + tail
    if not rest.startswith("//"):
        raise ConfigError(f"{text!r} is not a postgresql://USER@HOST/DB URI", ("leases",))
    return None, scheme + rest
