"""How a response leaves: the head and then a file range on a non-blocking socket.

The file goes with `os.sendfile`, each call asking for everything left so the kernel
moves as much as the socket buffer takes (no copy, one call per "writable" wakeup); a
download that makes no progress for the idle timeout raises TimeoutError. With a rate
limit each call is sized by token buckets (per client address and for the server)
instead: bounded slices, still sendfile. Where sendfile is not available the file is
read and written through user space.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import time

from ptftpd.http.rate import TokenBucket

log = logging.getLogger("ptftpd.http")

_COPY_SIZE = 256 * 1024

_sendfile = os.sendfile  # the zero-copy call; tests replace it to watch or refuse it


class Client:
    """Per client address: its share of the rate limit, alive while it has connections."""

    __slots__ = ("bucket", "connections")

    def __init__(self, bucket: TokenBucket | None) -> None:
        self.bucket = bucket
        self.connections = 0


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class _Room:
    """Waits for room in one socket's send buffer while a file goes out, at the cost of
    a future per wait: the writer is registered once (at the first full buffer) and
    removed when the file is done, and a single timer checks for progress every idle
    timeout instead of one timer per wait. Only for unlimited sends: a rate-limited
    connection sleeps while its socket is writable, which would wake this level-
    triggered registration on every loop iteration."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, idle: float) -> None:
        self.loop = loop
        self.fd = fd
        self.idle = idle
        self.future: asyncio.Future[None] | None = None
        self.registered = False
        self.timer: asyncio.TimerHandle | None = None
        self.progress = 0.0

    def _ready(self) -> None:
        future = self.future
        if future is not None and not future.done():
            future.set_result(None)

    def _check(self) -> None:
        now = self.loop.time()
        future = self.future
        if future is not None and not future.done() and now - self.progress >= self.idle:
            future.set_exception(TimeoutError())
            self.timer = None
            return
        # Not stalled (or not waiting right now): look again when it could be.
        self.timer = self.loop.call_at(max(self.progress + self.idle, now + 1.0), self._check)

    async def wait(self) -> None:
        """Until the socket takes more bytes; TimeoutError after `idle` without room."""
        self.progress = self.loop.time()
        if not self.registered:
            self.loop.add_writer(self.fd, self._ready)
            self.registered = True
        if self.timer is None:
            self.timer = self.loop.call_at(self.progress + self.idle, self._check)
        self.future = self.loop.create_future()
        await self.future

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.registered:
            self.loop.remove_writer(self.fd)


class FileSender:
    """Sends heads and file ranges for one server: `idle_timeout` bounds a wait for room
    in a socket's buffer, `use_sendfile` turns False (for good) the first time sendfile
    is not available, `total` is the server-wide rate limit's bucket (None: no limit)."""

    def __init__(self, idle_timeout: float, use_sendfile: bool = True) -> None:
        self.idle_timeout = idle_timeout
        self.use_sendfile = use_sendfile
        self.total: TokenBucket | None = None

    async def writable(self, sock: socket.socket) -> None:
        """Wait until `sock` takes more bytes; TimeoutError after the idle timeout."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        fd = sock.fileno()
        loop.add_writer(fd, _wake, future)
        timer = loop.call_later(self.idle_timeout, _expire, future)
        try:
            await future
        finally:
            timer.cancel()
            loop.remove_writer(fd)

    async def write(self, sock: socket.socket, data: bytes, flags: int = 0) -> bool:
        """Send all of `data`; False when the peer left or stalled."""
        view = memoryview(data)
        try:
            while view:
                try:
                    view = view[sock.send(view, flags) :]
                except BlockingIOError:
                    await self.writable(sock)
        except (ConnectionError, TimeoutError):
            return False
        return True

    async def send_file(
        self, sock: socket.socket, client: Client, fd: int, offset: int, length: int
    ) -> int:
        """Send `length` bytes from `offset`; returns how many went (fewer: file shrank)."""
        if not self.use_sendfile:
            return await self._copy(sock, client, fd, offset, length)
        out = sock.fileno()
        limited = client.bucket is not None or self.total is not None
        room = None if limited else _Room(asyncio.get_running_loop(), out, self.idle_timeout)
        sent = 0
        try:
            while sent < length:
                want = length - sent
                if limited:
                    want = await self._allowance(client, want)
                try:
                    count = _sendfile(out, fd, offset + sent, want)
                except BlockingIOError:
                    await (self.writable(sock) if room is None else room.wait())
                    continue
                except OSError as exc:
                    if exc.errno in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP) and not sent:
                        log.info("sendfile not available (%s): copying instead", exc)
                        self.use_sendfile = False
                        return await self._copy(sock, client, fd, offset, length)
                    raise
                if count == 0:
                    break  # the file shrank
                sent += count
                if limited:
                    self._spend(client, count)
                elif room is not None and count < want and sent < length:
                    # The socket buffer is full: wait for room rather than make a call
                    # that can only fail with EAGAIN (one syscall less per wakeup).
                    await room.wait()
        finally:
            if room is not None:
                room.close()
        return sent

    async def _allowance(self, client: Client, want: int) -> int:
        """Bytes the rate limits let this client send now (sleeps until some)."""
        buckets = [b for b in (client.bucket, self.total) if b is not None]
        # Never a sliver: wait until a quarter of the smallest burst (or all that is
        # left) is available, so a limited download costs few, sizeable sendfile calls.
        enough = max(1, min(want, *(b.burst for b in buckets)) // 4)
        while True:
            now = time.monotonic()
            allowed = min(want, *(b.available(now) for b in buckets))
            if allowed >= enough:
                return allowed
            pause = max(b.wait(enough, now) for b in buckets)
            await asyncio.sleep(max(pause, 0.001))

    def _spend(self, client: Client, count: int) -> None:
        now = time.monotonic()
        if client.bucket is not None:
            client.bucket.spend(count, now)
        if self.total is not None:
            self.total.spend(count, now)

    async def _copy(
        self, sock: socket.socket, client: Client, fd: int, offset: int, length: int
    ) -> int:
        """The fallback: read and write through user space."""
        limited = client.bucket is not None or self.total is not None
        done = 0
        while done < length:
            want = min(_COPY_SIZE, length - done)
            if limited:
                want = await self._allowance(client, want)
            data = os.pread(fd, want, offset + done)
            if not data:
                break
            if not await self.write(sock, data):
                raise ConnectionResetError("peer left")
            done += len(data)
            if limited:
                self._spend(client, len(data))
        return done
