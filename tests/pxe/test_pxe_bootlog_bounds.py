"""Issue 19 item 2: what pxed's boot log remembers is bounded and expires, and over
DHCPv6 it learns addresses only from exchanges with this server."""

from __future__ import annotations

from ipaddress import IPv6Address

from ptftpd.dhcp6.codec import (
    ClientId,
    IaAddress,
    IaNa,
    InterfaceId,
    MsgType,
    RelayMessage,
    RelayMsg,
    ServerId,
)
from ptftpd.dhcp6.codec import Message as Message6
from ptftpd.dhcp6.codec import encode as encode6
from ptftpd.dhcp6.engine import Outgoing as Outgoing6
from ptftpd.pxe.bootlog import BootLog, BootTracker

OURS = ServerId(bytes.fromhex("00030001525400aabbcc"))
THEIRS = ServerId(bytes.fromhex("00030001525400ddeeff"))


def duid(n: int) -> bytes:
    return bytes.fromhex("00030001") + n.to_bytes(6, "big")


def request(n: int, server: ServerId, address: str) -> bytes:
    ia = IaNa(1, 0, 0, (IaAddress(IPv6Address(address), 10, 20),))
    return encode6(Message6(MsgType.REQUEST, n, (ClientId(duid(n)), server, ia)))


def our_reply(tracker: BootTracker, n: int, address: str) -> None:
    ia = IaNa(1, 0, 0, (IaAddress(IPv6Address(address), 10, 20),))
    reply = Message6(MsgType.REPLY, n, (OURS, ClientId(duid(n)), ia))
    tracker.dhcp6_reply(Outgoing6(encode6(reply), ("fe80::1", 546)))


def test_requests_to_another_server_teach_nothing() -> None:
    log = BootLog(emit=lambda _line: None)
    tracker = BootTracker(log, lambda: 5.0)
    our_reply(tracker, 1, "fd00:77::1")  # the tracker now knows our server id
    # Anyone on the link can send a Request to any server naming any address.
    for n in range(2, 2000):
        tracker.dhcp6_received(request(n, THEIRS, f"fd00:77::{n:x}"))
    assert list(log.mac_of_ip) == ["fd00:77::1"]
    tracker.dhcp6_received(request(7, OURS, "fd00:77::7"))
    assert log.mac_of_ip["fd00:77::7"] == "00:00:00:00:00:07"
    # A client we answered (our proxy Advertise) takes its address from the site's
    # server: that Request is learnt (EDK2 then downloads from that address).
    advertise = Message6(MsgType.ADVERTISE, 9, (OURS, ClientId(duid(9))))
    tracker.dhcp6_reply(Outgoing6(encode6(advertise), ("fe80::9", 546)))
    tracker.dhcp6_received(request(9, THEIRS, "fd00:77::1009"))
    assert log.mac_of_ip["fd00:77::1009"] == "00:00:00:00:00:09"
    assert len(log.mac_of_ip) == 3


def test_relayed_replies_are_read_through_their_relays() -> None:
    log = BootLog(emit=lambda _line: None)
    tracker = BootTracker(log, lambda: 5.0)
    ia = IaNa(1, 0, 0, (IaAddress(IPv6Address("fd00:79::50"), 10, 20),))
    reply = Message6(MsgType.REPLY, 3, (OURS, ClientId(duid(3)), ia))
    relayed = RelayMessage(
        MsgType.RELAY_REPL,
        0,
        IPv6Address("fd00:79::1"),
        IPv6Address("fe80::3"),
        (InterfaceId(b"eth1"), RelayMsg(reply)),
    )
    tracker.dhcp6_reply(Outgoing6(encode6(relayed), ("fd00:88::2", 547)))
    assert log.mac_of_ip == {"fd00:79::50": "00:00:00:00:00:03"}, "not the relay's address"


def test_learned_addresses_and_sessions_are_bounded_and_expire() -> None:
    now = [0.0]
    lines: list[str] = []
    log = BootLog(
        idle=30.0,
        emit=lines.append,
        max_sessions=100,
        max_addresses=200,
        address_ttl=600.0,
    )
    tracker = BootTracker(log, lambda: now[0])
    for n in range(5000):
        our_reply(tracker, n, f"fd00:77::{n:x}")
        log.discover(f"mac-{n}", "EFI x64", now=now[0])
    assert len(log.mac_of_ip) == 200 and "fd00:77::1387" in log.mac_of_ip
    assert len(log.sessions) == 100
    assert len(lines) == 4900, "a boot pushed out early still gets its line"
    now[0] = 601.0
    log.expire(now[0])
    assert log.mac_of_ip == {} and log.sessions == {}
    assert len(lines) == 5000
