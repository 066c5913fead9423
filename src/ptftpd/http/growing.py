"""A file served while it is still being written (pxed's remote files, `ptftpd.pxe.remote`).

The writer (one fetch) appends to a file and says so (`wrote`, then `finish` or
`fail`); each client sends from its own descriptor of the same file what is there
(`send_growing`: sendfile up to the bytes written, then wait for more), so any number
of clients share one fetch and none waits for another's socket. A fetch that fails
cuts every client's transfer short (their connections close before the declared
length: never a short file taken for a whole one).
"""

from __future__ import annotations

import asyncio
import socket

from ptftpd.http.sending import Client, FileSender

__all__ = ["GrowingFile", "send_growing"]


class GrowingFile:
    """The writer's side: `written` bytes so far; `error` once it failed."""

    def __init__(self) -> None:
        self.written = 0
        self.finished = False
        self.error: str | None = None
        self._waiters: list[asyncio.Future[None]] = []

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)

    def wrote(self, count: int) -> None:
        self.written += count
        self._wake()

    def finish(self) -> None:
        self.finished = True
        self._wake()

    def fail(self, why: str) -> None:
        self.error = why
        self._wake()

    async def until(self, size: int, timeout: float) -> int:
        """Bytes written once there are at least `size` (or the file is finished);
        ConnectionAbortedError when the writer failed, TimeoutError after `timeout`
        without new bytes."""
        while self.error is None and not self.finished and self.written < size:
            future = asyncio.get_running_loop().create_future()
            self._waiters.append(future)
            async with asyncio.timeout(timeout):
                await future
        if self.error is not None:
            raise ConnectionAbortedError(self.error)
        return self.written


async def send_growing(
    sender: FileSender,
    sock: socket.socket,
    client: Client,
    fd: int,
    growing: GrowingFile,
    offset: int,
    length: int,
) -> int:
    """Send `length` bytes from `offset` of a growing file as they arrive; returns how
    many went (fewer: the file ended early). Raises ConnectionAbortedError when the
    writer failed, TimeoutError when it made no progress for the idle timeout."""
    sent = 0
    while sent < length:
        have = await growing.until(offset + sent + 1, sender.idle_timeout)
        want = min(have, offset + length) - (offset + sent)
        if want <= 0:
            break  # finished short of the range
        count = await sender.send_file(sock, client, fd, offset + sent, want)
        if count == 0:
            break
        sent += count
    return sent
