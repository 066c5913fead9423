"""The sans-IO HTTP core: parser, keep-alive, Range, path decoding. No sockets here."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptftpd.http.config import HttpConfig
from ptftpd.http.errors import HttpError
from ptftpd.http.protocol import (
    CLOSED,
    NEED_DATA,
    Request,
    Response,
    ServerConnection,
    Signal,
    http_date,
)
from ptftpd.http.ranges import UNSATISFIABLE, WHOLE, ByteRange, choose_range
from ptftpd.http.target import decode_path
from ptftpd.pxe.api.connection import ApiConnection

NOW = 1_790_000_000.0
MTIME = 1_700_000_000.0


def request_of(conn: ServerConnection, data: bytes) -> Request:
    conn.receive(data)
    event = conn.next_request()
    assert isinstance(event, Request), event
    return event


def head_lines(head: bytes) -> tuple[str, dict[str, str]]:
    text = head.decode("latin-1")
    assert text.endswith("\r\n\r\n")
    status, *lines = text[:-4].split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(": ")
        headers[name.lower()] = value
    return status, headers


def file_response(conn: ServerConnection, req: Request, size: int = 1000) -> Response:
    return conn.file_response(
        req, size=size, mtime=MTIME, now=NOW, content_type="application/octet-stream"
    )


def serve(conn: ServerConnection, req: Request, size: int = 1000) -> tuple[str, dict[str, str]]:
    return head_lines(file_response(conn, req, size).head)


def first_response(
    data: bytes, size: int
) -> tuple[ServerConnection, Response, str, dict[str, str]]:
    """A new connection's answer to the request in `data` for a file of `size` bytes:
    the connection, the response, and its head's status line and headers."""
    conn = ServerConnection()
    response = file_response(conn, request_of(conn, data), size)
    return conn, response, *head_lines(response.head)


# -- golden requests -------------------------------------------------------------------
def test_golden_get_and_its_response_head() -> None:
    conn = ServerConnection()
    req = request_of(
        conn, b"GET /boot/ipxe.efi HTTP/1.1\r\nHost: 10.0.0.1:8080\r\nUser-Agent: iPXE/1.21\r\n\r\n"
    )
    assert req.method == "GET"
    assert req.target == b"/boot/ipxe.efi"
    assert req.http_version == "1.1"
    assert req.header("user-agent") == "iPXE/1.21"
    response = conn.file_response(
        req, size=1234, mtime=MTIME, now=NOW, content_type="application/efi"
    )
    assert response.head == (
        b"HTTP/1.1 200 OK\r\n"
        b"Date: " + http_date(NOW).encode() + b"\r\n"
        b"Server: ptftpd/2.0.0.dev0\r\n"
        b"Last-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\n"
        b"Accept-Ranges: bytes\r\n"
        b"Content-Type: application/efi\r\n"
        b"Content-Length: 1234\r\n\r\n"
    )
    assert (response.status, response.offset, response.length) == (200, 0, 1234)
    assert conn.finish_response() is True


def test_head_has_get_headers_and_no_body() -> None:
    conn, response, status, headers = first_response(b"HEAD /f HTTP/1.1\r\nHost: a\r\n\r\n", 777)
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-length"] == "777"
    assert response.length == 0
    assert conn.finish_response() is True


def test_byte_at_a_time_needs_data_until_the_head_is_complete() -> None:
    conn = ServerConnection()
    data = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
    for byte in data[:-1]:
        conn.receive(bytes([byte]))
        assert conn.next_request() is NEED_DATA
        assert conn.has_partial_request
    req = request_of(conn, data[-1:])
    assert req.target == b"/x"


def test_peer_closing_mid_head_is_a_quiet_close() -> None:
    conn = ServerConnection()
    conn.receive(b"GET /x HTTP/1.1\r\nHo")
    assert conn.next_request() is NEED_DATA
    conn.receive(b"")
    assert conn.next_request() is CLOSED


def test_peer_closing_between_requests() -> None:
    conn = ServerConnection()
    conn.receive(b"")
    assert conn.next_request() is CLOSED


# -- malformed heads -------------------------------------------------------------------
BIG_TARGET = b"/" + b"a" * 9000
MALFORMED = [
    (b"garbage\r\n\r\n", 400),
    (b"GET /x HTTP/1.1\r\n\r\n", 400),  # no Host
    (b"GET /x HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400),
    (b"GET /x HTTP/1.1\r\nBad Name: v\r\nHost: a\r\n\r\n", 400),
    (b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
    (b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", 400),
    (b"GET /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 405),
    (b"PUT /x HTTP/1.1\r\nHost: a\r\n\r\n", 405),
    (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 405),
    (b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 70000\r\n\r\n", 413),
    (b"GET " + BIG_TARGET + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),  # complete but too long
    (b"GET /" + b"a" * 20000, 414),  # request line alone beyond the head limit
    (b"GET /x HTTP/1.1\r\n" + (b"X-Filler: " + b"y" * 100 + b"\r\n") * 200, 431),
    (b"GET /x HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    (b"GET /x HTTP/3.1\r\nHost: a\r\n\r\n", 505),
]


@pytest.mark.parametrize(("data", "status"), MALFORMED)
def test_malformed_heads_are_refused_with_their_status(data: bytes, status: int) -> None:
    conn = ServerConnection()
    conn.receive(data)
    with pytest.raises(HttpError) as caught:
        conn.next_request()
    assert caught.value.status == status
    response = conn.error_response(caught.value, now=NOW, close=True)
    first, headers = head_lines(response.head.split(b"\r\n\r\n")[0] + b"\r\n\r\n")
    assert first.startswith(f"HTTP/1.1 {status} ")
    assert headers["connection"] == "close"
    if status == 405:
        assert headers["allow"] == "GET, HEAD"
    assert conn.finish_response() is False


def test_chunked_body_beyond_the_limit_is_413() -> None:
    conn = ServerConnection(HttpConfig(root=None, bind=(), max_body=10))
    conn.receive(b"GET /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert conn.next_request() is NEED_DATA
    conn.receive(b"8\r\n12345678\r\n")
    assert conn.next_request() is NEED_DATA
    conn.receive(b"8\r\n12345678\r\n")
    with pytest.raises(HttpError) as caught:
        conn.next_request()
    assert caught.value.status == 413


# -- keep-alive ------------------------------------------------------------------------
def test_http11_keeps_alive_and_serves_pipelined_requests_in_order() -> None:
    conn = ServerConnection()
    conn.receive(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n")
    first = conn.next_request()
    assert isinstance(first, Request) and first.target == b"/a"
    serve(conn, first)
    assert conn.finish_response() is True
    second = conn.next_request()
    assert isinstance(second, Request) and second.target == b"/b"
    _, headers = serve(conn, second)
    assert "connection" not in headers
    assert conn.finish_response() is True
    assert conn.next_request() is NEED_DATA


def test_connection_close_ends_the_connection() -> None:
    conn = ServerConnection()
    req = request_of(conn, b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    _, headers = serve(conn, req)
    assert headers["connection"] == "close"
    assert conn.finish_response() is False


def test_http10_closes_after_one_response() -> None:
    conn = ServerConnection()
    req = request_of(conn, b"GET /a HTTP/1.0\r\n\r\n")
    assert req.http_version == "1.0"
    _, headers = serve(conn, req)
    assert headers["connection"] == "close"
    assert conn.finish_response() is False


def test_a_get_body_is_read_and_dropped_then_the_next_request_follows() -> None:
    conn = ServerConnection()
    conn.receive(
        b"GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    first = conn.next_request()
    assert isinstance(first, Request) and first.target == b"/a"
    serve(conn, first)
    assert conn.finish_response() is True
    second = conn.next_request()
    assert isinstance(second, Request) and second.target == b"/b"


def test_a_body_still_coming_is_a_partial_request() -> None:
    """Head read, body not complete: the header timeout still runs (the file server's
    and the operator API's connections read requests alike)."""
    for conn in (ServerConnection(), ApiConnection()):
        conn.receive(b"GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nhel")
        assert conn.next_request() is NEED_DATA
        assert conn.has_partial_request
        conn.receive(b"lo12345")
        done = conn.next_request()
        assert not isinstance(done, Signal) and not conn.has_partial_request


def test_not_found_keeps_the_connection() -> None:
    conn = ServerConnection()
    req = request_of(conn, b"GET /nope HTTP/1.1\r\nHost: h\r\n\r\n")
    response = conn.error_response(HttpError(404, "no"), now=NOW, request=req, close=False)
    assert response.head.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert response.head.endswith(b"\r\n\r\n404 Not Found\n")
    assert conn.finish_response() is True


@pytest.mark.parametrize("range_header", ["bytes=0-9", "bytes=-5", "bytes=5000-"])
def test_head_ignores_range(range_header: str) -> None:
    """RFC 9110 14.2: range handling is defined for GET only (MUST ignore on HEAD)."""
    data = f"HEAD /f HTTP/1.1\r\nHost: a\r\nRange: {range_header}\r\n\r\n".encode()
    conn, response, status, headers = first_response(data, 1000)
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-length"] == "1000"
    assert "content-range" not in headers
    assert (response.status, response.offset, response.length) == (200, 0, 0)
    assert conn.finish_response() is True


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
    ],
)
def test_content_length_with_transfer_encoding_is_400_and_closes(framing: bytes) -> None:
    """RFC 9112 6.1: the request-smuggling shape. The pipelined request behind it is
    never handed out: the connection ends after the 400."""
    conn = ServerConnection()
    conn.receive(
        b"GET /a HTTP/1.1\r\nHost: h\r\n" + framing + b"\r\n0\r\n\r\n"
        b"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    with pytest.raises(HttpError) as caught:
        conn.next_request()
    assert caught.value.status == 400
    response = conn.error_response(caught.value, now=NOW, close=True)
    assert b"\r\nConnection: close\r\n" in response.head
    assert conn.finish_response() is False


@pytest.mark.parametrize(
    ("host", "valid"),
    [
        (b"a b/c", False),
        (b"a/b", False),
        (b"a b", False),
        (b"host:port", False),
        (b"a@b", False),
        (b"[fe80::1", False),
        (b"10.0.0.1:80:80", False),
        (b"\x80\xff", False),
        (b"10.0.0.1", True),
        (b"10.0.0.1:8080", True),
        (b"boot.example", True),
        (b"[fd00::1]:8080", True),
        (b"[fe80::1%25eth0]", True),
        (b"ex%41mple:", True),
        (b"", True),  # an empty reg-name is a valid Host (RFC 9110 7.2)
    ],
)
def test_host_must_be_a_valid_uri_host(host: bytes, valid: bool) -> None:
    """RFC 9112 3.2: an invalid Host field value MUST get 400."""
    conn = ServerConnection()
    conn.receive(b"GET /a HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    if valid:
        assert isinstance(conn.next_request(), Request)
        return
    with pytest.raises(HttpError) as caught:
        conn.next_request()
    assert caught.value.status == 400


@pytest.mark.parametrize("lines", [1, 400])
def test_a_complete_head_beyond_the_limit_in_one_write_is_refused(lines: int) -> None:
    """h11 bounds an incomplete head only: 40 KB arriving whole is refused all the same,
    as one long header line or as many."""
    filler = b"y" * (40_000 // lines)
    head = b"GET /a HTTP/1.1\r\nHost: h\r\n" + (b"X-Filler: " + filler + b"\r\n") * lines
    conn = ServerConnection()
    conn.receive(head + b"\r\n")
    with pytest.raises(HttpError) as caught:
        conn.next_request()
    assert caught.value.status == 431
    conn = ServerConnection()  # just inside the limit is served
    conn.receive(b"GET /a HTTP/1.1\r\nHost: h\r\nX: " + b"y" * 16000 + b"\r\n\r\n")
    assert isinstance(conn.next_request(), Request)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"HEAD /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414),
        (b"HEAD /a HTTP/1.1\r\nHost: h\r\nX: " + b"y" * 40_000 + b"\r\n\r\n", 431),
        (b"HEAD /a HTTP/1.1\r\nHost: h\r\nContent-Length: 70000\r\n\r\n", 413),
        (b"HEAD /a HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    ],
)
def test_a_head_refused_before_it_is_handed_out_gets_no_body(data: bytes, status: int) -> None:
    """Found by the fuzz job: h11 frames the answer to any HEAD without a body, so a
    refusal that carried its text page raised LocalProtocolError in the driver."""
    conn = ServerConnection()
    conn.receive(data)
    with pytest.raises(HttpError) as caught:
        conn.next_request()
    assert caught.value.status == status
    response = conn.error_response(caught.value, now=NOW, close=True)
    assert response.head.endswith(b"\r\n\r\n")
    assert conn.finish_response() is False


def test_error_to_head_has_no_body() -> None:
    conn = ServerConnection()
    req = request_of(conn, b"HEAD /nope HTTP/1.1\r\nHost: h\r\n\r\n")
    response = conn.error_response(HttpError(404, "no"), now=NOW, request=req, close=False)
    assert response.head.endswith(b"\r\n\r\n")
    assert conn.finish_response() is True


# -- Range -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, WHOLE),
        ("bytes=0-0", 10, ByteRange(0, 0)),
        ("bytes=2-5", 10, ByteRange(2, 5)),
        ("bytes=5-", 10, ByteRange(5, 9)),
        ("bytes=5-999", 10, ByteRange(5, 9)),
        ("bytes=-3", 10, ByteRange(7, 9)),
        ("bytes=-30", 10, ByteRange(0, 9)),
        ("Bytes = 1 - 2", 10, ByteRange(1, 2)),
        ("bytes=10-", 10, UNSATISFIABLE),
        ("bytes=10-20", 10, UNSATISFIABLE),
        ("bytes=-0", 10, UNSATISFIABLE),
        ("bytes=0-", 0, UNSATISFIABLE),
        ("bytes=-5", 0, UNSATISFIABLE),
        ("bytes=" + "9" * 5000 + "-", 10, UNSATISFIABLE),
        ("bytes=0-" + "9" * 5000, 10, ByteRange(0, 9)),
        ("bytes=5-2", 10, WHOLE),
        ("bytes=-", 10, WHOLE),
        ("bytes=0-1,3-4", 10, WHOLE),  # several ranges: the whole file
        ("bytes=0-1,", 10, WHOLE),
        ("items=0-1", 10, WHOLE),
        ("bytes=a-b", 10, WHOLE),
        ("bytes=\u0661-\u0662", 10, WHOLE),  # non-ASCII digits are not digits here
    ],
)
def test_choose_range(header: str | None, size: int, expected: object) -> None:
    assert choose_range(header, size) == expected


def test_single_range_is_206_with_content_range() -> None:
    data = b"GET /a HTTP/1.1\r\nHost: h\r\nRange: bytes=100-199\r\n\r\n"
    conn, response, status, headers = first_response(data, 1000)
    assert status == "HTTP/1.1 206 Partial Content"
    assert headers["content-range"] == "bytes 100-199/1000"
    assert headers["content-length"] == "100"
    assert (response.offset, response.length) == (100, 100)
    assert conn.finish_response() is True


def test_unsatisfiable_range_is_416_and_keeps_the_connection() -> None:
    data = b"GET /a HTTP/1.1\r\nHost: h\r\nRange: bytes=5000-\r\n\r\n"
    conn, response, status, headers = first_response(data, 1000)
    assert status.startswith("HTTP/1.1 416 ")
    assert headers["content-range"] == "bytes */1000"
    assert headers["content-length"] == "0"
    assert response.length == 0
    assert conn.finish_response() is True


@pytest.mark.parametrize(("validator", "status"), [(http_date(MTIME), 206), ('"etag"', 200)])
def test_if_range(validator: str, status: int) -> None:
    conn = ServerConnection()
    data = f"GET /a HTTP/1.1\r\nHost: h\r\nRange: bytes=0-9\r\nIf-Range: {validator}\r\n\r\n"
    req = request_of(conn, data.encode())
    first, _ = serve(conn, req)
    assert first.split()[1] == str(status)


# -- path decoding ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"/ipxe.efi", "/ipxe.efi"),
        (b"/with%20space.txt", "/with space.txt"),
        (b"/caf%C3%A9.txt", "/caf\u00e9.txt"),
        (b"/a?x=../../etc#frag", "/a"),
        (b"http://10.0.0.1:8080/boot/x", "/boot/x"),
        (b"HTTP://host", "/"),
        (b"/%252e%252e/x", "/%2e%2e/x"),  # decoded once: a literal name, not a parent
        (b"/./a", "/./a"),
    ],
)
def test_decode_path(target: bytes, expected: str) -> None:
    assert decode_path(target) == expected


@pytest.mark.parametrize(
    ("target", "status"),
    [
        (b"/../etc/passwd", 403),
        (b"/a/../../x", 403),
        (b"/%2e%2e/etc/passwd", 403),
        (b"/%2E%2e/x", 403),
        (b"/.%2e/x", 403),
        (b"/..%5cx", 404),
        (b"/..\\x", 403),
        (b"/a%2fb", 404),
        (b"/a%2Fb", 404),
        (b"/a%00b", 400),
        (b"/a%zzb", 400),
        (b"/a%2", 400),
        (b"/%ff", 400),
        (b"*", 400),
        (b"relative", 400),
    ],
)
def test_decode_path_refusals(target: bytes, status: int) -> None:
    with pytest.raises(HttpError) as caught:
        decode_path(target)
    assert caught.value.status == status


# -- hypothesis over valid heads -------------------------------------------------------
SEGMENT = st.text(
    alphabet=st.characters(
        whitelist_categories=("Lu", "Ll", "Nd"), whitelist_characters="-_.~ +()\u00e9"
    ),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", ".."))
TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
VALUE = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)
RESERVED = {"host", "range", "if-range", "content-length", "transfer-encoding", "connection"}
RESERVED |= {"upgrade", "expect"}


@st.composite
def range_cases(draw: st.DrawFn, size: int) -> tuple[str | None, tuple[int, int, int]]:
    """A Range header and the (status, offset, length) a correct server answers."""
    kind = draw(st.sampled_from(["none", "from", "from-to", "suffix", "multi", "reversed"]))
    unit = draw(st.sampled_from(["bytes", "Bytes", "BYTES"]))
    if kind == "none":
        return None, (200, 0, size)
    if kind == "multi":
        return f"{unit}=0-0, 2-3", (200, 0, size)
    if kind == "suffix":
        n = draw(st.integers(0, size + 10))
        if n == 0 or size == 0:
            return f"{unit}=-{n}", (416, 0, 0)
        first = max(0, size - n)
        return f"{unit}=-{n}", (206, first, size - first)
    first = draw(st.integers(0, size + 10))
    if kind == "reversed":
        if first == 0:
            return None, (200, 0, size)
        return f"{unit}={first}-{first - 1}", (200, 0, size)
    if kind == "from":
        header = f"{unit}={first}-"
        last = size - 1
    else:
        last = first + draw(st.integers(0, size + 10))
        header = f"{unit}={first}-{last}"
    if first >= size:
        return header, (416, 0, 0)
    last = min(last, size - 1)
    return header, (206, first, last - first + 1)


@st.composite
def valid_heads(draw: st.DrawFn) -> tuple[bytes, str, str, int, tuple[int, int, int]]:
    method = draw(st.sampled_from(["GET", "HEAD"]))
    segments = draw(st.lists(SEGMENT, min_size=1, max_size=5))
    encoded = []
    for segment in segments:
        # Each character plain or percent-encoded, at random: decoding must undo either.
        chars = [
            quote(c, safe="") if draw(st.booleans()) or not c.isascii() else c for c in segment
        ]
        encoded.append("".join(chars).replace(" ", "%20"))
    target = "/" + "/".join(encoded)
    if draw(st.booleans()):
        target += "?" + draw(TOKEN)
    size = draw(st.integers(0, 10**9))
    range_header, expected = draw(range_cases(size))
    headers = [("Host", draw(st.sampled_from(["10.0.0.1", "[fd00::1]:8080", "boot"])))]
    for name in draw(st.lists(TOKEN, max_size=6)):
        if name not in RESERVED:
            headers.append((draw(st.sampled_from([name, name.upper(), name.title()])), draw(VALUE)))
    if range_header is not None:
        headers.append(("Range", range_header))
    draw(st.randoms()).shuffle(headers)
    lines = [f"{method} {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return head, method, "/" + "/".join(segments), size, expected


@settings(max_examples=300, deadline=None)
@given(valid_heads(), st.data())
def test_valid_heads_parse_and_reach_the_range_logic(
    case: tuple[bytes, str, str, int, tuple[int, int, int]], data: st.DataObject
) -> None:
    head, method, path, size, (status, offset, length) = case
    if method == "HEAD":
        status, offset, length = 200, 0, size  # RFC 9110 14.2: HEAD ignores Range
    conn = ServerConnection()
    # Random split points: the parser must not care how the bytes arrive.
    cuts = sorted(data.draw(st.lists(st.integers(0, len(head)), max_size=4)))
    pieces = [head[a:b] for a, b in zip([0, *cuts], [*cuts, len(head)], strict=True)]
    pieces = [p for p in pieces if p]  # b"" would mean end of stream
    event = None
    for piece in pieces:
        conn.receive(piece)
        event = conn.next_request()
        if isinstance(event, Request):
            break
    assert isinstance(event, Request), event
    assert event.method == method
    assert decode_path(event.target) == path
    response = conn.file_response(event, size=size, mtime=MTIME, now=NOW, content_type="a/b")
    first, headers = head_lines(response.head)
    assert response.status == status
    assert first.split()[1] == str(status)
    assert response.offset == offset
    assert response.length == (0 if method == "HEAD" else length)
    assert headers["content-length"] == str(length)
    if status == 206:
        assert headers["content-range"] == f"bytes {offset}-{offset + length - 1}/{size}"
    if status == 416:
        assert headers["content-range"] == f"bytes */{size}"
    assert conn.finish_response() is True
