"""Fuzz job for the DHCPv6 codec and engine (issue 19): valid client messages with
random fields and hostile sizes and depths (many IAs, long options, IA addresses and
statuses nested as deep as the codec allows and deeper, relay chains up to the hop
count limit and past it, big Interface-IDs), in full and proxy mode. Every datagram
gets a well-defined outcome: no reply, or one reply that decodes (through as many
Relay-reply layers as there were relays) and answers the request's transaction id;
the codec raises only its own `PacketError`. Memory stays bounded: the binding table
within its caps after many random clients, and a small allocation peak. Bounded time:
`max_examples` and a deadline."""

from __future__ import annotations

import struct
import tracemalloc
from datetime import timedelta
from ipaddress import IPv6Address

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_dhcp6_engine import PREFIX, SERVER_DUID, SOURCE, T0, make_engine

from ptftpd.dhcp6.codec import (
    MAX_RELAYS,
    ClientArch,
    ClientId,
    ElapsedTime,
    IaAddress,
    IaNa,
    IaPd,
    IaPrefix,
    InterfaceId,
    Message,
    MsgType,
    Option,
    OptionRequest,
    PacketError,
    RapidCommit,
    RawOption,
    RelayMessage,
    RelayMsg,
    ServerId,
    StatusCode,
    UserClass,
    VendorClass,
    decode_any,
    encode,
)

FUZZ = settings(
    max_examples=200,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CLIENT_TYPES = [
    MsgType.SOLICIT,
    MsgType.REQUEST,
    MsgType.CONFIRM,
    MsgType.RENEW,
    MsgType.REBIND,
    MsgType.RELEASE,
    MsgType.DECLINE,
    MsgType.INFORMATION_REQUEST,
]
u32 = st.integers(0, 0xFFFFFFFF)
addresses = st.one_of(
    st.integers(1, 2**16).map(lambda n: PREFIX[n]),
    st.sampled_from([IPv6Address("2001:db8::1"), IPv6Address("::"), PREFIX[0]]),
)
statuses = st.builds(StatusCode, st.integers(0, 0xFFFF), st.text(max_size=300))
ia_addresses = st.builds(IaAddress, addresses, u32, u32, st.lists(statuses, max_size=2).map(tuple))
ia_nas = st.builds(
    IaNa, u32, u32, u32, st.lists(st.one_of(ia_addresses, statuses), max_size=3).map(tuple)
)
ia_pds = st.builds(
    IaPd,
    u32,
    u32,
    u32,
    st.lists(st.builds(IaPrefix, u32, u32, st.integers(0, 128), addresses), max_size=2).map(tuple),
)
duids = st.one_of(st.binary(min_size=3, max_size=130), st.sampled_from([SERVER_DUID]))
netboot = st.sampled_from(
    [
        (ClientArch((7,)), VendorClass(343, (b"PXEClient:Arch:00007:UNDI:003016",))),
        (ClientArch((16,)), VendorClass(343, (b"HTTPClient:Arch:00016:UNDI:003016",))),
        (UserClass((b"iPXE",)), OptionRequest((59, 23))),
        (),
    ]
)
long_raw = st.builds(
    RawOption,
    st.integers(100, 0xFFFF).filter(lambda c: c not in (9, 18, 25, 26)),
    st.one_of(st.binary(max_size=40), st.integers(0, 3000).map(bytes)),
)


@st.composite
def client_messages(draw: st.DrawFn) -> Message:
    kind = draw(st.sampled_from(CLIENT_TYPES))
    options: list[Option] = []
    if draw(st.integers(0, 9)):
        options.append(ClientId(draw(duids)))
    server = draw(st.sampled_from([None, SERVER_DUID, b"\x00\x03\x00\x01other!"]))
    if server is not None:
        options.append(ServerId(server))
    options.append(ElapsedTime(draw(st.integers(0, 0xFFFF))))
    many = draw(st.sampled_from([2, 2, 2, 300]))
    options += draw(st.lists(ia_nas, max_size=many))
    options += draw(st.lists(ia_pds, max_size=2))
    options += draw(netboot)
    if draw(st.booleans()):
        options.append(RapidCommit())
    options += draw(st.lists(long_raw, max_size=draw(st.sampled_from([2, 30]))))
    return Message(kind, draw(st.integers(0, 0xFFFFFF)), tuple(draw(st.permutations(options))))


def relay_chain(msg: Message, hops: int, interface: bytes) -> RelayMessage | Message:
    packet: Message | RelayMessage = msg
    for hop in range(hops):
        options: tuple[Option, ...] = (RelayMsg(packet),)
        if hop == 0:
            options = (InterfaceId(interface), *options)
        link = PREFIX[0xFFFF] if hop == 0 else IPv6Address("::")
        packet = RelayMessage(MsgType.RELAY_FORW, min(hop, 255), link, PREFIX[7], options)
    return packet


def wire(packet: Message | RelayMessage) -> bytes | None:
    try:
        data = encode(packet)
    except ValueError:
        return None  # an option over 65535 bytes: not a datagram anyone can send
    return data if len(data) <= 0xFFFF else None


def check(engine_out: list[object], request: Message, hops: int) -> None:
    assert len(engine_out) <= 1
    if not engine_out:
        return
    out = engine_out[0]
    packet = decode_any(out.payload)  # type: ignore[attr-defined]
    layers = 0
    while isinstance(packet, RelayMessage):
        assert packet.msg_type == MsgType.RELAY_REPL
        layers += 1
        inner = packet.first(RelayMsg)
        assert inner is not None
        packet = inner.message
    assert layers == hops
    assert packet.transaction_id == request.transaction_id
    assert packet.msg_type in (MsgType.ADVERTISE, MsgType.REPLY)
    assert packet.first(ServerId) == ServerId(SERVER_DUID)
    client = request.first(ClientId)
    if client is not None:
        assert packet.first(ClientId) == client
    ias = len(packet.all(IaNa)) + len(packet.all(IaPd))
    assert ias <= 2 * 32, "IAs answered per message are bounded"


FULL = make_engine()
PROXY = make_engine(proxy=True)


@FUZZ
@given(client_messages(), st.integers(0, MAX_RELAYS + 2), st.binary(max_size=300), st.booleans())
def test_every_message_gets_a_well_defined_outcome(
    request: Message, hops: int, interface: bytes, proxy: bool
) -> None:
    data = wire(relay_chain(request, hops, interface))
    if data is None:
        return
    engine = PROXY if proxy else FULL
    out = engine.handle(data, SOURCE, T0)
    if hops > MAX_RELAYS:
        assert out == [], "relays nested past the hop count limit"
        return
    check(list(out), request, hops)
    assert len(FULL.policy.store) <= FULL.config.max_offers + FULL.config.max_bindings


@FUZZ
@given(client_messages(), st.data())
def test_codec_decodes_or_raises_its_own_error(request: Message, data: st.DataObject) -> None:
    raw = wire(request)
    if raw is None:
        return
    assert decode_any(raw) == request
    pos = data.draw(st.integers(0, len(raw) - 1))
    for blob in (raw[:pos], raw[:pos] + bytes([raw[pos] ^ 0xFF]) + raw[pos + 1 :]):
        try:
            decode_any(blob)
        except PacketError:
            pass


@FUZZ
@given(st.integers(1, 5000), st.sampled_from([3, 5, 25, 26, 9]))
def test_any_nesting_depth_is_decoded_or_refused(depth: int, code: int) -> None:
    """Options (or relays) inside each other `depth` deep, up to what 64 KiB holds."""
    body = b"\x01\x00\x00\x01" if code == 9 else b""
    for _ in range(depth):
        fixed = bytes((MsgType.RELAY_FORW, 0)) + bytes(32) if code == 9 else b""
        chunk = body if code == 9 else bytes({3: 12, 25: 12, 5: 24, 26: 25}[code]) + body
        if len(chunk) > 0xFFFF - 40:
            break
        body = fixed + struct.pack("!HH", code, len(chunk)) + chunk
    data = body if code == 9 else b"\x01\x00\x00\x01" + body
    try:
        decode_any(data)
    except PacketError as exc:
        assert depth > 3, exc  # real messages nest 3 deep: they always decode


def test_memory_stays_bounded_under_many_random_clients() -> None:
    """10,000 Solicits with 4 IA_NAs each from new DUIDs: the binding table stays within
    its offer cap and the allocation peak is small."""
    engine = make_engine(max_offers=2000)
    tracemalloc.start()
    try:
        for n in range(10_000):
            duid = b"\x00\x04" + n.to_bytes(16, "big")
            ias = tuple(IaNa(i, 0, 0) for i in range(4))
            msg = Message(MsgType.SOLICIT, n, (ClientId(duid), ElapsedTime(0), *ias))
            engine.handle(encode(msg), SOURCE, T0 + n / 1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(engine.policy.store) <= 2000
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes"
