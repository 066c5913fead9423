"""Router advertisement builder, RS/RA parsing and the send schedule (fake clock)."""

from __future__ import annotations

import random
from ipaddress import IPv6Network
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptftpd.dhcp6.codec import PacketError
from ptftpd.dhcp6.config import Dhcp6Config
from ptftpd.dhcp6.ra import RaSchedule, build_ra, decode_ra, decode_rs
from ptftpd.errors import StartError

PREFIX = IPv6Network("fd00:77::/64")
MAC = bytes.fromhex("525400aabbcc")


def ra_config(prefix: IPv6Network = PREFIX, **ra: Any) -> Dhcp6Config:
    """A DHCPv6 service's settings with these RA fields (`managed=` is `ra_managed`)."""
    fields = {f"ra_{name}": value for name, value in ra.items()}
    return Dhcp6Config(interface="veth0", prefix=prefix, **fields)


GOLDEN_RA = bytes.fromhex(
    "86"
    "00"
    "0000"  # type 134, code 0, checksum (the kernel fills it)
    "40"
    "c0"
    "0000"  # hop limit 64, M and O, router lifetime 0
    "00000000"
    "00000000"  # reachable time, retrans timer: unspecified
    "01"
    "01"
    "525400aabbcc"  # source link-layer address
    "03"
    "04"
    "40"
    "80"  # prefix information, /64, L only (no SLAAC)
    "00015180"
    "00003840"
    "00000000"  # valid 86400, preferred 14400, reserved
    "fd000077000000000000000000000000"
)


def test_golden_ra_defaults_never_make_us_a_default_router() -> None:
    assert build_ra(ra_config(), MAC) == GOLDEN_RA
    ra = decode_ra(GOLDEN_RA)
    assert ra.managed and ra.other and ra.router_lifetime == 0
    assert ra.source_lla == MAC
    (info,) = ra.prefixes
    assert info.prefix == PREFIX and info.on_link and not info.autonomous


def test_ra_flags_follow_config() -> None:
    cfg = ra_config(managed=False, other=False, autonomous=True, router_lifetime=1800)
    ra = decode_ra(build_ra(cfg, None))
    assert not ra.managed and not ra.other and ra.router_lifetime == 1800
    assert ra.prefixes[0].autonomous and ra.source_lla is None


@settings(max_examples=200, deadline=None)
@given(
    st.booleans(),
    st.booleans(),
    st.integers(0, 9000),
    st.booleans(),
    st.booleans(),
    st.integers(0, 2**32 - 1),
    # Dhcp6Config takes prefixes up to /120 (a smaller one holds no pool).
    st.integers(0, 120).flatmap(
        lambda n: st.integers(0, 2**128 - 1).map(lambda a: IPv6Network((a, n), strict=False))
    ),
    st.one_of(st.none(), st.binary(min_size=6, max_size=6)),
)
def test_ra_round_trip(
    m: bool,
    o: bool,
    life: int,
    lflag: bool,
    aflag: bool,
    valid: int,
    net: IPv6Network,
    mac: bytes | None,
) -> None:
    cfg = ra_config(
        net,
        managed=m,
        other=o,
        router_lifetime=life,
        on_link=lflag,
        autonomous=aflag,
        prefix_valid=valid,
        prefix_preferred=valid // 2,
    )
    ra = decode_ra(build_ra(cfg, mac))
    assert (ra.managed, ra.other, ra.router_lifetime) == (m, o, life)
    assert ra.source_lla == mac
    info = ra.prefixes[0]
    assert (info.prefix, info.on_link, info.autonomous) == (net, lflag, aflag)
    assert (info.valid, info.preferred) == (valid, valid // 2)


def test_router_solicitation_parsing() -> None:
    rs = bytes.fromhex("85000000000000000101525400aabbcc")
    assert decode_rs(rs).source_lla == MAC
    assert decode_rs(rs[:8]).source_lla is None
    for bad in (
        rs[:7],  # truncated header
        rs[:8] + bytes.fromhex("0100"),  # option of length 0 (RFC 4861 4.6: discard)
        rs[:8] + bytes.fromhex("0102525400aabbcc"),  # option overruns
        rs[:9],  # truncated option
        bytes.fromhex("86") + rs[1:],  # an RA is not an RS
        rs[:1] + b"\x01" + rs[2:],  # code must be 0
    ):
        with pytest.raises(PacketError):
            decode_rs(bad)


def test_schedule_initial_then_regular_intervals_and_solicitations() -> None:
    cfg = ra_config(max_interval=600)
    sched = RaSchedule(cfg, now=100.0, rng=random.Random(7))
    assert sched.due == 100.0, "the first RA goes out at once"
    now = 100.0
    for _ in range(3):  # the initial ones are at most 16 s apart
        sched.sent(now)
        assert now < sched.due <= now + 16
        now = sched.due
    sched.sent(now)
    sched.sent(now)
    assert now + 200 <= sched.due <= now + 600
    # A solicitation 1 s after an RA: answered, but not within 3 s of that RA.
    sched.solicited(now + 1)
    assert now + 3 <= sched.due <= now + 3.5
    # Long after: within 0.5 s.
    later = now + 100
    sched.sent(later)
    sched.solicited(later + 50)
    assert later + 50 <= sched.due <= later + 50.5


def test_bad_ra_config_is_a_start_error() -> None:
    with pytest.raises(StartError):
        ra_config(min_interval=100, max_interval=10)
    with pytest.raises(StartError):
        ra_config(router_lifetime=9001)
