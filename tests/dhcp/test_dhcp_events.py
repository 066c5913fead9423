"""The DHCPv4 engine reports what happened as typed events (`ptftpd.events`): each
message in and out with its type, each lease offered, bound, released and declined;
metrics count those events without decoding a message again."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

from dhcpmsg import client_message
from prometheus_client import CollectorRegistry

from ptftpd.dhcp import DhcpConfig, DhcpEngine, DhcpServer, Message, MessageType, encode
from ptftpd.events import DhcpMessage, Event, LeaseEvent, LeaseKind
from ptftpd.service import metrics

NOW = 1_700_000_000.0
NET = IPv4Network("10.5.0.0/24")
SERVER = IPv4Address("10.5.0.1")
MAC = "02:00:00:00:00:01"


def engine(**overrides: object) -> tuple[DhcpEngine, list[Event]]:
    cfg = DhcpConfig(server_ip=SERVER, network=NET, answer_all=True, offer_time=30)
    server = DhcpServer(replace(cfg, **overrides))  # type: ignore[arg-type]
    seen: list[Event] = []
    server.events = seen.append
    return server.build_engine(), seen


def req(mtype: MessageType, **opts: bytes) -> Message:
    return client_message(mtype, 0x1001, bytes([2, 0, 0, 0, 0, 1]), **opts)


def send(eng: DhcpEngine, msg: Message, now: float = NOW) -> list[Message]:
    from ptftpd.dhcp import decode

    return [decode(out.payload) for out in eng.handle(encode(msg), ("0.0.0.0", 68), now)]


def test_a_dora_release_and_decline_as_events() -> None:
    eng, seen = engine()
    [offer] = send(eng, req(MessageType.DISCOVER))
    addr = offer.yiaddr
    request = req(MessageType.REQUEST, server_id=SERVER.packed, requested_ip=addr.packed)
    [ack] = send(eng, request, NOW + 1)
    assert ack.message_type is MessageType.ACK
    release = req(MessageType.RELEASE, server_id=SERVER.packed)
    release.ciaddr = addr
    assert send(eng, release, NOW + 2) == []
    [offer2] = send(eng, req(MessageType.DISCOVER), NOW + 3)
    decline = req(MessageType.DECLINE, server_id=SERVER.packed, requested_ip=offer2.yiaddr.packed)
    assert send(eng, decline, NOW + 4) == []
    assert seen == [
        DhcpMessage("in", "discover", MAC, None, port=67),
        LeaseEvent(LeaseKind.OFFERED, addr, MAC, NOW + 30),
        DhcpMessage("out", "offer", MAC, addr, port=67),
        DhcpMessage("in", "request", MAC, addr, port=67),
        LeaseEvent(LeaseKind.BOUND, addr, MAC, NOW + 1 + 3600),
        DhcpMessage("out", "ack", MAC, addr, port=67),
        DhcpMessage("in", "release", MAC, addr, port=67),
        LeaseEvent(LeaseKind.RELEASED, addr, MAC),
        DhcpMessage("in", "discover", MAC, None, port=67),
        LeaseEvent(LeaseKind.OFFERED, offer2.yiaddr, MAC, NOW + 3 + 30),
        DhcpMessage("out", "offer", MAC, offer2.yiaddr, port=67),
        DhcpMessage("in", "decline", MAC, offer2.yiaddr, port=67),
        LeaseEvent(LeaseKind.DECLINED, offer2.yiaddr, MAC, NOW + 4 + 600),
    ]


def test_a_nak_is_a_message_out_and_no_lease() -> None:
    eng, seen = engine()
    wrong = IPv4Address("10.5.0.77").packed
    [nak] = send(eng, req(MessageType.REQUEST, server_id=SERVER.packed, requested_ip=wrong))
    assert nak.message_type is MessageType.NAK
    assert seen == [
        DhcpMessage("in", "request", MAC, IPv4Address("10.5.0.77"), port=67),
        DhcpMessage("out", "nak", MAC, None, port=67),
    ]


def test_bootp_is_a_permanent_bound_lease() -> None:
    eng, seen = engine(bootp=True, dhcp=False)
    msg = client_message(None, 0x1002, bytes([2, 0, 0, 0, 0, 1]))
    [reply] = send(eng, msg)
    kinds = [(type(e).__name__, getattr(e, "type", getattr(e, "kind", None))) for e in seen]
    assert kinds == [
        ("DhcpMessage", "bootrequest"),
        ("LeaseEvent", LeaseKind.BOUND),
        ("DhcpMessage", "bootreply"),
    ]
    assert seen[1] == LeaseEvent(LeaseKind.BOUND, reply.yiaddr, MAC, float("inf"))


def test_metrics_count_the_events() -> None:
    """The engine's events are what metrics count: no message is decoded twice."""
    counted = metrics.enable(metrics.Metrics(CollectorRegistry()))
    try:
        eng, _ = engine()
        eng.events = metrics.record_event
        send(eng, req(MessageType.DISCOVER))
        send(eng, req(MessageType.DISCOVER))
        samples = {
            (s.labels["direction"], s.labels["type"]): s.value
            for family in counted.registry.collect()
            if family.name == "ptftpd_dhcp_messages"
            for s in family.samples
            if s.name.endswith("_total")
        }
        assert samples == {("in", "discover"): 2.0, ("out", "offer"): 2.0}
    finally:
        metrics.disable()


def test_a_message_in_says_its_vendor_class() -> None:
    """Issue 23: the boot timeline tells an HTTP boot client (option 60 `HTTPClient`)
    from its DISCOVER event."""
    eng, seen = engine()
    send(eng, req(MessageType.DISCOVER, vendor_class=b"HTTPClient:Arch:00016"))
    want = DhcpMessage("in", "discover", MAC, None, vendor_class="HTTPClient:Arch:00016", port=67)
    assert seen[0] == want
