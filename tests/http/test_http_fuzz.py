"""Fuzz job for the HTTP head (issue 19): valid request heads with random fields and
hostile sizes (many headers, long values, odd but legal whitespace, pipelining), fed to
the sans-IO core the way the driver feeds it (reads of at most 64 KiB, only when it needs
data). Every request gets exactly one well-defined outcome - a response with a valid
status, or the end of the connection - and memory stays bounded. Bounded in time: a fixed
number of examples, each a few requests of at most ~100 KB.
"""

from __future__ import annotations

import tracemalloc
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptftpd.http.config import HttpConfig
from ptftpd.http.errors import HttpError
from ptftpd.http.protocol import CLOSED, NEED_DATA, Request, ServerConnection

NOW = 1_790_000_000.0
MTIME = 1_700_000_000.0
LIMITS = HttpConfig(root=None, bind=())
READ_SIZE = 64 * 1024
VALID_STATUSES = {200, 206, 400, 404, 405, 413, 414, 416, 431, 505}

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
TOKEN = st.text(TCHAR, min_size=1, max_size=20)
OWS = st.text(" \t", max_size=3)  # optional whitespace around a field value (RFC 9110 5.6.3)
VCHAR = "".join(chr(c) for c in range(0x21, 0x7F))
RESERVED = {"host", "content-length", "transfer-encoding", "connection", "range", "if-range"}


@dataclass(frozen=True)
class Planned:
    head: bytes
    method: str
    fits: bool
    """The head is well inside the limits (served) or far beyond them (refused)."""
    close: bool

    def __repr__(self) -> str:  # a failing example stays readable
        return f"Planned({self.head[:120]!r}... {len(self.head)} bytes, fits={self.fits})"


@st.composite
def field_values(draw: st.DrawFn, long: bool) -> str:
    size = draw(st.integers(33_000, 60_000) if long else st.integers(0, 40))
    first = draw(st.sampled_from(VCHAR))
    # Interior spaces and tabs are legal; the value starts and ends with a visible char.
    middle = draw(st.text(VCHAR + " \t", max_size=20)) if size else ""
    value = (first + middle) * max(1, size // max(1, len(first + middle)))
    return value.rstrip(" \t") if size else ""


@st.composite
def request_heads(draw: st.DrawFn, last: bool) -> Planned:
    method = draw(st.sampled_from(["GET", "HEAD"]))
    path = "/" + "/".join(draw(st.lists(st.text("abcXYZ019-._~", min_size=1), max_size=4)))
    version = draw(st.sampled_from(["1.1", "1.1", "1.0"]))
    hostile = draw(st.sampled_from(["none", "many", "long"]))
    fields: list[tuple[str, str]] = []
    if version == "1.1" or draw(st.booleans()):
        host = draw(st.sampled_from(["10.0.0.1", "boot", "[fd00::1]:8080", "h:80", ""]))
        fields.append(("Host", host))
    if draw(st.booleans()):
        fields.append(("Range", f"bytes={draw(st.integers(0, 2000))}-"))
    close = last or version == "1.0" or draw(st.integers(0, 9)) == 0
    if close and version == "1.1":
        fields.append(("Connection", "close"))
    extra: list[tuple[str, str]] = []
    count = draw(st.integers(0, 8)) if hostile != "many" else draw(st.integers(1500, 3000))
    for _ in range(count):
        name = draw(TOKEN)
        if name.lower() not in RESERVED:
            extra.append((name, draw(field_values(long=False))))
    if hostile == "long":
        extra.append(("X-" + draw(TOKEN), draw(field_values(long=True))))
    shuffle = draw(st.randoms()).shuffle
    request_line = f"{method} {path} HTTP/{version}"

    def head_of(chosen: list[tuple[str, str]]) -> bytes:
        lines = [request_line] + [f"{n}:{draw(OWS)}{v}{draw(OWS)}" for n, v in chosen]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    everything = fields + extra
    shuffle(everything)
    head = head_of(everything)
    if LIMITS.max_head // 2 < len(head) < 2 * LIMITS.max_head:
        # Near the limit the outcome depends on how separators are counted: keep the
        # expectation exact by staying clearly on one side (hostile sizes go far past).
        head = head_of(fields)
    return Planned(head, method, len(head) <= LIMITS.max_head // 2, close)


@st.composite
def pipelines(draw: st.DrawFn) -> tuple[list[Planned], list[int]]:
    count = draw(st.integers(1, 4))
    planned = [draw(request_heads(last=i == count - 1)) for i in range(count)]
    stream_size = sum(len(p.head) for p in planned)
    cuts = sorted(draw(st.lists(st.integers(1, max(1, stream_size - 1)), max_size=6)))
    return planned, cuts


def served_outcomes(stream: bytes, cuts: list[int]) -> tuple[list[int], bool, int]:
    """Drive a connection like the asyncio driver: (statuses sent, ended, most bytes
    buffered in the core at any time)."""
    conn = ServerConnection(LIMITS)
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    chunks = [p[i : i + READ_SIZE] for p in pieces if p for i in range(0, len(p), READ_SIZE)]
    statuses: list[int] = []
    most = 0
    for _ in range(len(chunks) + 20):  # every step consumes a chunk or ends a request
        try:
            event = conn.next_request()
        except HttpError as error:
            response = conn.error_response(error, now=NOW, close=True)
            statuses.append(response.status)
            assert conn.finish_response() is False
            return statuses, True, most
        if event is NEED_DATA:
            conn.receive(chunks.pop(0) if chunks else b"")
            most = max(most, len(conn._h11.trailing_data[0]))
            continue
        if event is CLOSED:
            return statuses, True, most
        assert isinstance(event, Request)
        response = conn.file_response(
            event, size=1000, mtime=MTIME, now=NOW, content_type="application/octet-stream"
        )
        statuses.append(response.status)
        if not conn.finish_response():
            return statuses, True, most
    raise AssertionError("the connection neither answered nor ended")


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(pipelines())
def test_every_request_gets_one_outcome_and_memory_stays_bounded(
    case: tuple[list[Planned], list[int]],
) -> None:
    planned, cuts = case
    stream = b"".join(p.head for p in planned)
    tracemalloc.start()
    try:
        statuses, ended, most = served_outcomes(stream, cuts)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ended
    assert all(s in VALID_STATUSES for s in statuses), statuses
    # The expected outcome, request by request, until the first refusal or close.
    expected: list[int] = []
    for p in planned:
        if not p.fits:
            expected.append(431)
            break
        expected.append(200)  # Range on HEAD is ignored; GET ranges here are 0..2000-
        if p.close:
            break
    got = [200 if s in (206, 416) else s for s in statuses]
    assert got == expected, (statuses, [(len(p.head), p.fits, p.close) for p in planned])
    # Bounded memory: what the core buffers never exceeds one read past the head limit,
    # and the peak is linear in that bounded input. The factor is h11's header regex: a
    # value of alternating spaces and visible characters ("! ! ! ...") costs the regex
    # engine about 160 bytes of backtracking state per byte while it matches (5.4 MB
    # for a 33 KB head, measured); at most 13 MB for the largest head ever parsed.
    assert most <= LIMITS.max_head + READ_SIZE, most
    assert peak <= 200 * min(len(stream), LIMITS.max_head + READ_SIZE) + 2_000_000, peak
