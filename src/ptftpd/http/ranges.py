"""Range header (RFC 9110 section 14) for one representation of a known size.

Only a single byte range is honoured (206). A multi-range request is answered with the
whole file (200): RFC 9110 lets a server ignore Range, boot clients never ask for several
ranges, and multipart/byteranges would only add code nobody exercises. A header we cannot
parse, or a unit other than `bytes`, is ignored the same way (200), as the RFC requires.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class ByteRange:
    """Inclusive first and last byte, as in `Content-Range: bytes first-last/size`."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1


class _Whole:
    def __repr__(self) -> str:
        return "WHOLE"


class _Unsatisfiable:
    def __repr__(self) -> str:
        return "UNSATISFIABLE"


WHOLE: Final = _Whole()
"""Serve the complete representation (no Range, an ignored Range, or several ranges)."""
UNSATISFIABLE: Final = _Unsatisfiable()
"""Answer 416 with `Content-Range: bytes */size`."""

RangeChoice = ByteRange | _Whole | _Unsatisfiable

_SPEC = re.compile(r"[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*")
_HUGE = 10**18  # beyond any file; also keeps int() away from 4300-digit strings


def _number(text: str) -> int:
    return _HUGE if len(text) > 18 else int(text)


def choose_range(header: str | None, size: int) -> RangeChoice:
    """What to send for `Range: header` on a file of `size` bytes."""
    if header is None:
        return WHOLE
    unit, sep, specs = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return WHOLE
    items = specs.split(",")
    if len(items) != 1:
        # Several ranges (or a list with empty elements): validity is not checked, the
        # whole file is the answer either way.
        return WHOLE
    match = _SPEC.fullmatch(items[0])
    if match is None:
        return WHOLE
    first_text, last_text = match.groups()
    if first_text:
        first = _number(first_text)
        if last_text:
            last = _number(last_text)
            if last < first:
                return WHOLE  # syntactically invalid: ignore Range
        else:
            last = size - 1
        if first >= size:
            return UNSATISFIABLE
        return ByteRange(first, min(last, size - 1))
    if not last_text:
        return WHOLE  # "bytes=-": invalid
    suffix = _number(last_text)
    if suffix == 0 or size == 0:
        return UNSATISFIABLE
    return ByteRange(max(0, size - suffix), size - 1)
