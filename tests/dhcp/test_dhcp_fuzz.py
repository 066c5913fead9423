"""Fuzz job for the DHCPv4 codec and engine (issue 19): valid BOOTP/DHCP requests with
random fields and hostile sizes (many options, long options split over instances, big
relay information, client ids and parameter lists, the smallest and largest maximum
message sizes), from clients on the local link and behind relays. Every request gets a
well-defined outcome: no reply, or one reply that decodes, answers the request's xid,
fits the client's size and carries what RFC 2131/6842/3011/3046 require; nothing else
(an exception fails the test). Memory stays bounded: leases stay within the pools and
a run's allocation peak is small. Bounded time: `max_examples` and a deadline."""

from __future__ import annotations

import tracemalloc
from datetime import timedelta
from ipaddress import IPv4Address

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_dhcp_subnets import LOCAL, RACK7, RACK8, engine

from ptftpd.dhcp import DhcpEngine, Message, MessageType, Opt
from ptftpd.dhcp.packet import BOOTREPLY, MIN_REPLY_LEN, PacketError, decode, encode

SERVER = IPv4Address("10.5.0.1")
NOW = 1_700_000_000.0  # when each request arrives
RELAYS = [IPv4Address(0), IPv4Address(0), IPv4Address("10.7.0.1"), IPv4Address("10.8.1.1")]
CLIENT_ADDRESSES = [
    IPv4Address(0),
    IPv4Address("10.5.0.77"),
    IPv4Address("10.7.0.105"),
    IPv4Address("192.0.2.9"),
]
FUZZ = settings(
    max_examples=250,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def sized(max_size: int) -> st.SearchStrategy[bytes]:
    """Values from empty to `max_size` bytes, the boundaries often."""
    lengths = st.one_of(
        st.sampled_from([0, 1, 254, 255, 256, 510, max_size]), st.integers(0, max_size)
    )
    return lengths.flatmap(lambda n: st.binary(min_size=n, max_size=n))


def addresses_in(*nets: str) -> st.SearchStrategy[bytes]:
    return st.sampled_from([IPv4Address(a).packed for a in nets])


@st.composite
def requests(draw: st.DrawFn) -> Message:
    kinds = [None, *MessageType]  # None: plain BOOTP
    mtype = draw(st.sampled_from(kinds))
    msg = Message(
        htype=draw(st.sampled_from([1, 1, 1, 6, 32, draw(st.integers(0, 255))])),
        hlen=draw(st.sampled_from([6, 6, 0, 16, draw(st.integers(0, 16))])),
        hops=draw(st.integers(0, 255)),
        xid=draw(st.integers(0, 2**32 - 1)),
        secs=draw(st.integers(0, 0xFFFF)),
        flags=draw(st.sampled_from([0, 0x8000, draw(st.integers(0, 0xFFFF))])),
        ciaddr=draw(st.sampled_from(CLIENT_ADDRESSES)),
        giaddr=draw(st.sampled_from(RELAYS)),
        chaddr=draw(st.binary(min_size=16, max_size=16)),
        sname=draw(st.sampled_from([b"", b"x" * 64, b"boot"])),
        file=draw(st.sampled_from([b"", b"y" * 128, b"pxelinux.0"])),
        cookie=draw(st.booleans()) if mtype is None else True,
    )
    opts: dict[int, bytes] = {}
    if mtype is not None:
        opts[Opt.MESSAGE_TYPE] = bytes([mtype])
    known = st.sampled_from(
        [
            (Opt.REQUESTED_IP, addresses_in("10.5.0.20", "10.7.0.101", "10.8.0.9", "1.2.3.4")),
            (Opt.SERVER_ID, addresses_in("10.5.0.1", "10.5.0.2")),
            (Opt.PARAMETER_LIST, sized(600)),
            (Opt.MAX_MESSAGE_SIZE, st.integers(0, 0xFFFF).map(lambda n: n.to_bytes(2, "big"))),
            (Opt.VENDOR_CLASS, st.sampled_from([b"PXEClient:Arch:00007:UNDI:003016", b"MSFT"])),
            (Opt.CLIENT_ID, sized(700)),
            (Opt.RELAY_AGENT_INFO, sized(700)),
            (Opt.SUBNET_SELECTION, addresses_in("10.7.0.1", "10.8.2.2", "10.5.0.9", "192.0.2.1")),
            (Opt.CLIENT_ARCH, sized(10)),
            (Opt.USER_CLASS, st.sampled_from([b"iPXE", b"\x04iPXE", b"\xff"])),
            (Opt.HOSTNAME, sized(300)),
            (Opt.CLIENT_UUID, sized(17)),
            (Opt.IPXE_ENCAP, sized(40)),
        ]
    )
    for code, values in draw(st.lists(known, max_size=8)):
        opts[code] = draw(values)
    # Many unknown options, some long (split into 255-byte instances by the encoder).
    others = st.integers(1, 254).filter(lambda c: c not in (52, 53) and c not in opts)
    opts.update(draw(st.dictionaries(others, sized(400), max_size=draw(st.sampled_from([3, 40])))))
    if draw(st.booleans()) and Opt.RELAY_AGENT_INFO not in opts:
        link = draw(addresses_in("10.8.0.1", "10.7.0.1", "192.0.2.7"))
        opts[Opt.RELAY_AGENT_INFO] = b"\x01\x02ab\x05\x04" + link
    msg.options = opts if msg.cookie else {}
    return msg


def check_reply(request: Message, data: bytes) -> Message:
    reply = decode(data)  # a reply always decodes
    assert reply.op == BOOTREPLY and reply.xid == request.xid
    assert reply.chaddr == request.chaddr
    if request.is_bootp:
        assert reply.message_type is None
        return reply
    assert len(data) <= max(request.max_message_size - 28, MIN_REPLY_LEN)
    assert reply.options[Opt.SERVER_ID] == SERVER.packed
    mtype = reply.message_type
    assert mtype in (MessageType.OFFER, MessageType.ACK, MessageType.NAK)
    if mtype is MessageType.OFFER or (mtype is MessageType.ACK and reply.yiaddr != IPv4Address(0)):
        assert Opt.LEASE_TIME in reply.options
        assert any(reply.yiaddr in net for net in (LOCAL, RACK7.network, RACK8.network))
    for echoed in (Opt.CLIENT_ID, Opt.RELAY_AGENT_INFO):
        if echoed in request.options:
            assert reply.options[echoed] == request.options[echoed]
    return reply


def fuzz_engine() -> DhcpEngine:
    return engine(bootp=True, authoritative=True)


ENGINE = fuzz_engine()


@FUZZ
@given(requests())
def test_every_request_gets_a_well_defined_outcome(request: Message) -> None:
    try:
        data = encode(request)
    except PacketError:
        return  # a request the codec cannot put on the wire is not one to fuzz with
    out = ENGINE.handle(data, (str(request.ciaddr), 68), NOW)
    assert len(out) <= 1
    if out:
        check_reply(request, out[0].payload)


@FUZZ
@given(requests(), st.data())
def test_codec_round_trip_or_its_own_error(request: Message, data: st.DataObject) -> None:
    size = data.draw(st.sampled_from([576, 577, 1500, 0xFFFF]))
    try:
        wire = encode(request, size)
    except PacketError:
        return
    back = decode(wire)
    assert back.xid == request.xid
    for code, value in back.options.items():
        assert request.options[code] == value
    # A flipped byte: the codec's error or a message, never another exception.
    pos = data.draw(st.integers(0, len(wire) - 1))
    flipped = wire[:pos] + bytes([wire[pos] ^ 0xFF]) + wire[pos + 1 :]
    try:
        decode(flipped)
    except PacketError:
        pass


def test_memory_stays_bounded_under_many_random_clients() -> None:
    """4,000 DISCOVERs from new MACs (and relays, and hostile options): the engine's
    lease table stays within its pools and the allocation peak is small."""
    eng = fuzz_engine()
    pools = sum(len(s.policy.config.addresses) for s in eng.scopes)
    big = bytes(255)
    tracemalloc.start()
    try:
        for n in range(4000):
            msg = Message(xid=n, chaddr=n.to_bytes(6, "big") + bytes(10), giaddr=RELAYS[n % 4])
            msg.options = {
                Opt.MESSAGE_TYPE: bytes([MessageType.DISCOVER]),
                Opt.CLIENT_ID: n.to_bytes(4, "big") + big[:200],
                Opt.HOSTNAME: big,
            }
            eng.handle(encode(msg), ("0.0.0.0", 68), NOW + n / 1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    held = sum(len(s.policy.leases()) for s in eng.scopes)
    assert held <= pools
    assert peak < 16 * 1024 * 1024, f"peak {peak} bytes"
