"""The DHCPv6 engine reports what happened as typed events (`ptftpd.events`): each
client message in (read through its relays) and each reply out with its type, DUID and
IA_NA addresses, and each binding offered, bound, renewed, released and declined; the
lease core's `LeaseExpiry` adds "lease expired" at a binding's end (v4 and v6)."""

from __future__ import annotations

import asyncio
import sys
import time
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from pathlib import Path

from test_dhcp6_engine import (
    OTHER_DUID,
    SERVER_DUID,
    SOURCE,
    T0,
    address_of,
    duid,
    lease,
    make_engine,
    msg,
    one,
)

from ptftpd.dhcp import DhcpConfig, DhcpServer, MessageType
from ptftpd.dhcp import decode as decode4
from ptftpd.dhcp import encode as encode4
from ptftpd.dhcp.expiry_timer import ExpiryTimer
from ptftpd.dhcp6.codec import (
    ClientArch,
    ClientId,
    IaAddress,
    IaNa,
    InterfaceId,
    Message,
    MsgType,
    OptionRequest,
    RelayMessage,
    RelayMsg,
    ServerId,
    VendorClass,
    encode,
)
from ptftpd.events import (
    Dhcp6Message,
    Event,
    Lease6Event,
    LeaseEvent,
    LeaseExpiry,
    LeaseKind,
)

sys.path.insert(0, str(Path(__file__).parent.parent / "dhcp"))
from dhcpmsg import client_message

PEER = IPv6Address(SOURCE[0])
SRC4 = ("0.0.0.0", 68)
VALID = 7200  # Dhcp6Config's valid lifetime


def test_a_binding_s_life_as_events() -> None:
    engine = make_engine()
    seen: list[Event] = []
    engine.events = seen.append
    client = duid(1)
    adv = one(engine, msg(MsgType.SOLICIT, client, IaNa(1, 0, 0)))
    offered = address_of(adv)
    addr = offered.address
    one(engine, msg(MsgType.REQUEST, client, ServerId(SERVER_DUID), IaNa(1, 0, 0, (offered,))))
    one(
        engine,
        msg(MsgType.RENEW, client, ServerId(SERVER_DUID), IaNa(1, 0, 0, (offered,))),
        T0 + 10,
    )
    one(
        engine,
        msg(MsgType.RELEASE, client, ServerId(SERVER_DUID), IaNa(1, 0, 0, (offered,))),
        T0 + 20,
    )
    assert seen == [
        Dhcp6Message("in", "solicit", client, (), False, PEER, None),
        Lease6Event(LeaseKind.OFFERED, addr, client, 1, T0 + 60),
        Dhcp6Message("out", "advertise", client, (addr,), True, PEER, SERVER_DUID),
        Dhcp6Message("in", "request", client, (addr,), True, PEER, SERVER_DUID),
        Lease6Event(LeaseKind.BOUND, addr, client, 1, T0 + VALID),
        Dhcp6Message("out", "reply", client, (addr,), True, PEER, SERVER_DUID),
        Dhcp6Message("in", "renew", client, (addr,), True, PEER, SERVER_DUID),
        Lease6Event(LeaseKind.BOUND, addr, client, 1, T0 + 10 + VALID),
        Dhcp6Message("out", "reply", client, (addr,), True, PEER, SERVER_DUID),
        Dhcp6Message("in", "release", client, (addr,), True, PEER, SERVER_DUID),
        Lease6Event(LeaseKind.RELEASED, addr, client, 1, T0 + 20),
        Dhcp6Message("out", "reply", client, (), True, PEER, SERVER_DUID),
    ]


def test_decline_and_a_request_to_another_server() -> None:
    engine = make_engine()
    seen: list[Event] = []
    engine.events = seen.append
    client = duid(2)
    adv = one(engine, msg(MsgType.SOLICIT, client, IaNa(1, 0, 0)))
    offered = address_of(adv)
    one(engine, msg(MsgType.REQUEST, client, ServerId(SERVER_DUID), IaNa(1, 0, 0, (offered,))))
    seen.clear()
    one(engine, msg(MsgType.DECLINE, client, ServerId(SERVER_DUID), IaNa(1, 0, 0, (offered,))))
    assert seen[1] == Lease6Event(LeaseKind.DECLINED, offered.address, client, 1, T0 + 600)
    seen.clear()
    # Another server's Request is dropped, but it was seen (the boot log may learn it).
    elsewhere = IaAddress(IPv6Address("fd00:77::9999"), 10, 20)
    data = msg(MsgType.REQUEST, duid(3), ServerId(OTHER_DUID), IaNa(1, 0, 0, (elsewhere,)))
    assert engine.handle(data, SOURCE, T0) == []
    assert seen == [
        Dhcp6Message("in", "request", duid(3), (elsewhere.address,), False, PEER, OTHER_DUID)
    ]


def test_relayed_messages_have_no_peer() -> None:
    engine = make_engine()
    seen: list[Event] = []
    engine.events = seen.append
    inner = Message(MsgType.SOLICIT, 5, (ClientId(duid(4)), IaNa(1, 0, 0)))
    relayed = RelayMessage(
        MsgType.RELAY_FORW,
        0,
        IPv6Address("fd00:77::2"),
        IPv6Address("fe80::4"),
        (InterfaceId(b"eth1"), RelayMsg(inner)),
    )
    [_out] = engine.handle(encode(relayed), ("fd00:88::2", 547), T0)
    assert [type(e) for e in seen] == [Dhcp6Message, Lease6Event, Dhcp6Message]
    first, last = seen[0], seen[-1]
    assert isinstance(first, Dhcp6Message) and isinstance(last, Dhcp6Message)
    assert (first.type, first.peer, last.type, last.peer) == ("solicit", None, "advertise", None)


def test_lease_expiry_is_deadline_driven_v4_and_v6() -> None:
    seen: list[Event] = []
    watch = LeaseExpiry(seen.append)
    a6, b6 = IPv6Address("fd00::a"), IPv6Address("fd00::b")
    a4 = IPv4Address("10.0.0.5")
    watch.sink(Lease6Event(LeaseKind.BOUND, a6, b"A", 1, 100.0))
    watch.sink(Lease6Event(LeaseKind.BOUND, b6, b"B", 1, 50.0))
    watch.sink(LeaseEvent(LeaseKind.BOUND, a4, "02:00:00:00:00:05", 70.0))
    watch.sink(LeaseEvent(LeaseKind.BOUND, IPv4Address("10.0.0.6"), "m", float("inf")))
    assert len(seen) == 4, "every event passes through"
    seen.clear()
    assert watch.next_deadline() == 50.0
    watch.sink(Lease6Event(LeaseKind.BOUND, b6, b"B", 1, 150.0))  # renewed
    watch.sink(Lease6Event(LeaseKind.OFFERED, a6, b"A", 1, 60.0))  # offered its own again
    assert watch.next_deadline() == 70.0
    seen.clear()
    watch.expire(69.9)
    assert seen == []
    watch.expire(100.0)
    assert seen == [
        LeaseEvent(LeaseKind.EXPIRED, a4, "02:00:00:00:00:05", 70.0),
        Lease6Event(LeaseKind.EXPIRED, a6, b"A", 1, 100.0),
    ]
    assert watch.next_deadline() == 150.0
    watch.sink(Lease6Event(LeaseKind.RELEASED, b6, b"B", 1, 120.0))
    assert watch.next_deadline() is None
    seen.clear()
    watch.expire(1e12)
    assert seen == [], "a released binding never expires, a permanent one neither"


def test_renewals_do_not_grow_the_heap_without_bound() -> None:
    watch = LeaseExpiry(lambda _e: None)
    address = IPv6Address("fd00::c")
    for n in range(10_000):
        watch.sink(Lease6Event(LeaseKind.BOUND, address, b"C", 1, 1000.0 + n))
    assert len(watch._heap) <= 2 + 64
    assert watch.next_deadline() == 1000.0 + 9_999


def test_the_timer_fires_at_the_deadline_and_no_timer_stays_pending() -> None:
    """The drivers' side (`ExpiryTimer`) with the DHCPv6 engine: a 1-second binding
    is reported expired by one loop timer at its end, with no packet and no polling;
    a renewal moves the timer."""
    seen: list[Event] = []
    engine = make_engine(valid_lifetime=1, preferred_lifetime=1, t1=1, t2=1)
    watch = LeaseExpiry(seen.append)
    timer = ExpiryTimer(watch, time.time)
    engine.events = watch.sink

    async def run() -> tuple[float | None, float, float]:
        start = time.time()
        address = lease(engine, duid(6), now=start)
        timer.arm()
        first = timer.pending
        await asyncio.sleep(0.5)
        data = msg(MsgType.RENEW, duid(6), ServerId(SERVER_DUID), IaNa(1, 0, 0, (address,)))
        one(engine, data, time.time())
        timer.arm()
        renewed = timer.pending
        assert renewed is not None and first is not None and renewed > first
        for _ in range(40):  # bounded: 2 s
            if any(isinstance(e, Lease6Event) and e.kind is LeaseKind.EXPIRED for e in seen):
                break
            await asyncio.sleep(0.05)
        return timer.pending, time.time() - start, renewed - start

    pending, waited, renewed_after = asyncio.run(run())
    expired = [e for e in seen if isinstance(e, Lease6Event) and e.kind is LeaseKind.EXPIRED]
    assert len(expired) == 1 and expired[0].duid == duid(6)
    assert waited >= renewed_after - 0.01, "not before the renewed end"
    assert pending is None, "no live binding, no timer"


def test_dhcpv4_server_reports_expired_leases() -> None:
    """DhcpServer wraps its subscribers in the core's watch: an ACKed 1-second lease
    is reported expired at its end (wall clock, a real loop, no socket)."""
    cfg = DhcpConfig(
        server_ip=IPv4Address("10.5.0.1"),
        network=IPv4Network("10.5.0.0/24"),
        answer_all=True,
        lease_time=1,
    )
    server = DhcpServer(cfg)
    seen: list[Event] = []
    server.events = seen.append
    engine = server.build_engine()
    mac = bytes([2, 0, 0, 0, 0, 7])

    async def run() -> None:
        now = time.time()
        [offer] = engine.handle(encode4(client_message(MessageType.DISCOVER, 1, mac)), SRC4, now)
        yiaddr = decode4(offer.payload).yiaddr
        request = client_message(
            MessageType.REQUEST,
            2,
            mac,
            server_id=cfg.server_ip.packed,
            requested_ip=yiaddr.packed,
        )
        engine.handle(encode4(request), SRC4, now)
        for _ in range(60):  # bounded: 3 s
            if any(isinstance(e, LeaseEvent) and e.kind is LeaseKind.EXPIRED for e in seen):
                return
            await asyncio.sleep(0.05)

    asyncio.run(run())
    expired = [e for e in seen if isinstance(e, LeaseEvent) and e.kind is LeaseKind.EXPIRED]
    assert [(e.mac, e.address) for e in expired] == [("02:00:00:00:00:07", expired[0].address)]
    server.close()


def test_the_boot_service_reports_what_it_hears_and_answers() -> None:
    """Port 4011 (proxy mode): every Request decoded is an 'in' event, ours or not; the
    answer an 'out' event whose peer is the firmware's (global) address."""
    engine = make_engine(proxy=True)
    seen: list[Event] = []
    engine.events = seen.append
    pxe = (
        ClientArch((7,)),
        OptionRequest((59, 60)),
        VendorClass(343, (b"PXEClient:Arch:00007:UNDI:003016",)),
    )
    source = ("fd00:77::99", 4011)
    theirs = msg(MsgType.REQUEST, duid(8), ServerId(OTHER_DUID), *pxe)
    assert engine.handle_boot_service(theirs, source, T0) == []
    ours = msg(MsgType.REQUEST, duid(8), ServerId(SERVER_DUID), *pxe)
    assert len(engine.handle_boot_service(ours, source, T0)) == 1
    peer = IPv6Address(source[0])
    assert [(e.direction, e.type, e.ours, e.peer) for e in seen if isinstance(e, Dhcp6Message)] == [
        ("in", "request", False, peer),
        ("in", "request", True, peer),
        ("out", "reply", True, peer),
    ]
