"""netascii (RFC 764 via RFC 1350) as streaming codecs.

Blocks cut the byte stream anywhere, so a CR at the end of one block pairs with the
first byte of the next: the decoder carries that CR over between calls.
"""

from __future__ import annotations


def encode(data: bytes) -> bytes:
    """Local text -> wire: CR -> CR NUL, LF -> CR LF. Stateless, so any chunking works."""
    return data.replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")


def encoded_size(data: bytes) -> int:
    return len(data) + data.count(b"\r") + data.count(b"\n")


class Decoder:
    """Wire -> local text: CR LF -> LF, CR NUL -> CR; a lone CR before anything else is
    kept as CR (lenient towards clients that send bare CRs)."""

    __slots__ = ("_pending_cr",)

    def __init__(self) -> None:
        self._pending_cr = False

    def feed(self, data: bytes) -> bytes:
        if self._pending_cr:
            data = b"\r" + data
            self._pending_cr = False
        if data.endswith(b"\r"):
            data = data[:-1]
            self._pending_cr = True
        if b"\r" not in data:
            return data
        return data.replace(b"\r\n", b"\n").replace(b"\r\0", b"\r")

    def flush(self) -> bytes:
        """End of stream: a trailing CR with nothing after it stands for itself."""
        if self._pending_cr:
            self._pending_cr = False
            return b"\r"
        return b""
