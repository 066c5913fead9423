"""Fetching a remote file without blocking the loop: an asyncio HTTP/1.1 client on h11.

pxed streams the kernels and initrds a boot decision names by URL (issue 22 item 2,
`ptftpd.pxe.remote`); this is its client side. `open_upstream(url, timeout)` connects
(https through asyncio's ssl, the system's trust store), sends one GET, follows at most
`max_redirects` redirects (http and https only) and returns the open 200 response: its
declared length and `read()` for the body a chunk at a time. Every wait (connect,
head, each read) is bounded by `timeout` seconds; the head by `MAX_HEAD` bytes. A
body that ends before its Content-Length, a broken chunk or a closed connection is
an `UpstreamError`, never a short file taken for a whole one (h11 frames the body:
Content-Length, chunked, or until close for HTTP/1.0).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import h11

from ptftpd import __version__

__all__ = ["MAX_REDIRECTS", "Upstream", "UpstreamError", "open_upstream"]

_READ_SIZE = 64 * 1024
_REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5
MAX_HEAD = 64 * 1024  # bytes of an answer's status line and headers


class UpstreamError(Exception):
    """The file could not be fetched; `status` is what pxed answers its client (502:
    the upstream failed or refused, 504: it did not answer in time)."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Upstream:
    """An open 200 answer: `length` (its Content-Length, None when not given), `url`
    (after redirects), `read()` the body's next bytes (b"" at its end)."""

    url: str
    length: int | None
    conn: h11.Connection
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    timeout: float

    async def read(self) -> bytes:
        while True:
            event = await _next_event(self.conn, self.reader, self.timeout)
            if isinstance(event, h11.Data):
                return bytes(event.data)
            if isinstance(event, h11.EndOfMessage):
                return b""

    def close(self) -> None:
        self.writer.close()


def _port(url: str) -> tuple[str, int, ssl.SSLContext | None, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UpstreamError(f"not an http or https URL: {url[:200]}")
    tls = ssl.create_default_context() if parts.scheme == "https" else None
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError:
        raise UpstreamError(f"a broken port in {url[:200]}") from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port, tls, target


async def _next_event(
    conn: h11.Connection, reader: asyncio.StreamReader, timeout: float
) -> h11.Event:
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                async with asyncio.timeout(timeout):
                    data = await reader.read(_READ_SIZE)
                conn.receive_data(data)
                continue
            if event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                raise UpstreamError("the upstream closed the connection")
            assert isinstance(event, h11.Event)
            return event
    except h11.RemoteProtocolError as exc:
        raise UpstreamError(f"a broken answer: {exc}") from None
    except TimeoutError:
        raise UpstreamError(f"no progress for {timeout:g} s", 504) from None
    except (OSError, ssl.SSLError) as exc:
        raise UpstreamError(f"the upstream connection failed: {exc}") from None


async def _ask(url: str, timeout: float) -> tuple[h11.Response, Upstream]:
    host, port, tls, target = _port(url)
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, ssl=tls, limit=_READ_SIZE)
    except TimeoutError:
        what = f"cannot connect to {host} port {port} within {timeout:g} s"
        raise UpstreamError(what, 504) from None
    except (OSError, ssl.SSLError) as exc:
        raise UpstreamError(f"cannot connect to {host} port {port}: {exc}") from None
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    request = h11.Request(
        method="GET",
        target=target,
        headers=[
            ("Host", netloc),
            ("User-Agent", f"pxed/{__version__}"),
            ("Accept-Encoding", "identity"),
            ("Connection", "close"),
        ],
    )
    upstream = Upstream(url, None, conn, reader, writer, timeout)
    try:
        writer.write(conn.send(request) + conn.send(h11.EndOfMessage()))
        while True:
            event = await _next_event(conn, reader, timeout)
            if isinstance(event, h11.Response):
                return event, upstream
    except BaseException:
        upstream.close()
        raise


def _length(response: h11.Response) -> int | None:
    for name, value in response.headers:
        if name == b"content-length":
            return int(value)  # h11 checked it is digits
    return None


def _location(response: h11.Response) -> bytes | None:
    for name, value in response.headers:
        if name == b"location":
            return bytes(value)
    return None


async def open_upstream(url: str, timeout: float, max_redirects: int = MAX_REDIRECTS) -> Upstream:
    """The open 200 answer to GET `url` (see the module docstring); `UpstreamError`
    for anything else (another status, too many redirects, a timeout)."""
    for _ in range(max_redirects + 1):
        response, upstream = await _ask(url, timeout)
        status = response.status_code
        if status == 200:
            upstream.length = _length(response)
            upstream.url = url
            return upstream
        upstream.close()
        location = _location(response)
        if status not in _REDIRECTS or location is None:
            raise UpstreamError(f"the upstream answered HTTP {status}")
        url = urljoin(url, location.decode("latin-1").strip())
        if urlsplit(url).scheme not in ("http", "https"):
            raise UpstreamError(f"a redirect to {url[:200]}: only http and https are followed")
    raise UpstreamError(f"more than {max_redirects} redirects")
