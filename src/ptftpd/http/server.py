"""asyncio HTTP file server: the thin I/O shell around `protocol.ServerConnection`.

One task per connection reads with a deadline (header timeout for a request in
progress, idle timeout between keep-alive requests), hands bytes to the sans-IO core,
and sends each planned response: the head, then the file range with zero-copy
`loop.sendfile` (os.sendfile underneath), in chunks so a stalled reader is dropped after
the idle timeout. Connections beyond `max_connections` get a 503 and are closed at once,
so a flood costs an accept and a write, never a task that waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ptftpd.errors import StartError, bind_error
from ptftpd.http.errors import HttpError
from ptftpd.http.files import open_file
from ptftpd.http.protocol import CLOSED, NEED_DATA, Limits, Request, ServerConnection
from ptftpd.http.target import decode_path
from ptftpd.log import format_rate
from ptftpd.paths import root_problem

log = logging.getLogger("ptftpd.http")

_READ_SIZE = 64 * 1024
_SEND_CHUNK = 1024 * 1024
"""Bytes per sendfile call; each chunk must go out within the idle timeout, so with the
default 60 s a client slower than about 17 KB/s is dropped as stalled."""
_COPY_SIZE = 256 * 1024
_BACKLOG = 1024


@dataclass(frozen=True)
class HttpConfig:
    root: Path
    bind: tuple[tuple[str, int], ...]
    """(host, port) pairs, IPv4 or IPv6 (link-local with `%scope`); port 0 picks one."""
    max_connections: int = 256
    """Open connections served at once; more are answered 503 and closed."""
    idle_timeout: float = 60.0
    """Seconds a keep-alive connection may wait for its next request, and a response
    may take for each 1 MiB (a client that stops reading), before it is closed."""
    header_timeout: float = 10.0
    """Seconds from the first byte of a request (from accept, for the first one) until
    its head must be complete: slow-header clients (slowloris) are closed after this."""
    sendfile: bool = True
    """False forces the read-and-write path (the automatic fallback when sendfile fails)."""
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class Served:
    """One answered request, for the log and for `on_served` (pxed's boot log)."""

    peer: str
    """Client IP address."""
    method: str
    """GET or HEAD; "-" for a request that could not be parsed."""
    path: str
    """Decoded request path (e.g. `/ipxe.efi`), or the raw target when undecodable."""
    status: int
    bytes_sent: int
    """Body bytes sent (file bytes; 0 for HEAD and errors)."""
    seconds: float
    complete: bool
    """The whole response reached the socket (False: peer left, stalled, or file shrank)."""
    file: Path | None = None
    """The resolved file served, when there was one."""


OnServed = Callable[[Served], None]


class HttpServer:
    """Serves `config.root` read-only over HTTP/1.1 on `config.bind`; from tests and pxed.

    `on_served(record)` is called once per answered request (any status) in the event
    loop; exceptions from it are logged and never reach the client.
    """

    def __init__(self, config: HttpConfig, *, on_served: OnServed | None = None) -> None:
        self.config = config
        self.on_served = on_served
        self.root = Path(config.root)
        self.bound: list[tuple[str, int]] = []
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._active = 0
        self._busy_logged = False
        self._use_sendfile = config.sendfile
        self._closed = asyncio.Event()

    @property
    def active_connections(self) -> int:
        return self._active

    async def start(self) -> None:
        """Bind every address; raises StartError (nothing left bound) on failure."""
        problem = root_problem(self.config.root)
        if problem:
            raise StartError(problem)
        if not self.config.bind:
            raise StartError("no address to serve HTTP on")
        self.root = Path(self.config.root).resolve()
        try:
            for host, port in self.config.bind:
                sock = _listening_socket(host, port)
                server = await asyncio.start_server(self._connection, sock=sock, backlog=_BACKLOG)
                self._servers.append(server)
                name = sock.getsockname()
                self.bound.append((str(name[0]), int(name[1])))
        except BaseException:
            self.close()
            raise
        # Said once every address is bound: never a claim for a service that then
        # fails to start.
        where = ", ".join(f"{host} port {port}" for host, port in self.bound)
        log.info("serving %s over HTTP on %s", self.root, where)

    async def serve_forever(self) -> None:
        await self._closed.wait()

    def close(self) -> None:
        """Stop listening and drop every open connection."""
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        self._closed.set()

    async def wait_closed(self) -> None:
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()

    # -- connections -------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peername = writer.get_extra_info("peername")
        peer = str(peername[0]) if peername else "?"
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # The head and the file go out as separate sends: with Nagle on, the second
            # waits for the client's delayed ACK, 40 ms per keep-alive request. (asyncio
            # sets this only on sockets created with proto IPPROTO_TCP, not proto 0.)
            with contextlib.suppress(OSError):  # already reset by the peer
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if self._active >= self.config.max_connections:
                self._refuse_busy(writer, peer)
                return
            self._busy_logged = False
            self._active += 1
            try:
                await self._serve(reader, writer, peer)
            finally:
                self._active -= 1
        except (ConnectionError, TimeoutError):
            writer.transport.abort()
        except asyncio.CancelledError:
            # close(): end quietly. Not re-raised on purpose: Python 3.11's stream
            # protocol calls exception() on a cancelled connection task and logs the
            # CancelledError as an error (fixed in 3.12).
            writer.transport.abort()
        except OSError as exc:
            log.debug("%s: connection error: %s", peer, exc)
            writer.transport.abort()
        finally:
            writer.close()
            self._tasks.discard(task)

    def _refuse_busy(self, writer: asyncio.StreamWriter, peer: str) -> None:
        if not self._busy_logged:
            log.warning(
                "%d HTTP connections open (the limit): refusing more with 503", self._active
            )
            self._busy_logged = True
        log.debug("%s: refused, %d connections open", peer, self._active)
        busy = HttpError(503, "too many connections")
        response = ServerConnection().error_response(busy, now=time.time(), close=True)
        writer.write(response.head)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        loop = asyncio.get_running_loop()
        conn = ServerConnection(self.config.limits)
        deadline = loop.time() + self.config.header_timeout
        between_requests = False
        while True:
            try:
                event = conn.next_request()
            except HttpError as error:
                started = loop.time()
                response = conn.error_response(error, now=time.time(), close=True)
                sent = await self._write(writer, response.head)
                self._record(Served(peer, "-", "-", error.status, 0, 0.0, sent), started, error)
                return
            if event is NEED_DATA:
                try:
                    async with asyncio.timeout_at(deadline):
                        data = await reader.read(_READ_SIZE)
                except TimeoutError:
                    if conn.has_partial_request:
                        log.info("%s: request head not complete in time, closing", peer)
                    else:
                        log.debug("%s: idle keep-alive connection closed", peer)
                    writer.transport.abort()
                    return
                if between_requests and data:
                    between_requests = False
                    deadline = loop.time() + self.config.header_timeout
                conn.receive(data)
                continue
            if event is CLOSED:
                return
            assert isinstance(event, Request)
            if not await self._answer(conn, writer, peer, event):
                return
            between_requests = not conn.has_partial_request
            wait = self.config.idle_timeout if between_requests else self.config.header_timeout
            deadline = loop.time() + wait

    async def _answer(
        self, conn: ServerConnection, writer: asyncio.StreamWriter, peer: str, request: Request
    ) -> bool:
        """Send the response to `request`; True when the connection may carry another."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        path = request.target.decode("latin-1")
        try:
            path = decode_path(request.target)
            opened = open_file(self.root, path)
        except HttpError as error:
            response = conn.error_response(error, now=time.time(), request=request, close=False)
            sent = await self._write(writer, response.head)
            record = Served(peer, request.method, path, error.status, 0, 0.0, sent)
            self._record(record, started, error)
            return sent and conn.finish_response()
        response = conn.file_response(
            request,
            size=opened.size,
            mtime=opened.mtime,
            now=time.time(),
            content_type=opened.content_type,
        )
        sent_bytes = 0
        complete = False
        try:
            writer.write(response.head)
            if response.length:
                sent_bytes = await self._send_file(
                    writer, opened.fd, response.offset, response.length
                )
                complete = sent_bytes == response.length
            else:
                complete = await self._write(writer, b"")
        except OSError as exc:  # the peer left or stalled (ConnectionError, TimeoutError)
            log.debug("%s: transfer of %s stopped: %r", peer, _printable(path), exc)
        finally:
            os.close(opened.fd)
        record = Served(
            peer, request.method, path, response.status, sent_bytes, 0.0, complete, opened.path
        )
        self._record(record, started)
        return complete and conn.finish_response()

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> bool:
        try:
            writer.write(data)
            async with asyncio.timeout(self.config.idle_timeout):
                await writer.drain()
        except (ConnectionError, TimeoutError):
            return False
        return True

    async def _send_file(
        self, writer: asyncio.StreamWriter, fd: int, offset: int, length: int
    ) -> int:
        """Send `length` bytes from `offset`; returns how many went (fewer: file shrank)."""
        loop = asyncio.get_running_loop()
        transport = writer.transport
        sent = 0
        with open(fd, "rb", buffering=0, closefd=False) as file:
            while sent < length:
                chunk = min(_SEND_CHUNK, length - sent)
                async with asyncio.timeout(self.config.idle_timeout):
                    if self._use_sendfile:
                        try:
                            count = await loop.sendfile(
                                transport, file, offset + sent, chunk, fallback=False
                            )
                        except (asyncio.SendfileNotAvailableError, NotImplementedError) as exc:
                            log.info("sendfile not available (%s): copying instead", exc)
                            self._use_sendfile = False
                            continue
                        except RuntimeError:
                            if transport.is_closing():  # peer went away mid-call
                                raise ConnectionResetError("transport closed") from None
                            raise
                    else:
                        count = await self._copy(writer, fd, offset + sent, chunk)
                if count == 0:
                    break
                sent += count
        return sent

    async def _copy(self, writer: asyncio.StreamWriter, fd: int, offset: int, length: int) -> int:
        """The fallback: read and write through user space."""
        done = 0
        while done < length:
            data = os.pread(fd, min(_COPY_SIZE, length - done), offset + done)
            if not data:
                break
            writer.write(data)
            await writer.drain()
            done += len(data)
        return done

    def _record(self, record: Served, started: float, error: HttpError | None = None) -> None:
        seconds = asyncio.get_running_loop().time() - started
        record = dataclasses.replace(record, seconds=seconds)
        log.info(
            "%s %s %s %d %d bytes in %.3f s (%s)%s%s",
            record.peer,
            record.method,
            _printable(record.path),
            record.status,
            record.bytes_sent,
            seconds,
            format_rate(record.bytes_sent, seconds),
            "" if record.complete else " incomplete",
            f": {error.message}" if error else "",
        )
        if self.on_served is not None:
            try:
                self.on_served(record)
            except Exception:
                log.exception("on_served callback failed")


def _printable(text: str) -> str:
    """A client-chosen path for the log: control characters (a decoded %0a) escaped, so
    one request is always one log line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _listening_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket (not yet listening); start-up failures as StartError."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartError(f"cannot use address {host}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(_BACKLOG)
    except OSError as exc:
        sock.close()
        hint = "run as root or choose a port above 1023"
        raise StartError(bind_error(exc, "TCP", host, port, hint)) from None
    return sock
