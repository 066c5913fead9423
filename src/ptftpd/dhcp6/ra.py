"""Router advertisements (RFC 4861): RA builder, RS/RA parser and send schedule. Sans-IO.

PXE over IPv6 firmware learns from an RA that the prefix is on-link and that addresses
come from DHCPv6 (M flag); without one, on-link traffic to the boot server may never
leave. We advertise with router lifetime 0 unless told otherwise, so no host ever takes
us for its default router by accident; A (SLAAC) is off because addresses come from
DHCPv6. The ICMPv6 checksum is left 0: the kernel fills it in on raw ICMPv6 sockets.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network

from ptftpd.dhcp6.codec import PacketError
from ptftpd.dhcp6.config import Dhcp6Config

__all__ = [
    "ICMP6_RA",
    "ICMP6_RS",
    "RaSchedule",
    "RouterAdvert",
    "RouterSolicit",
    "build_ra",
    "decode_ra",
    "decode_rs",
]

ICMP6_RS = 133
ICMP6_RA = 134
OPT_SOURCE_LLA = 1
OPT_PREFIX_INFO = 3
FLAG_M = 0x80
FLAG_O = 0x40
PREFIX_L = 0x80
PREFIX_A = 0x40
# RFC 4861 section 10 (router constants).
MAX_INITIAL_RTR_ADVERTISEMENTS = 3
MAX_INITIAL_RTR_ADVERT_INTERVAL = 16.0
MIN_DELAY_BETWEEN_RAS = 3.0
MAX_RA_DELAY_TIME = 0.5


@dataclass(frozen=True)
class PrefixInfo:
    prefix: IPv6Network
    on_link: bool
    autonomous: bool
    valid: int
    preferred: int


@dataclass(frozen=True)
class RouterAdvert:
    hop_limit: int
    managed: bool
    other: bool
    router_lifetime: int
    reachable_time: int = 0
    retrans_timer: int = 0
    prefixes: tuple[PrefixInfo, ...] = ()
    source_lla: bytes | None = None


@dataclass(frozen=True)
class RouterSolicit:
    source_lla: bytes | None


def build_ra(config: Dhcp6Config, mac: bytes | None) -> bytes:
    """The RA for `config.prefix`, with our link-layer address when we know it."""
    flags = (FLAG_M if config.ra_managed else 0) | (FLAG_O if config.ra_other else 0)
    lifetime = config.ra_router_lifetime
    head = struct.pack("!BBHBBHII", ICMP6_RA, 0, 0, config.ra_hop_limit, flags, lifetime, 0, 0)
    pflags = (PREFIX_L if config.ra_on_link else 0) | (PREFIX_A if config.ra_autonomous else 0)
    prefix = config.prefix
    prefix_opt = struct.pack(
        "!BBBBIII16s",
        OPT_PREFIX_INFO,
        4,
        prefix.prefixlen,
        pflags,
        config.ra_prefix_valid,
        min(config.ra_prefix_preferred, config.ra_prefix_valid),
        0,
        prefix.network_address.packed,
    )
    lla = b""
    if mac:
        lla = _option(OPT_SOURCE_LLA, mac)
    return head + lla + prefix_opt


def _option(kind: int, body: bytes) -> bytes:
    size = (len(body) + 2 + 7) // 8
    return struct.pack("!BB", kind, size) + body.ljust(size * 8 - 2, b"\x00")


def _options(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise PacketError("truncated neighbour discovery option")
        kind, units = data[pos], data[pos + 1]
        if units == 0:
            raise PacketError("neighbour discovery option of length 0")  # RFC 4861 4.6
        end = pos + units * 8
        if end > len(data):
            raise PacketError("neighbour discovery option overruns the message")
        out.append((kind, data[pos + 2 : end]))
        pos = end
    return out


def decode_rs(data: bytes) -> RouterSolicit:
    if len(data) < 8 or data[0] != ICMP6_RS or data[1] != 0:
        raise PacketError("not a router solicitation")
    lla = None
    for kind, body in _options(data[8:]):
        if kind == OPT_SOURCE_LLA:
            lla = body[:6]
    return RouterSolicit(lla)


def decode_ra(data: bytes) -> RouterAdvert:
    if len(data) < 16 or data[0] != ICMP6_RA or data[1] != 0:
        raise PacketError("not a router advertisement")
    _t, _c, _s, hops, flags, lifetime, reachable, retrans = struct.unpack_from("!BBHBBHII", data)
    prefixes = []
    lla = None
    for kind, body in _options(data[16:]):
        if kind == OPT_SOURCE_LLA:
            lla = body[:6]
        elif kind == OPT_PREFIX_INFO:
            if len(body) != 30:
                raise PacketError("prefix information option of the wrong size")
            plen, pflags, valid, preferred, _r, raw = struct.unpack("!BBIII16s", body)
            if plen > 128:
                raise PacketError("prefix length over 128")
            network = IPv6Network((IPv6Address(raw), plen), strict=False)
            prefixes.append(
                PrefixInfo(
                    network, bool(pflags & PREFIX_L), bool(pflags & PREFIX_A), valid, preferred
                )
            )
    return RouterAdvert(
        hops,
        bool(flags & FLAG_M),
        bool(flags & FLAG_O),
        lifetime,
        reachable,
        retrans,
        tuple(prefixes),
        lla,
    )


class RaSchedule:
    """When to send the next RA (RFC 4861 6.2.4 and 6.2.6), from `now` values only.

    The first few go out at most 16 s apart; then uniformly between the configured
    min and max interval. A solicitation brings the next one forward to a random
    0-0.5 s later, but never closer than 3 s to the previous multicast RA.
    """

    def __init__(self, config: Dhcp6Config, now: float, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng or random.Random()
        self._sent = 0
        self._last: float | None = None
        self.due = now  # the first one right away

    def _interval(self) -> float:
        delay = self._rng.uniform(self.config.ra_low_interval, self.config.ra_max_interval)
        if self._sent <= MAX_INITIAL_RTR_ADVERTISEMENTS:
            delay = min(delay, MAX_INITIAL_RTR_ADVERT_INTERVAL)
        return delay

    def sent(self, now: float) -> None:
        self._sent += 1
        self._last = now
        self.due = now + self._interval()

    def solicited(self, now: float) -> None:
        at = now + self._rng.uniform(0, MAX_RA_DELAY_TIME)
        if self._last is not None:
            at = max(at, self._last + MIN_DELAY_BETWEEN_RAS)
        self.due = min(self.due, at)
