"""Checked conversion of dhcpd/bootpd settings (TOML values and flags) into the typed
values the engine uses, and the `[[subnet]]` tables.

Why here: every numeric setting ends up in a fixed-size wire field (lease time: 32
bits, with all ones meaning "infinite"), so it is checked against that size once, at
start-up, with a one-line message, instead of failing on the first DISCOVER.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from ptftpd.config import ConfigError
from ptftpd.dhcp.leases import StaticHost
from ptftpd.dhcp.options import OptionValueError, encode_value, option_by_name
from ptftpd.dhcp.scope import SubnetConfig

__all__ = [
    "MAX_LEASE_TIME",
    "ConfigError",
    "check_int",
    "ip",
    "ips",
    "parse_host",
    "parse_options",
    "parse_range",
    "parse_subnets",
]

# 0xFFFFFFFF on the wire means "infinite" (RFC 2132 9.2): the longest finite lease.
MAX_LEASE_TIME = 0xFFFFFFFE


def check_int(value: object, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"{what}: expected an integer, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{what}: expected an integer, got {value!r}") from None
    if not low <= number <= high:
        raise ConfigError(f"{what} must be between {low} and {high}, not {number}")
    return number


def ip(value: object, what: str) -> IPv4Address:
    try:
        return IPv4Address(str(value))
    except ValueError:
        raise ConfigError(f"{what}: not an IPv4 address: {value!r}") from None


def ips(value: object, what: str) -> tuple[IPv4Address, ...]:
    items = value if isinstance(value, (list, tuple)) else [value]
    return tuple(ip(v, what) for v in items)


def parse_host(spec: object) -> StaticHost:
    """`MAC=IP[,NAME]` or a TOML table `{mac, ip, name}`."""
    if isinstance(spec, Mapping):
        mac, addr, name = spec.get("mac"), spec.get("ip"), spec.get("name")
    elif isinstance(spec, str) and "=" in spec:
        mac, rest = spec.split("=", 1)
        addr, _, name = rest.partition(",")
    else:
        raise ConfigError(f"host: expected MAC=IP[,NAME], got {spec!r}")
    parts = str(mac).strip().lower().replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ConfigError(f"host: bad MAC address {mac!r}")
    try:
        bytes.fromhex("".join(parts))
    except ValueError:
        raise ConfigError(f"host: bad MAC address {mac!r}") from None
    return StaticHost(":".join(parts), ip(addr, "host"), str(name) if name else None)


def parse_options(opts: object, what: str = "options") -> dict[int, bytes]:
    if not isinstance(opts, Mapping):
        raise ConfigError(f"{what}: expected a table")
    extra: dict[int, bytes] = {}
    try:
        for name, value in opts.items():
            spec = option_by_name(str(name))
            extra[spec.code] = encode_value(spec.code, value)
    except OptionValueError as exc:
        raise ConfigError(f"{what}: {exc}") from None
    return extra


def parse_range(
    rng: object, network: IPv4Network, what: str = "range"
) -> tuple[IPv4Address, IPv4Address]:
    if not isinstance(rng, (list, tuple)) or len(rng) != 2:
        raise ConfigError(f"{what}: expected [START, END]")
    start, end = ip(rng[0], what), ip(rng[1], what)
    if start not in network or end not in network:
        raise ConfigError(f"{what} {start}..{end} is not inside {network}")
    if start > end:
        raise ConfigError(f"{what} start {start} is after end {end}")
    return start, end


_SUBNET_KEYS = {
    "network",
    "range",
    "gateway",
    "dns",
    "domain",
    "bootfile",
    "tftp-server",
    "ipxe-bootfile",
    "hosts",
    "exclude",
    "lease-time",
    "options",
}


def _subnet(table: object, index: int) -> SubnetConfig:
    where = f"subnet {index + 1}"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: expected a table")
    raw: dict[str, Any] = {str(k).replace("_", "-"): v for k, v in table.items()}
    unknown = sorted(set(raw) - _SUBNET_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: "
            f"{', '.join(sorted(_SUBNET_KEYS))}"
        )
    if "network" not in raw:
        raise ConfigError(f"{where}: network = \"A.B.C.D/N\" is required")
    try:
        network = IPv4Network(str(raw["network"]))
    except ValueError as exc:
        raise ConfigError(f"{where}: bad network {raw['network']!r}: {exc}") from None
    where = f"subnet {network}"
    start = end = None
    if "range" in raw:
        start, end = parse_range(raw["range"], network, f"{where}: range")
    hosts = tuple(parse_host(h) for h in raw.get("hosts", []))
    for h in hosts:
        if h.address not in network:
            raise ConfigError(f"{where}: static host {h.mac}: {h.address} is not on it")
    lease_time = None
    if "lease-time" in raw:
        lease_time = check_int(raw["lease-time"], f"{where}: lease-time", 1, MAX_LEASE_TIME)
    next_server = ip(raw["tftp-server"], f"{where}: tftp-server") if "tftp-server" in raw else None
    return SubnetConfig(
        network=network,
        range_start=start,
        range_end=end,
        routers=ips(raw.get("gateway", []), f"{where}: gateway"),
        dns=ips(raw.get("dns", []), f"{where}: dns"),
        domain_name=str(raw["domain"]) if "domain" in raw else None,
        bootfile=str(raw["bootfile"]) if "bootfile" in raw else None,
        next_server=next_server,
        ipxe_bootfile=str(raw["ipxe-bootfile"]) if "ipxe-bootfile" in raw else None,
        static_hosts=hosts,
        exclude=ips(raw.get("exclude", []), f"{where}: exclude"),
        lease_time=lease_time,
        extra_options=parse_options(raw.get("options", {}), f"{where}: options"),
    )


def parse_subnets(tables: object, local: IPv4Network) -> tuple[SubnetConfig, ...]:
    """The `[[subnet]]` array; subnets may not overlap each other or the local one."""
    if not isinstance(tables, list):
        raise ConfigError("subnet: use [[subnet]] tables")
    subnets = tuple(_subnet(t, i) for i, t in enumerate(tables))
    seen = [local]
    for sub in subnets:
        for other in seen:
            if sub.network.overlaps(other):
                raise ConfigError(f"subnet {sub.network} overlaps {other}")
        seen.append(sub.network)
    return subnets
