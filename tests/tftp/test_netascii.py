"""netascii is a stream codec: any split of the wire bytes must decode the same."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ptftpd.tftp import netascii


def test_encode_vectors() -> None:
    assert netascii.encode(b"a\nb\rc") == b"a\r\nb\r\0c"
    assert netascii.encoded_size(b"a\nb\rc") == len(b"a\r\nb\r\0c")


def test_cr_split_across_blocks() -> None:
    dec = netascii.Decoder()
    assert dec.feed(b"line\r") == b"line"
    assert dec.feed(b"\nnext\r") == b"\nnext"
    assert dec.feed(b"\0end") == b"\rend"
    assert dec.flush() == b""


text = st.binary(max_size=400).map(lambda b: b.replace(b"\0", b"x"))


@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=6))
def test_round_trip_any_chunking(data: bytes, cuts: list[int]) -> None:
    wire = netascii.encode(data)
    points = sorted({min(c, len(wire)) for c in cuts})
    dec = netascii.Decoder()
    out = b""
    start = 0
    for p in [*points, len(wire)]:
        out += dec.feed(wire[start:p])
        start = p
    out += dec.flush()
    assert out == data
