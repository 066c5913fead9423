"""asyncio HTTP file server: the thin I/O shell around `protocol.ServerConnection`.

The listening sockets are read by our own accept loop: up to `max_connections` are
served at once, and beyond that the loop stops accepting, so further machines of a boot
storm wait in the kernel's listen backlog (their SYNs retried by TCP) instead of being
turned away; accepting resumes as soon as a connection ends. The open-file limit is
raised to fit the limit at start (two descriptors per connection: socket and file), or
the limit is lowered to fit it, and the log says which.

One task per connection reads with a deadline (header timeout for a request in
progress, idle timeout between keep-alive requests), hands bytes to the sans-IO core,
and sends each planned response on the raw non-blocking socket: the head with
MSG_MORE (it leaves in the same segment as the first file bytes), then the file range
with `os.sendfile` (`sending.FileSender`: sendfile, rate limits, the copying fallback).
A download that makes no progress for the idle timeout is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import resource
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from ptftpd.errors import StartError, bind_error
from ptftpd.http.config import HttpConfig
from ptftpd.http.errors import HttpError
from ptftpd.http.files import OpenedFile, in_memory, open_file
from ptftpd.http.growing import send_growing
from ptftpd.http.protocol import CLOSED, NEED_DATA, Request, ServerConnection
from ptftpd.http.rate import TokenBucket
from ptftpd.http.sending import Client, FileSender
from ptftpd.http.target import decode_path
from ptftpd.log import format_rate
from ptftpd.paths import root_problem

log = logging.getLogger("ptftpd.http")

_READ_SIZE = 64 * 1024
_BACKLOG = 4096
"""listen() backlog (the kernel caps it at net.core.somaxconn, 4096 on current Linux):
where a storm beyond `max_connections` waits."""
_ACCEPT_BATCH = 128
"""Connections accepted per readable event, so one busy listener cannot starve the loop."""
_FD_RESERVE = 256
"""Descriptors kept for everything else of the process (TFTP, DHCP, logs, metrics)."""
_RETRY_ACCEPT = 0.1
"""Seconds before accepting again after the process ran out of descriptors."""


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
    loop; exceptions from it are logged and never reach the client. `on_connections(n)`
    is told the number of open connections whenever it changes, and `on_refused()` of
    each connection refused (503: the process is out of file descriptors).
    """

    def __init__(self, config: HttpConfig, *, on_served: OnServed | None = None) -> None:
        self.config = config
        self.on_served = on_served
        self.on_connections: Callable[[int], None] | None = None
        self.on_refused: Callable[[], None] | None = None
        # `generated(path, peer)`: bytes made for this request (pxed's per-machine
        # scripts) served instead of a file, or None: the file under the root.
        self.generated: Callable[[str, str], bytes | None] | None = None
        # `streamed(path, peer)`: a file opened asynchronously for this request (pxed's
        # remote kernels, `ptftpd.pxe.remote`; HttpError to refuse), or None.
        self.streamed: Callable[[str, str], Awaitable[OpenedFile] | None] | None = None
        if config.root is None:
            raise ValueError("HttpServer serves files: its config needs a root")
        self.root = Path(config.root)
        self.bound: list[tuple[str, int]] = []
        self.max_connections = config.max_connections
        """The limit in force: `config.max_connections`, or less when the open-file
        limit could not be raised to fit it."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: list[socket.socket] = []
        self._accepting = False
        self._retry: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._active = 0
        self._full_logged = False
        self._accept_failing = False
        self._sender = FileSender(config.idle_timeout, config.sendfile)
        self._clients: dict[str, Client] = {}
        self._closed = asyncio.Event()

    @property
    def active_connections(self) -> int:
        return self._active

    async def start(self) -> None:
        """Bind every address; raises StartError (nothing left bound) on failure."""
        problem = root_problem(self.root)
        if problem:
            raise StartError(problem)
        if not self.config.bind:
            raise StartError("no address to serve HTTP on")
        self.root = self.root.resolve()
        self._loop = asyncio.get_running_loop()
        try:
            for host, port in self.config.bind:
                sock = _listening_socket(host, port)
                self._listeners.append(sock)
                name = sock.getsockname()
                self.bound.append((str(name[0]), int(name[1])))
        except BaseException:
            self.close()
            raise
        if self.config.total_rate_limit:
            self._sender.total = TokenBucket(self.config.total_rate_limit, time.monotonic())
        self.max_connections, fd_limit = _fit_fd_limit(self.config.max_connections)
        self._resume_accepting()
        # Said once every address is bound: never a claim for a service that then
        # fails to start.
        where = ", ".join(f"{host} port {port}" for host, port in self.bound)
        log.info("serving %s over HTTP on %s", self.root, where)
        if self.max_connections < self.config.max_connections:
            log.warning(
                "HTTP: open-file limit %d (hard limit) fits %d connections, not the %d "
                "asked: more wait in the listen backlog (raise LimitNOFILE= or ulimit -Hn)",
                fd_limit,
                self.max_connections,
                self.config.max_connections,
            )
        else:
            log.info(
                "HTTP: up to %d connections at once, more wait in the listen backlog "
                "(open-file limit %d)%s",
                self.max_connections,
                fd_limit,
                _rates(self.config),
            )

    async def serve_forever(self) -> None:
        await self._closed.wait()

    def close(self) -> None:
        """Stop listening and drop every open connection."""
        self._pause_accepting()
        if self._retry is not None:
            self._retry.cancel()
        for sock in self._listeners:
            sock.close()
        self._listeners.clear()
        for task in list(self._tasks):
            task.cancel()
        self._closed.set()

    async def wait_closed(self) -> None:
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- accepting ---------------------------------------------------------------------
    def _resume_accepting(self) -> None:
        if self._accepting or not self._listeners or self._loop is None:
            return
        for sock in self._listeners:
            self._loop.add_reader(sock.fileno(), self._accept, sock)
        self._accepting = True

    def _pause_accepting(self) -> None:
        if not self._accepting or self._loop is None or self._loop.is_closed():
            return
        for sock in self._listeners:
            self._loop.remove_reader(sock.fileno())
        self._accepting = False

    def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(_ACCEPT_BATCH):
            if self._active >= self.max_connections:
                if not self._full_logged:
                    log.info(
                        "%d HTTP connections open (the limit): more wait in the backlog",
                        self._active,
                    )
                    self._full_logged = True
                self._pause_accepting()
                return
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno == errno.ECONNABORTED:
                    continue
                # EMFILE/ENFILE/ENOBUFS: the connection stays queued; try again soon.
                # Said once until an accept succeeds again (not ten lines a second).
                if not self._accept_failing:
                    log.warning(
                        "HTTP accept failed (%s): retrying every %.1f s", exc, _RETRY_ACCEPT
                    )
                    self._accept_failing = True
                self._pause_accepting()
                if self._retry is None:
                    self._retry = loop.call_later(_RETRY_ACCEPT, self._retry_accept)
                return
            self._accept_failing = False
            sock.setblocking(False)
            self._opened(1)
            task = loop.create_task(self._connection(sock, str(address[0])))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _retry_accept(self) -> None:
        self._retry = None
        self._resume_accepting()

    def _opened(self, delta: int) -> None:
        self._active += delta
        if self.on_connections is not None:
            self.on_connections(self._active)
        if delta < 0 and self._active < self.max_connections and self._retry is None:
            self._full_logged = False
            self._resume_accepting()

    # -- connections -------------------------------------------------------------------
    async def _connection(self, sock: socket.socket, peer: str) -> None:
        client = self._clients.get(peer)
        if client is None:
            rate = self.config.rate_limit
            bucket = TokenBucket(rate, time.monotonic()) if rate else None
            client = self._clients[peer] = Client(bucket)
        client.connections += 1
        try:
            # The head and the file are separate sends: with Nagle on, a keep-alive
            # response's head would wait for the client's delayed ACK (40 ms each).
            with contextlib.suppress(OSError):  # already reset by the peer
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await self._serve(sock, peer, client)
        except (ConnectionError, TimeoutError):
            pass
        except asyncio.CancelledError:
            pass  # close(): end quietly (nobody awaits these tasks but wait_closed)
        except OSError as exc:
            log.debug("%s: connection error: %s", peer, exc)
        finally:
            sock.close()
            client.connections -= 1
            if not client.connections:
                del self._clients[peer]
            self._opened(-1)

    async def _serve(self, sock: socket.socket, peer: str, client: Client) -> None:
        loop = asyncio.get_running_loop()
        conn = ServerConnection(self.config)
        deadline = loop.time() + self.config.header_timeout
        between_requests = False
        while True:
            try:
                event = conn.next_request()
            except HttpError as error:
                started = loop.time()
                response = conn.error_response(error, now=time.time(), close=True)
                sent = await self._sender.write(sock, response.head)
                self._record(Served(peer, "-", "-", error.status, 0, 0.0, sent), started, error)
                if sent:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)
                return
            if event is NEED_DATA:
                try:
                    async with asyncio.timeout_at(deadline):
                        data = await loop.sock_recv(sock, _READ_SIZE)
                except TimeoutError:
                    if conn.has_partial_request:
                        log.info("%s: request head not complete in time, closing", peer)
                    else:
                        log.debug("%s: idle keep-alive connection closed", peer)
                    return
                if between_requests and data:
                    between_requests = False
                    deadline = loop.time() + self.config.header_timeout
                conn.receive(data)
                continue
            if event is CLOSED:
                return
            assert isinstance(event, Request)
            if not await self._answer(conn, sock, peer, client, event):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                return
            between_requests = not conn.has_partial_request
            wait = self.config.idle_timeout if between_requests else self.config.header_timeout
            deadline = loop.time() + wait

    async def _answer(
        self,
        conn: ServerConnection,
        sock: socket.socket,
        peer: str,
        client: Client,
        request: Request,
    ) -> bool:
        """Send the response to `request`; True when the connection may carry another."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        path = request.target.decode("latin-1")
        try:
            path = decode_path(request.target)
            made = None if self.generated is None else self.generated(path, peer)
            later = None if self.streamed is None or made else self.streamed(path, peer)
            if later is not None:
                opened = await later
            else:
                opened = open_file(self.root, path) if made is None else in_memory(path, made)
        except HttpError as error:
            if error.status == 503 and self.on_refused is not None:
                self.on_refused()
            response = conn.error_response(error, now=time.time(), request=request, close=False)
            sent = await self._sender.write(sock, response.head)
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
            more = socket.MSG_MORE if response.length else 0
            if await self._sender.write(sock, response.head, more):
                if response.length and opened.growing is not None:
                    sent_bytes = await send_growing(
                        self._sender, sock, client, opened.fd, opened.growing,
                        response.offset, response.length,
                    )  # fmt: skip
                elif response.length:
                    sent_bytes = await self._sender.send_file(
                        sock, client, opened.fd, response.offset, response.length
                    )
                    complete = sent_bytes == response.length
                else:
                    complete = True
        except OSError as exc:  # the peer left or stalled (ConnectionError, TimeoutError)
            log.debug("%s: transfer of %s stopped: %r", peer, _printable(path), exc)
        finally:
            os.close(opened.fd)
        record = Served(
            peer, request.method, path, response.status, sent_bytes, 0.0, complete, opened.path
        )
        self._record(record, started)
        return complete and conn.finish_response()

    def _record(self, record: Served, started: float, error: HttpError | None = None) -> None:
        seconds = asyncio.get_running_loop().time() - started
        record = dataclasses.replace(record, seconds=seconds)
        if log.isEnabledFor(logging.INFO):  # the arguments cost: not built for nothing
            self._log_line(record, seconds, error)
        if self.on_served is not None:
            try:
                self.on_served(record)
            except Exception:
                log.exception("on_served callback failed")

    @staticmethod
    def _log_line(record: Served, seconds: float, error: HttpError | None) -> None:
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


def _printable(text: str) -> str:
    """A client-chosen path for the log: control characters (a decoded %0a) escaped, so
    one request is always one log line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _rates(config: HttpConfig) -> str:
    parts = []
    if config.rate_limit:
        parts.append(f"{format_rate(config.rate_limit, 1.0)} per client")
    if config.total_rate_limit:
        parts.append(f"{format_rate(config.total_rate_limit, 1.0)} in all")
    return f", rate limit {' and '.join(parts)}" if parts else ""


def _fit_fd_limit(connections: int) -> tuple[int, int]:
    """Raise the soft open-file limit to fit `connections` (two descriptors each, plus a
    reserve); returns (connections that fit, the limit now in force)."""
    needed = 2 * connections + _FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return connections, soft if soft != resource.RLIM_INFINITY else needed
    return max(1, (soft - _FD_RESERVE) // 2), soft


def _listening_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket (not yet listening); start-up failures as StartError."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartError(f"cannot use address {host}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
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
