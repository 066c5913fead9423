"""Issue 19 item 4 and the relay header of item 14: the DHCPv6 codec bounds nesting
(options in options, relays in relays) with its own `PacketError`, never Python's
RecursionError, and reads and writes Relay-forward/Relay-reply (RFC 8415 section 9)."""

from __future__ import annotations

import struct
from ipaddress import IPv6Address

import pytest

from ptftpd.dhcp6.codec import (
    MAX_OPTION_DEPTH,
    MAX_RELAYS,
    ClientId,
    ElapsedTime,
    IaNa,
    IaPd,
    IaPrefix,
    InterfaceId,
    Message,
    MsgType,
    PacketError,
    RelayMessage,
    RelayMsg,
    StatusCode,
    decode,
    decode_any,
    encode,
)

DUID = bytes.fromhex("00030001525400c0ffee")
LINK = IPv6Address("fd00:79::1")
PEER = IPv6Address("fe80::5054:ff:fec0:ffee")


def option(code: int, body: bytes) -> bytes:
    return struct.pack("!HH", code, len(body)) + body


def nested_ia_na(depth: int) -> bytes:
    """IA_NA inside IA_NA, `depth` levels: 16 bytes a level, 4,000 fit in 64 KiB."""
    body = b""
    for _ in range(depth):
        body = option(3, struct.pack("!III", 1, 0, 0) + body)
    return body


@pytest.mark.parametrize("depth", [MAX_OPTION_DEPTH + 1, 300, 4000])
def test_deeply_nested_options_are_the_codecs_error(depth: int) -> None:
    data = b"\x01\x00\x00\x01" + option(1, DUID) + nested_ia_na(depth)
    with pytest.raises(PacketError, match="nested"):
        decode(data)


def test_nesting_that_real_messages_use_still_decodes() -> None:
    # IA_NA > IA address > status code: three levels.
    ia = nested_ia_na(0)
    status = option(13, b"\x00\x00ok")
    address = option(5, LINK.packed + struct.pack("!II", 1, 2) + status)
    ia = option(3, struct.pack("!III", 7, 0, 0) + address)
    msg = decode(b"\x07\x00\x00\x01" + ia)
    [got] = msg.options
    assert isinstance(got, IaNa) and got.addresses[0].options == (StatusCode(0, "ok"),)


def relay_chain(depth: int) -> bytes:
    inner = encode(Message(MsgType.SOLICIT, 0x42, (ClientId(DUID), ElapsedTime(0))))
    for hop in range(depth):
        head = bytes((MsgType.RELAY_FORW, min(hop, 255))) + LINK.packed + PEER.packed
        inner = head + option(9, inner)
    return inner


def test_relay_messages_round_trip() -> None:
    client = Message(MsgType.SOLICIT, 0x42, (ClientId(DUID), ElapsedTime(0)))
    relay = RelayMessage(
        MsgType.RELAY_FORW, 0, LINK, PEER, (InterfaceId(b"eth7"), RelayMsg(client))
    )
    outer = RelayMessage(MsgType.RELAY_FORW, 1, IPv6Address("::"), LINK, (RelayMsg(relay),))
    wire = encode(outer)
    assert decode_any(wire) == outer
    assert encode(decode_any(wire)) == wire
    with pytest.raises(PacketError):
        decode(wire)  # a client/server message was expected


@pytest.mark.parametrize("depth", [MAX_RELAYS + 1, 200, 1700])
def test_deeply_nested_relays_are_the_codecs_error(depth: int) -> None:
    with pytest.raises(PacketError, match="nested"):
        decode_any(relay_chain(depth))


def test_relays_up_to_the_hop_count_limit_decode() -> None:
    msg = decode_any(relay_chain(MAX_RELAYS))
    for _ in range(MAX_RELAYS):
        assert isinstance(msg, RelayMessage)
        inner = msg.first(RelayMsg)
        assert inner is not None
        msg = inner.message
    assert isinstance(msg, Message) and msg.transaction_id == 0x42


def test_relay_without_a_relayed_message_is_malformed() -> None:
    head = bytes((MsgType.RELAY_FORW, 0)) + LINK.packed + PEER.packed
    with pytest.raises(PacketError):
        decode_any(head + option(18, b"eth0"))
    with pytest.raises(PacketError):
        decode_any(head[:20])


def test_ia_pd_and_prefix_round_trip() -> None:
    prefix = IaPrefix(100, 200, 56, IPv6Address("fd00:aa00::"), (StatusCode(0, ""),))
    msg = Message(MsgType.SOLICIT, 1, (ClientId(DUID), IaPd(9, 0, 0, (prefix,))))
    assert decode(encode(msg)) == msg
    with pytest.raises(PacketError):
        decode(b"\x01\x00\x00\x01" + option(25, struct.pack("!III", 1, 0, 0) + option(26, b"\x00")))
