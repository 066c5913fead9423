"""Fuzz job for the PXE responder (issue 19, replacing an any-bytes fuzz that never
got past the codec): valid PXE DISCOVERs and boot-server REQUESTs with random fields
and hostile sizes (random architectures and UNDI versions, long and many options,
relay information, client ids, small and large maximum message sizes, relays) reach
`ProxyResponder.handle`, and each gets exactly the reply it should: an OFFER on 67 or
an ACK on 4011 that decodes, answers its xid, carries no address, names the boot file
the firmware table chooses, and echoes what must be echoed; or no reply only when the
required options could not fit the client's size. A corrupted copy of the same
datagram gets no reply or a well-formed one, never an exception."""

from __future__ import annotations

from datetime import timedelta
from ipaddress import IPv4Address

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pxe_requests import FILES, SERVER

from ptftpd.dhcp import Message, MessageType, Opt, decode, encode
from ptftpd.dhcp.packet import PacketError
from ptftpd.pxe import BootLog, ProxyResponder, choose_boot_file

FUZZ = settings(
    max_examples=300,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
RELAY = IPv4Address("10.99.0.1")


def sized(max_size: int) -> st.SearchStrategy[bytes]:
    lengths = st.one_of(st.sampled_from([0, 1, 255, 256, max_size]), st.integers(0, max_size))
    return lengths.flatmap(lambda n: st.binary(min_size=n, max_size=n))


@st.composite
def pxe_messages(draw: st.DrawFn) -> tuple[Message, bool]:
    """A PXE client's DISCOVER (port 67) or boot-server REQUEST (port 4011)."""
    on_4011 = draw(st.booleans())
    arch = draw(st.integers(0, 0xFFFF))
    undi = draw(st.integers(0, 999999))
    msg = Message(
        htype=1,
        hlen=draw(st.sampled_from([6, 6, 0, 16])),
        xid=draw(st.integers(0, 2**32 - 1)),
        secs=draw(st.integers(0, 0xFFFF)),
        flags=draw(st.sampled_from([0, 0x8000])),
        ciaddr=IPv4Address("10.78.0.140") if on_4011 else IPv4Address(0),
        giaddr=draw(st.sampled_from([IPv4Address(0), RELAY])),
        chaddr=draw(st.binary(min_size=16, max_size=16)),
    )
    vendor = f"PXEClient:Arch:{arch % 100000:05d}:UNDI:{undi:06d}".encode()
    opts: dict[int, bytes] = {
        Opt.MESSAGE_TYPE: bytes([MessageType.REQUEST if on_4011 else MessageType.DISCOVER]),
        Opt.VENDOR_CLASS: vendor + draw(st.sampled_from([b"", b"x" * 200])),
        Opt.CLIENT_ARCH: draw(
            st.sampled_from([arch.to_bytes(2, "big"), b"", b"\x00\x07\x00\x09", b"\x01"])
        ),
    }
    extra = st.sampled_from(
        [
            (Opt.CLIENT_UUID, sized(17)),
            (Opt.CLIENT_NDI, sized(3)),
            (Opt.CLIENT_ID, sized(300)),
            (Opt.RELAY_AGENT_INFO, sized(300)),
            (Opt.PARAMETER_LIST, sized(300)),
            (Opt.MAX_MESSAGE_SIZE, st.integers(0, 0xFFFF).map(lambda n: n.to_bytes(2, "big"))),
            (Opt.USER_CLASS, st.sampled_from([b"iPXE", b"\x04iPXE", b"other"])),
            (Opt.IPXE_ENCAP, sized(30)),
            (Opt.VENDOR_SPECIFIC, sized(60)),
        ]
    )
    for code, values in draw(st.lists(extra, max_size=6)):
        opts[code] = draw(values)
    others = st.integers(128, 254).filter(lambda c: c not in opts and c != 175)
    opts.update(draw(st.dictionaries(others, sized(300), max_size=draw(st.sampled_from([2, 30])))))
    msg.options = opts
    return msg, on_4011


@FUZZ
@given(pxe_messages(), st.data())
def test_every_pxe_request_reaches_the_responder_and_is_answered_right(
    case: tuple[Message, bool], data: st.DataObject
) -> None:
    msg, on_4011 = case
    try:
        wire = encode(msg)
    except PacketError:
        return
    responder = ProxyResponder(SERVER, FILES, boot_log=BootLog(emit=lambda _line: None))
    now = 1_700_000_000.0
    source = (str(msg.ciaddr), 68)
    out = responder.handle(wire, source, boot_server=on_4011, now=now)
    if not out:
        # Only when what must be echoed (61, 82) cannot fit the client's size.
        needed = sum(2 + len(msg.options.get(c, b"")) for c in (Opt.CLIENT_ID, 82))
        assert needed > 250, "a valid PXE request got no reply"
        return
    [sent] = out
    reply = decode(sent.payload)
    assert reply.op == 2 and reply.xid == msg.xid and reply.chaddr == msg.chaddr
    assert reply.yiaddr == IPv4Address(0), "a proxy never hands out an address"
    assert reply.message_type is (MessageType.ACK if on_4011 else MessageType.OFFER)
    assert reply.options[Opt.SERVER_ID] == SERVER.packed
    assert reply.options[Opt.VENDOR_CLASS] == b"PXEClient"
    assert reply.file_str == choose_boot_file(FILES, msg).file and reply.siaddr == SERVER
    for echoed in (Opt.CLIENT_ID, Opt.RELAY_AGENT_INFO):
        if echoed in msg.options:
            assert reply.options[echoed] == msg.options[echoed]
    assert len(sent.payload) <= max(msg.max_message_size - 28, 300)
    if msg.giaddr != IPv4Address(0):
        assert sent.address == (str(RELAY), 67)
    # The same datagram with one byte flipped: no reply, or a reply that decodes.
    pos = data.draw(st.integers(0, len(wire) - 1))
    flipped = wire[:pos] + bytes([wire[pos] ^ data.draw(st.integers(1, 255))]) + wire[pos + 1 :]
    for got in responder.handle(flipped, source, boot_server=on_4011, now=now):
        assert decode(got.payload).op == 2
