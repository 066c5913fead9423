"""Checked conversion of dhcpd/bootpd/pxed settings (TOML values and flags) into the
typed values the engine uses: addresses, static hosts, `[options]` and the
`[[subnet]]` tables.

Why here: every numeric setting ends up in a fixed-size wire field (lease time: 32
bits, with all ones meaning "infinite"), so it is checked against that size once, at
start-up, with a one-line message, instead of failing on the first DISCOVER. A value
of the wrong TOML type is an error, never turned into a string. Every error is a
`ConfigError` whose `at` names the setting (("subnet", 1, "range")), so the tool says
which line of the file (or which flag) holds it.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from ptftpd.config import DNSMASQ_KEYS, ConfigError, Where, shown, suggestion
from ptftpd.dhcp.leases import StaticHost
from ptftpd.dhcp.options import (
    REGISTRY,
    Opt,
    OptionSpec,
    OptionType,
    OptionValueError,
    encode_value,
    option_by_name,
)
from ptftpd.dhcp.scope import SubnetConfig
from ptftpd.values import duration_seconds

__all__ = [
    "MAX_LEASE_TIME",
    "PROTOCOL_OPTIONS",
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

# Options the server must own, never `[options]`: the protocol's own fields, what
# only clients or relays send, and what a setting of its own controls.
PROTOCOL_OPTIONS: dict[int, str] = {
    Opt.REQUESTED_IP: "sent by clients, never by a server",
    Opt.PARAMETER_LIST: "sent by clients, never by a server",
    Opt.MAX_MESSAGE_SIZE: "sent by clients, never by a server",
    Opt.CLIENT_ID: "sent by clients (the server echoes it)",
    118: "sent by clients and relays (subnet selection), never by a server",
    Opt.RELAY_AGENT_INFO: "added by relays (the server echoes it)",
    Opt.OVERLOAD: "owned by the protocol: the server packs its own replies",
    Opt.MESSAGE_TYPE: "owned by the protocol: the server sets it in every reply",
    Opt.SERVER_ID: "owned by the protocol: the server's own address in every reply",
    Opt.LEASE_TIME: "set by lease-time",
    Opt.RENEWAL_TIME: "derived from lease-time (half of it)",
    Opt.REBINDING_TIME: "derived from lease-time (7/8 of it)",
    Opt.TFTP_SERVER_NAME: "set by tftp-server",
    Opt.BOOTFILE_NAME: "set by BOOTFILE (bootfile in a [[subnet]])",
}

# dnsmasq's names of DHCP options (--dhcp-option=option:NAME) -> ours.
DNSMASQ_OPTIONS = {
    "netmask": "subnet-mask",
    "dns-server": "dns",
    "extension-path": "extensions-path",
    "mtu": "interface-mtu",
    "ntp-server": "ntp-servers",
    "vendor-encap": "vendor-specific",
    "netbios-ns": "netbios-name-server",
    "requested-address": "requested-ip",
    "option-overload": "overload",
    "server-identifier": "server-id",
    "parameter-request": "parameter-list",
    "t1": "renewal-time",
    "t2": "rebinding-time",
    "tftp-server": "tftp-server-name",
    "fqdn": "client-fqdn",
    "agent-id": "relay-agent-info",
    "client-machine-id": "client-uuid",
    "classless-static-route": "classless-route",
    "static-route": "33 (its code)",
}


def check_int(value: object, what: str, low: int, high: int, at: Where = ()) -> int:
    """An integer (or its decimal text, from a flag) within `low`..`high`."""
    place = at or (what,)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"expected an integer, got {shown(value)}", place)
    if isinstance(value, str):
        text = value.strip()
        if not text.lstrip("-").isdigit() or len(text) > 30:
            raise ConfigError(f"expected an integer, got {shown(value)}", place)
        value = int(text)
    if not low <= value <= high:
        raise ConfigError(f"must be between {low} and {high}, not {shown(value)}", place)
    return value


def check_duration(value: object, what: str, low: int, high: int, at: Where = ()) -> int:
    """A lease time: seconds (an integer or its text) or a duration (``30m``, ``12h``,
    ``7d``), within `low`..`high` seconds."""
    if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
        seconds = duration_seconds(value)
        if seconds is None:
            place = at or (what,)
            msg = f"expected seconds or a duration like 30m, 12h, 7d, got {shown(value)}"
            raise ConfigError(msg, place)
        value = seconds
    return check_int(value, what, low, high, at)


def text(value: object, at: Where, what: str = "a string") -> str:
    if not isinstance(value, str):
        raise ConfigError(f"expected {what}, got {shown(value)}", at)
    return value


def ip(value: object, at: Where | str) -> IPv4Address:
    place = (at,) if isinstance(at, str) else at
    if isinstance(value, IPv4Address):
        return value
    try:
        return IPv4Address(text(value, place, "an IPv4 address string"))
    except ValueError:
        raise ConfigError(f"not an IPv4 address: {shown(value)}", place) from None


def ips(value: object, at: Where | str) -> tuple[IPv4Address, ...]:
    """One address or a list of them."""
    place = (at,) if isinstance(at, str) else at
    if isinstance(value, (list, tuple)):
        return tuple(ip(v, (*place, i)) for i, v in enumerate(value))
    return (ip(value, place),)


def parse_host(spec: object, at: Where = ("hosts",)) -> StaticHost:
    """`MAC=IP[,NAME]` or a TOML table `{mac, ip, name}`."""
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"mac", "ip", "name"})
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown key of a host (mac, ip, name)", at)
        if "mac" not in spec or "ip" not in spec:
            raise ConfigError("a host table needs mac and ip", at)
        mac = text(spec["mac"], at, "a MAC address string")
        addr: object = spec["ip"]
        name = text(spec["name"], at, "a host name string") if "name" in spec else ""
    elif isinstance(spec, str) and "=" in spec:
        mac, rest = spec.split("=", 1)
        addr, _, name = rest.partition(",")
    else:
        raise ConfigError(f"expected MAC=IP[,NAME], got {shown(spec)}", at)
    parts = mac.strip().lower().replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ConfigError(f"bad MAC address {shown(mac)}", at)
    try:
        bytes.fromhex("".join(parts))
    except ValueError:
        raise ConfigError(f"bad MAC address {shown(mac)}", at) from None
    return StaticHost(":".join(parts), ip(addr, at), name or None)


def _option_spec(name: str, at: Where) -> OptionSpec:
    try:
        spec = option_by_name(name)
    except OptionValueError as exc:
        names = [s.name for s in REGISTRY.values()]
        hint = suggestion(name.lower().replace("_", "-"), names, DNSMASQ_OPTIONS)
        if hint or not name.strip().isdigit():
            known = hint or "; use its registry name or code"
            raise ConfigError(f"unknown option{known}", at) from None
        raise ConfigError(str(exc), at) from None
    reason = PROTOCOL_OPTIONS.get(spec.code)
    if reason is not None:
        raise ConfigError(f"option {spec.code} cannot be set here: {reason}", at)
    return spec


_INT_TYPES = (OptionType.U8, OptionType.U16, OptionType.U32, OptionType.I32)


def _option_value_ok(spec: OptionSpec, value: object) -> str | None:
    """What `value`'s TOML type should be for `spec`, or None when it is right."""

    def is_int(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    kind = spec.type
    if kind is OptionType.IP or kind is OptionType.STR:
        return None if isinstance(value, str) else "a string"
    if kind is OptionType.IPS:
        ok = isinstance(value, str) or (
            isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)
        )
        return None if ok else "an address string or a list of them"
    if kind in _INT_TYPES:
        return None if is_int(value) else "an integer"
    if kind in (OptionType.CODES, OptionType.U16S):
        ok = is_int(value) or (isinstance(value, list) and all(is_int(v) for v in value))
        return None if ok else "an integer or a list of integers"
    return None if isinstance(value, str) else 'hex bytes as a string, e.g. "01:02:ab"'


def parse_options(opts: object, at: Where = ("options",)) -> dict[int, bytes]:
    """An ``[options]`` table: option name (or decimal code) = value of its type."""
    if not isinstance(opts, Mapping):
        raise ConfigError(f"expected a table of option = value, got {shown(opts)}", at)
    extra: dict[int, bytes] = {}
    named: dict[int, str] = {}
    for name, value in opts.items():
        place = (*at, str(name))
        spec = _option_spec(str(name), place)
        if spec.code in named:
            raise ConfigError(f"{named[spec.code]} and {name} are both option {spec.code}", place)
        named[spec.code] = str(name)
        expected = _option_value_ok(spec, value)
        if expected is not None:
            raise ConfigError(f"{spec.name}: expected {expected}, got {shown(value)}", place)
        try:
            extra[spec.code] = encode_value(spec.code, value)
        except (OptionValueError, OverflowError, struct.error, ValueError) as exc:
            raise ConfigError(str(exc).split("\n")[0], place) from None
        if len(extra[spec.code]) > 255:
            raise ConfigError(f"{spec.name}: longer than an option holds (255 bytes)", place)
    return extra


def parse_range(
    rng: object, network: IPv4Network, at: Where = ("range",)
) -> tuple[IPv4Address, IPv4Address]:
    if not isinstance(rng, (list, tuple)) or len(rng) != 2:
        raise ConfigError(f"expected [START, END], got {shown(rng)}", at)
    start, end = ip(rng[0], at), ip(rng[1], at)
    if start not in network or end not in network:
        raise ConfigError(f"{start}..{end} is not inside {network}", at)
    if start > end:
        raise ConfigError(f"start {start} is after end {end}", at)
    return start, end


SUBNET_KEYS = {
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
    here: Where = ("subnet", index)
    if not isinstance(table, Mapping):
        raise ConfigError(f"expected a [[subnet]] table, got {shown(table)}", here)
    raw: dict[str, Any] = {str(k).replace("_", "-"): v for k, v in table.items()}
    for key in raw:
        if key not in SUBNET_KEYS:
            hint = suggestion(key, SUBNET_KEYS, DNSMASQ_KEYS)
            valid = hint or f"; valid keys: {', '.join(sorted(SUBNET_KEYS))}"
            raise ConfigError(f"unknown key of a [[subnet]]{valid}", (*here, key))
    if "network" not in raw:
        raise ConfigError('network = "A.B.C.D/N" is required', here)
    try:
        network = IPv4Network(text(raw["network"], (*here, "network"), '"A.B.C.D/N"'))
    except ValueError as exc:
        bad = f"bad network {shown(raw['network'])}: {exc}"
        raise ConfigError(bad, (*here, "network")) from None

    def at(key: str) -> Where:
        return (*here, key)

    def optional(key: str) -> str | None:
        return text(raw[key], at(key)) if key in raw else None

    start = end = None
    if "range" in raw:
        start, end = parse_range(raw["range"], network, at("range"))
    hosts_raw = raw.get("hosts", [])
    if not isinstance(hosts_raw, list):
        raise ConfigError(f"expected a list of hosts, got {shown(hosts_raw)}", at("hosts"))
    hosts = tuple(parse_host(h, (*at("hosts"), i)) for i, h in enumerate(hosts_raw))
    for i, h in enumerate(hosts):
        if h.address not in network:
            raise ConfigError(f"{h.mac}: {h.address} is not on {network}", (*at("hosts"), i))
    lease_time = None
    if "lease-time" in raw:
        lease_time = check_duration(
            raw["lease-time"], "lease-time", 1, MAX_LEASE_TIME, at("lease-time")
        )
    next_server = ip(raw["tftp-server"], at("tftp-server")) if "tftp-server" in raw else None
    return SubnetConfig(
        network=network,
        range_start=start,
        range_end=end,
        routers=ips(raw["gateway"], at("gateway")) if "gateway" in raw else (),
        dns=ips(raw["dns"], at("dns")) if "dns" in raw else (),
        domain_name=optional("domain"),
        bootfile=optional("bootfile"),
        next_server=next_server,
        ipxe_bootfile=optional("ipxe-bootfile"),
        static_hosts=hosts,
        exclude=ips(raw["exclude"], at("exclude")) if "exclude" in raw else (),
        lease_time=lease_time,
        extra_options=parse_options(raw.get("options", {}), at("options")),
    )


def parse_subnets(tables: object, local: IPv4Network) -> tuple[SubnetConfig, ...]:
    """The `[[subnet]]` array; subnets may not overlap each other or the local one."""
    if not isinstance(tables, list):
        raise ConfigError(f"use [[subnet]] tables, not {shown(tables)}", ("subnet",))
    subnets = tuple(_subnet(t, i) for i, t in enumerate(tables))
    seen = [local]
    for index, sub in enumerate(subnets):
        for other in seen:
            if sub.network.overlaps(other):
                raise ConfigError(f"{sub.network} overlaps {other}", ("subnet", index, "network"))
        seen.append(sub.network)
    return subnets
