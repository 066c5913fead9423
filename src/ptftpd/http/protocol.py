"""Sans-IO HTTP/1.1 server connection for a read-only file server.

Bytes go in (`receive`), requests come out (`next_request`), and each answer is planned
as a `Response`: the bytes of its head plus a byte range of the file for the driver to
send with sendfile. No sockets, no files, no clock: the caller passes `now` and the file's
size and modification time.

Parsing and connection management are h11's. We chose it over the standard library and
over a hand-rolled parser because: the stdlib's HTTP server (`http.server`) is blocking,
thread-per-connection and not sans-IO, and its header parser is the lenient e-mail one;
asyncio has no HTTP layer at all. h11 is exactly the job: a small, typed, pure-Python,
bring-your-own-I/O HTTP/1.1 state machine from the python-hyper project, used by
uvicorn and httpcore. It gets the parts that are easy to get subtly wrong right:
request-line and header syntax, Content-Length/Transfer-Encoding conflicts (request
smuggling), chunked request bodies, keep-alive rules for HTTP/1.0, HTTP/1.1 and
`Connection: close`, pipelined requests, HEAD framing, and a bounded receive buffer. Its
`send_with_data_passthrough` is documented for sendfile, so file bytes never pass
through Python. 0.16.0 is the minimum because it fixes CVE-2025-43859 (chunked
trailers). What is ours: the read-only method policy, the status codes
(405/413/414/505), Range (ranges.py) and path decoding (target.py).
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Generic, TypeVar, cast

import h11

from ptftpd import __version__
from ptftpd.http.config import HttpConfig
from ptftpd.http.errors import HttpError
from ptftpd.http.ranges import UNSATISFIABLE, WHOLE, ByteRange, choose_range

METHODS = ("GET", "HEAD")
SERVER = f"ptftpd/{__version__}"

# RFC 9110 7.2 / RFC 3986 3.2.2: Host = uri-host [ ":" port ]; uri-host is an IP-literal
# in brackets (IPv6, with an RFC 6874 zone) or a reg-name (which covers IPv4 too).
_HOST = re.compile(
    rb"(?:\[[0-9A-Za-z:.%_~-]+\]|(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?"
)


_DEFAULTS = HttpConfig(root=None, bind=())


class Signal(enum.Enum):
    NEED_DATA = "need data"
    """Feed more bytes with `receive` (or b"" at end of stream)."""
    CLOSED = "closed"
    """The peer closed between requests (or in the middle of one): close quietly."""


NEED_DATA = Signal.NEED_DATA
CLOSED = Signal.CLOSED


@dataclass(frozen=True)
class Request:
    method: str
    target: bytes
    http_version: str
    headers: tuple[tuple[bytes, bytes], ...]
    """Names lower-cased, as h11 gives them."""

    def header(self, name: str) -> str | None:
        """All values of `name` joined by ", " (RFC 9110 list rule), or None."""
        key = name.lower().encode("ascii")
        values = [v.decode("latin-1") for k, v in self.headers if k == key]
        return ", ".join(values) if values else None


@dataclass(frozen=True)
class Response:
    """What to write: `head`, then `length` bytes of the file from `offset`."""

    status: int
    head: bytes
    offset: int = 0
    length: int = 0


class _Placeholder:
    """Stands for file bytes in h11's Content-Length bookkeeping; only its len() is read."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length


@functools.lru_cache(maxsize=256)
def _http_date(seconds: int) -> str:
    return formatdate(seconds, usegmt=True)


def http_date(timestamp: float) -> str:
    """RFC 9110 IMF-fixdate; whole seconds, so a storm's Date and Last-Modified headers
    are formatted once per second and file, not twice per request."""
    return _http_date(int(timestamp))


def _response(status: int, headers: list[tuple[str, str]]) -> h11.Response:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    return h11.Response(status_code=status, headers=headers, reason=reason)


# What `RequestReader._next_event` hands on: a request's parts, or a Signal.
Part = h11.Request | h11.Data | h11.EndOfMessage
_R = TypeVar("_R")


class RequestReader(Generic[_R]):
    """Reads requests off one connection with h11, the head bounded by `config.max_head`:
    bytes in with `receive`, requests out with `next_request` (or NEED_DATA, or CLOSED:
    the peer closed, also in the middle of a request, when nobody is left to read an
    error); HttpError for a request to refuse. What a request must be and what comes out
    is the subclass's (the file server's, the operator API's): `_start` checks a head,
    `_data` takes body bytes, `_end` gives the request once its message ended."""

    def __init__(self, config: HttpConfig) -> None:
        self.config = config  # read for the request bounds (max_head, max_body...)
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=config.max_head)
        self._in_request = False  # a head was read, its message has not ended
        self._closed = False
        self._head_request = False
        """The request being answered is a HEAD (also one refused before it was handed
        out): h11 then frames the answer without a body, so none may be sent."""

    def next_request(self) -> _R | Signal:
        while True:
            event = self._next_event()
            if isinstance(event, Signal):
                return event
            if isinstance(event, h11.Request):
                self._head_request = event.method == b"HEAD"
                self._start(event)
            elif isinstance(event, h11.Data):
                self._data(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return self._end()

    def _start(self, event: h11.Request) -> None:
        raise NotImplementedError

    def _data(self, data: bytes) -> None:
        raise NotImplementedError

    def _end(self) -> _R:
        raise NotImplementedError

    def receive(self, data: bytes) -> None:
        """Bytes read from the peer; b"" means the peer closed its side."""
        self._h11.receive_data(data)

    @property
    def has_partial_request(self) -> bool:
        """Bytes of a next request are buffered (the header timeout should run)."""
        return bool(self._h11.trailing_data[0]) or self._in_request

    def _next_event(self) -> Part | Signal:
        if self._closed:
            return CLOSED
        try:
            event = self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            if self._h11.trailing_data[1]:
                # Half a request, then EOF: nobody is left to read an error page.
                self._closed = True
                return CLOSED
            raise self._refusal(exc) from None
        if event is h11.NEED_DATA:
            return NEED_DATA
        if event is h11.PAUSED:
            raise RuntimeError("next_request before the answer ended")
        if isinstance(event, h11.ConnectionClosed):
            self._closed = True
            return CLOSED
        if isinstance(event, h11.Request):
            self._in_request = True
        elif isinstance(event, h11.EndOfMessage):
            self._in_request = False
        return cast(Part, event)

    def _refusal(self, exc: h11.RemoteProtocolError) -> HttpError:
        return HttpError(exc.error_status_hint, str(exc) or "malformed request")


class ServerConnection(RequestReader[Request]):
    """One client connection, request after request (keep-alive and pipelining).

    `next_request` gives the next complete request (its body, if any, read and
    discarded); for an HttpError answer with `error_response(..., close=True)`: after a
    protocol error the stream cannot be trusted."""

    def __init__(self, config: HttpConfig = _DEFAULTS) -> None:
        super().__init__(config)
        self._request: Request | None = None
        self._body_bytes = 0
        self._pending_file_bytes = 0

    def _start(self, event: h11.Request) -> None:
        self._request = self._accept(event)
        self._body_bytes = 0

    def _data(self, data: bytes) -> None:
        self._body_bytes += len(data)
        if self._body_bytes > self.config.max_body:
            raise HttpError(413, "request body too large")

    def _end(self) -> Request:
        request, self._request = self._request, None
        assert request is not None
        return request

    def _refusal(self, exc: h11.RemoteProtocolError) -> HttpError:
        buffered = self._h11.trailing_data[0]
        status = exc.error_status_hint
        if status == 431 and b"\n" not in buffered:
            return HttpError(414, "request line too long")
        return HttpError(status, str(exc) or "malformed request")

    def _accept(self, event: h11.Request) -> Request:
        version = event.http_version.decode("ascii")
        if not version.startswith("1."):
            raise HttpError(505, f"HTTP/{version} not supported")
        if len(event.target) > self.config.max_target:
            raise HttpError(414, "request target too long")
        method = event.method.decode("ascii", "replace")
        if method not in METHODS:
            raise HttpError(405, f"method {method} not allowed")
        headers = tuple((bytes(k), bytes(v)) for k, v in event.headers)
        # The request line and header lines, their separators not counted: h11 bounds
        # only a head still incomplete, so a whole oversized head arriving in one read
        # is refused here.
        size = len(event.method) + len(event.target) + 10
        size += sum(len(k) + len(v) + 4 for k, v in headers)
        if size > self.config.max_head:
            raise HttpError(431, "request head too large")
        names = {k for k, _ in headers}
        if b"transfer-encoding" in names and b"content-length" in names:
            # RFC 9112 6.1: both is the request-smuggling shape; the body's end is not
            # trusted, so the connection closes after the 400 (as every refusal here).
            raise HttpError(400, "both Transfer-Encoding and Content-Length")
        for name, value in headers:
            if name == b"host" and _HOST.fullmatch(value) is None:
                raise HttpError(400, "invalid Host")  # RFC 9112 3.2: MUST 400
        request = Request(method, bytes(event.target), version, headers)
        length = request.header("content-length")
        declared = length.split(",")[0].strip() if length is not None else "0"
        if len(declared) > 18 or int(declared) > self.config.max_body:
            raise HttpError(413, "request body too large")
        return request

    # -- responses ---------------------------------------------------------------------
    def file_response(
        self, request: Request, *, size: int, mtime: float, now: float, content_type: str
    ) -> Response:
        """200, 206 or 416 for a file of `size` bytes; the driver sends the file range."""
        last_modified = http_date(mtime)
        # RFC 9110 14.2: Range is defined for GET only; a HEAD's MUST be ignored.
        ranged = request.method == "GET"
        choice = choose_range(request.header("range") if ranged else None, size)
        if_range = request.header("if-range")
        if if_range is not None and if_range.strip() != last_modified:
            choice = WHOLE  # RFC 9110 13.1.5: validator does not match, send it all
        headers = [
            ("Date", http_date(now)),
            ("Server", SERVER),
            ("Last-Modified", last_modified),
            ("Accept-Ranges", "bytes"),
        ]
        offset = length = 0
        if isinstance(choice, ByteRange):
            status, offset, length = 206, choice.first, choice.length
            headers.append(("Content-Range", f"bytes {choice.first}-{choice.last}/{size}"))
            headers.append(("Content-Type", content_type))
        elif choice is UNSATISFIABLE:
            status = 416
            headers.append(("Content-Range", f"bytes */{size}"))
        else:
            status, length = 200, size
            headers.append(("Content-Type", content_type))
        headers.append(("Content-Length", str(length)))
        head = self._send(_response(status, headers))
        if request.method == "HEAD":
            length = 0
        self._pending_file_bytes = length
        return Response(status, head, offset, length)

    def error_response(
        self, error: HttpError, *, now: float, request: Request | None = None, close: bool
    ) -> Response:
        """A short text answer for `error`; `close` for protocol errors (no keep-alive)."""
        body = f"{error.status} {error.phrase}\n".encode()
        headers = [
            ("Date", http_date(now)),
            ("Server", SERVER),
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
        ]
        if error.status == 405:
            headers.append(("Allow", ", ".join(METHODS)))
        if error.status == 503:
            headers.append(("Retry-After", "1"))
        if close:
            headers.append(("Connection", "close"))
        head = self._send(_response(error.status, headers))
        if not (self._head_request or (request is not None and request.method == "HEAD")):
            head += self._send(h11.Data(data=body))
        self._pending_file_bytes = 0
        return Response(error.status, head)

    def finish_response(self) -> bool:
        """Call after the whole response went out: True to read the next request on this
        connection, False to close it (Connection: close, HTTP/1.0, or an error)."""
        try:
            if self._pending_file_bytes:
                placeholder = cast(bytes, _Placeholder(self._pending_file_bytes))
                self._h11.send_with_data_passthrough(h11.Data(data=placeholder))
                self._pending_file_bytes = 0
            self._h11.send(h11.EndOfMessage())
            if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
                self._h11.start_next_cycle()
                self._head_request = False
                return True
        except h11.LocalProtocolError:
            pass
        return False

    def _send(self, event: h11.Event) -> bytes:
        data = self._h11.send(event)
        assert data is not None
        return data
