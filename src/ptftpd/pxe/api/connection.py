"""Sans-IO HTTP/1.1 connection of the operator API: bytes in, requests out, bytes of
answers out (h11, as `ptftpd.http.protocol`). No sockets, no clock.

Bounded: the request head (`max_head` bytes, `max_headers` lines), the target, and the
body (`max_body`, read whole: the API's bodies are small JSON documents). A request
beyond a bound raises `HttpError` (431, 414, 413...): answer it with `error` and close.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus

import h11

from ptftpd import __version__
from ptftpd.http.config import HttpConfig
from ptftpd.http.errors import HttpError
from ptftpd.http.protocol import CLOSED, NEED_DATA, RequestReader

__all__ = ["API_DEFAULTS", "CLOSED", "NEED_DATA", "ApiConnection", "RawRequest"]

SERVER = f"ptftpd-api/{__version__}"


# The operator API's listener: fewer connections and tighter request bounds than the
# file server's (`ApiServer` takes `api_config(bind)`: these with its address).
API_DEFAULTS = HttpConfig(
    root=None,
    bind=(),
    max_connections=64,
    idle_timeout=30.0,
    header_timeout=10.0,
    write_timeout=10.0,
    keepalive=15.0,
    max_head=8 * 1024,
    max_target=2 * 1024,
    max_body=64 * 1024,
    max_headers=64,
)


@dataclass(frozen=True)
class RawRequest:
    method: str
    target: str
    headers: tuple[tuple[bytes, bytes], ...]  # names lower-cased
    body: bytes

    def header(self, name: str) -> str | None:
        key = name.lower().encode("ascii")
        values = [v.decode("latin-1") for k, v in self.headers if k == key]
        return ", ".join(values) if values else None


def _response(status: int, headers: list[tuple[str, str]]) -> h11.Response:
    base = [("Date", formatdate(usegmt=True)), ("Server", SERVER)]
    return h11.Response(
        status_code=status, headers=base + headers, reason=HTTPStatus(status).phrase
    )


class ApiConnection(RequestReader[RawRequest]):
    """One client connection, request after request (keep-alive); `has_partial_request`:
    part of a request is buffered (the per-request deadline runs)."""

    def __init__(self, config: HttpConfig = API_DEFAULTS) -> None:
        super().__init__(config)
        self._request: h11.Request | None = None
        self._body = bytearray()

    def _start(self, event: h11.Request) -> None:
        self._check(event)
        self._request, self._body = event, bytearray()

    def _data(self, data: bytes) -> None:
        if len(self._body) + len(data) > self.config.max_body:
            raise HttpError(413, "request body too large")
        self._body += data

    def _end(self) -> RawRequest:
        request, self._request = self._request, None
        assert request is not None
        return RawRequest(
            request.method.decode("ascii", "replace"),
            request.target.decode("ascii", "replace"),
            tuple((bytes(k), bytes(v)) for k, v in request.headers),
            bytes(self._body),
        )

    def _check(self, event: h11.Request) -> None:
        if not event.http_version.startswith(b"1."):
            raise HttpError(505, "HTTP/1.x only")
        if len(event.target) > self.config.max_target:
            raise HttpError(414, "request target too long")
        most = self.config.max_headers
        if most is not None and len(event.headers) > most:
            raise HttpError(431, "too many header lines")
        size = len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers)
        if size > self.config.max_head:
            raise HttpError(431, "request head too large")
        names = {bytes(k) for k, _ in event.headers}
        if b"transfer-encoding" in names and b"content-length" in names:
            raise HttpError(400, "both Transfer-Encoding and Content-Length")
        for name, value in event.headers:
            if name == b"content-length" and int(value) > self.config.max_body:
                raise HttpError(413, "request body too large")

    # -- answers ---------------------------------------------------------------------

    def answer(
        self, status: int, body: bytes, content_type: str, headers: list[tuple[str, str]]
    ) -> bytes:
        """A whole answer: head and body, the message ended."""
        head = [("Content-Type", content_type), ("Content-Length", str(len(body))), *headers]
        out = self._send(_response(status, head))
        if body and not self._head_request:  # a HEAD's answer has no body (h11 frames it so)
            out += self._send(h11.Data(data=body))
        return out + self._send(h11.EndOfMessage())

    def start_stream(self, content_type: str, headers: list[tuple[str, str]]) -> bytes:
        """The head of an answer of unknown length (chunked; HTTP/1.0: until close)."""
        return self._send(_response(200, [("Content-Type", content_type), *headers]))

    def stream(self, data: bytes) -> bytes:
        return self._send(h11.Data(data=data))

    def next_cycle(self) -> bool:
        """After an answer: True to read the next request on this connection."""
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
            self._head_request = False
            return True
        return False

    def _send(self, event: h11.Event) -> bytes:
        data = self._h11.send(event)
        assert data is not None
        return data
