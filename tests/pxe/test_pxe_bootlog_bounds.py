"""Issue 19 item 2: what pxed's boot log remembers is bounded and expires, and over
DHCPv6 it learns addresses only from exchanges with this server."""

from __future__ import annotations

from ipaddress import IPv6Address

from ptftpd.events import Dhcp6Message
from ptftpd.pxe.bootlog import BootLog, BootTracker

OURS = bytes.fromhex("00030001525400aabbcc")
THEIRS = bytes.fromhex("00030001525400ddeeff")
CLIENT_LL = IPv6Address("fe80::1")


def duid(n: int) -> bytes:
    return bytes.fromhex("00030001") + n.to_bytes(6, "big")


def request(n: int, server: bytes, address: str) -> Dhcp6Message:
    """The DHCPv6 engine's event for a client's Request naming `address` and `server`."""
    addresses = (IPv6Address(address),)
    return Dhcp6Message("in", "request", duid(n), addresses, server == OURS, CLIENT_LL, server)


def our_reply(tracker: BootTracker, n: int, address: str) -> None:
    addresses = (IPv6Address(address),)
    tracker.dhcp6(Dhcp6Message("out", "reply", duid(n), addresses, True, CLIENT_LL, OURS))


def test_requests_to_another_server_teach_nothing() -> None:
    log = BootLog(emit=lambda _line: None)
    tracker = BootTracker(log, lambda: 5.0)
    our_reply(tracker, 1, "fd00:77::1")
    # Anyone on the link can send a Request to any server naming any address.
    for n in range(2, 2000):
        tracker.dhcp6(request(n, THEIRS, f"fd00:77::{n:x}"))
    assert list(log.mac_of_ip) == ["fd00:77::1"]
    tracker.dhcp6(request(7, OURS, "fd00:77::7"))
    assert log.mac_of_ip["fd00:77::7"] == "00:00:00:00:00:07"
    # A client we answered (our proxy Advertise) takes its address from the site's
    # server: that Request is learnt (EDK2 then downloads from that address).
    advertise = Dhcp6Message("out", "advertise", duid(9), (), True, IPv6Address("fe80::9"), OURS)
    tracker.dhcp6(advertise)
    tracker.dhcp6(request(9, THEIRS, "fd00:77::1009"))
    assert log.mac_of_ip["fd00:77::1009"] == "00:00:00:00:00:09"
    assert len(log.mac_of_ip) == 3


def test_relayed_replies_teach_the_ia_address_only() -> None:
    """The engine reads a relayed reply through its relays: no peer (the relay's
    address is not the client's), the IA_NA address."""
    log = BootLog(emit=lambda _line: None)
    tracker = BootTracker(log, lambda: 5.0)
    addresses = (IPv6Address("fd00:79::50"),)
    tracker.dhcp6(Dhcp6Message("out", "reply", duid(3), addresses, True, None, OURS))
    assert log.mac_of_ip == {"fd00:79::50": "00:00:00:00:00:03"}
    # A boot service answer goes straight to the client's global address: learnt.
    peer = IPv6Address("fd00:79::77")
    tracker.dhcp6(Dhcp6Message("out", "reply", duid(4), (), True, peer, OURS))
    assert log.mac_of_ip["fd00:79::77"] == "00:00:00:00:00:04"


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
