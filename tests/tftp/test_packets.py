"""Codec: golden vectors, round trips, and robustness against arbitrary bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptftpd.tftp.packets import (
    Ack,
    Data,
    Error,
    Opcode,
    OptionAck,
    PacketError,
    Request,
    decode,
)

GOLDEN = [
    (b"\x00\x01pxelinux.0\x00octet\x00", Request(Opcode.RRQ, "pxelinux.0", "octet")),
    (
        b"\x00\x02up.bin\x00netascii\x00tsize\x0042\x00",
        Request(Opcode.WRQ, "up.bin", "netascii", (("tsize", "42"),)),
    ),
    (b"\x00\x03\x00\x01hello", Data(1, b"hello")),
    (b"\x00\x03\xff\xff", Data(65535, b"")),
    (b"\x00\x04\x00\x00", Ack(0)),
    (b"\x00\x05\x00\x01File not found\x00", Error(1, "File not found")),
    (b"\x00\x06blksize\x001428\x00", OptionAck((("blksize", "1428"),))),
]


@pytest.mark.parametrize(("wire", "packet"), GOLDEN)
def test_golden_vectors(wire: bytes, packet: object) -> None:
    assert decode(wire) == packet
    assert packet.encode() == wire  # type: ignore[attr-defined]


def test_option_names_case_insensitive_first_wins() -> None:
    req = decode(b"\x00\x01f\x00OCTET\x00BlkSize\x001024\x00blksize\x00512\x00")
    assert isinstance(req, Request)
    assert req.option_map()["blksize"] == ("BlkSize", "1024")


def test_trailing_nul_padding_is_tolerated() -> None:
    req = decode(b"\x00\x01f\x00octet\x00tsize\x000\x00\x00\x00")
    assert isinstance(req, Request) and req.options == (("tsize", "0"),)


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"\x00",
        b"\x00\x01",
        b"\x00\x01file",  # no NUL
        b"\x00\x01file\x00",  # no mode
        b"\x00\x01f\x00octet\x00blksize\x00",  # option without value
        b"\x00\x03\x00",
        b"\x00\x04\x01",
        b"\x00\x05\x00",
        b"\x00\x07\x00\x00",
        b"\x00\x06blksize",
    ],
)
def test_malformed_raise_packet_error(wire: bytes) -> None:
    with pytest.raises(PacketError):
        decode(wire)


names = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), min_size=1)
values = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)))
options = st.lists(st.tuples(names, values), max_size=5).map(tuple)

packets = st.one_of(
    st.builds(Request, st.sampled_from([Opcode.RRQ, Opcode.WRQ]), values, values, options),
    st.builds(Data, st.integers(0, 65535), st.binary(max_size=600)),
    st.builds(Ack, st.integers(0, 65535)),
    st.builds(Error, st.integers(0, 65535), values),
    st.builds(OptionAck, options),
)


@given(packets)
def test_round_trip(packet: object) -> None:
    assert decode(packet.encode()) == packet  # type: ignore[attr-defined]


@given(st.binary(max_size=700))
def test_arbitrary_bytes_only_raise_packet_error(wire: bytes) -> None:
    try:
        decode(wire)
    except PacketError:
        pass


@given(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 0, 255]), st.binary(max_size=100))
def test_arbitrary_bodies_only_raise_packet_error(op: int, body: bytes) -> None:
    try:
        decode(bytes([0, op]) + body)
    except PacketError:
        pass
