"""TFTP client: resolve the server, run a `ClientSession` through the driver, report.

Every protocol rule of the client side (request resends, TID latch, ERROR 5, OACK
check, RFC 1350 fallback, the ERROR 8 retry without options) lives in
`session.ClientSession`; sockets, files and waiting in `driver`. `transfer` blocks the
calling thread (ptftp and the blocking API), `transfer_async` runs on an event loop
and dallies after the last ACK to re-ACK a resent final block (RFC 1350).
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from ptftpd.tftp.driver import (
    AsyncChannel,
    Channel,
    client_family,
    client_socket,
    clock,
    run_blocking,
)
from ptftpd.tftp.errors import TftpError
from ptftpd.tftp.options import MODES, TransferOptions
from ptftpd.tftp.session import Address, ClientSession, format_host

if TYPE_CHECKING:
    import asyncio

# asyncio is imported where the async API runs, not here: the command line and the
# blocking API never need it, and it is the largest part of their start-up time.

__all__ = [
    "DEFAULT_PORT",
    "Job",
    "ProgressCallback",
    "TftpUrl",
    "TransferResult",
    "format_host",
    "parse_url",
    "transfer",
    "transfer_async",
]

DEFAULT_PORT = 69

ProgressCallback = Callable[[int, int | None], None]
"""Called as `progress(done, total)`: bytes on the wire so far, and the expected total
(from tsize or the local file's size) or None when unknown. Called at most once per
burst of packets, so it may do a little work (a progress bar) without slowing the
transfer."""


@dataclass(frozen=True, slots=True)
class TransferResult:
    """What a finished transfer did. `bytes` counts local bytes (written for a get,
    read for a put); `wire_bytes` counts DATA payload, which differs in netascii."""

    bytes: int
    wire_bytes: int
    seconds: float
    blksize: int
    windowsize: int
    tsize: int | None
    options: tuple[tuple[str, str], ...]
    retransmissions: int
    rfc1350_fallback: bool

    @property
    def rate(self) -> float:
        """Bytes per second (loopback transfers can take ~0 s: never divide by 0)."""
        return self.bytes / max(self.seconds, 1e-6)

    def summary(self, verb: str = "transferred") -> str:
        from ptftpd.log import format_rate

        return (
            f"{verb} {self.bytes} bytes in {self.seconds:.2f} s "
            f"({format_rate(self.bytes, self.seconds)})"
        )


@dataclass(frozen=True, slots=True)
class TftpUrl:
    """A `tftp://host[:port]/path[;mode=netascii]` URL (RFC 3617)."""

    host: str
    port: int | None  # None: not in the URL (the caller's default, usually 69)
    path: str
    mode: str | None = None


def parse_url(url: str) -> TftpUrl:
    """Split a tftp:// URL; raise `TftpError` with a readable message when it is not one."""
    from urllib.parse import unquote, urlsplit  # only URLs need it

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TftpError(f"invalid URL {url!r}: {exc}") from None
    if parts.scheme.lower() != "tftp" or not parts.hostname:
        raise TftpError(f"invalid URL {url!r}: expected tftp://HOST[:PORT]/PATH")
    path = parts.path
    mode: str | None = None
    if ";" in path:
        path, _, param = path.partition(";")
        key, _, value = param.partition("=")
        if key.lower() != "mode" or value.lower() not in MODES:
            raise TftpError(f"invalid URL {url!r}: unknown parameter {param!r}")
        mode = value.lower()
    path = unquote(path[1:] if path.startswith("/") else path)
    if not path:
        raise TftpError(f"invalid URL {url!r}: no file name")
    return TftpUrl(parts.hostname, port, path, mode)


def _resolve(host: str, port: int) -> tuple[socket.AddressFamily, Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise TftpError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    except UnicodeError:
        raise TftpError(f"invalid host name {host!r}") from None
    return client_family(infos, host)


async def _resolve_async(host: str, port: int) -> tuple[socket.AddressFamily, Address]:
    import asyncio

    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise TftpError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    except UnicodeError:
        raise TftpError(f"invalid host name {host!r}") from None
    return client_family(infos, host)


def _local_size(file: BinaryIO) -> int | None:
    """Bytes left to read in a regular file, or None for pipes and the like."""
    try:
        st = os.fstat(file.fileno())
        if not stat.S_ISREG(st.st_mode):
            return None
        return max(0, st.st_size - file.tell())
    except (OSError, ValueError, AttributeError):
        return None


@dataclass(frozen=True, slots=True)
class Job:
    """One get (`is_read`) of `remote` into `file`, or put of `file` to `remote`."""

    host: str
    port: int
    remote: str
    file: BinaryIO
    is_read: bool
    options: TransferOptions
    progress: ProgressCallback | None = None


def _channel(job: Job, family: socket.AddressFamily, server: Address) -> Channel:
    session = ClientSession(
        server,
        job.remote,
        is_read=job.is_read,
        options=job.options,
        now=clock(),
        local_size=None if job.is_read else _local_size(job.file),
    )
    sock = client_socket(family)
    return Channel(sock, session, job.file, progress=job.progress)


def _outcome(channel: Channel) -> TransferResult:
    session = channel.session
    assert isinstance(session, ClientSession)
    if session.error is not None:
        raise session.error
    if not session.succeeded:
        raise TftpError("transfer cancelled")
    try:
        channel.file.flush()
    except OSError as exc:
        raise TftpError(f"cannot write the local file: {exc.strerror}") from None
    except ValueError:
        pass  # a file object without flush semantics
    end = session.finished_at or clock()
    return TransferResult(
        bytes=session.local_bytes,
        wire_bytes=session.wire_bytes,
        seconds=end - session.started,
        blksize=session.blksize,
        windowsize=session.windowsize,
        tsize=session.tsize,
        options=session.granted,
        retransmissions=session.retransmissions,
        rfc1350_fallback=session.fallback,
    )


def transfer(job: Job) -> TransferResult:
    """Run `job` in the calling thread (no event loop)."""
    channel = _channel(job, *_resolve(job.host, job.port))
    run_blocking(channel)
    return _outcome(channel)


_dallies: set[asyncio.Task[None]] = set()  # strong references while they run


async def _dally(runner: AsyncChannel, closed: asyncio.Event) -> None:
    """Keep the socket a little longer to re-ACK a resent final block (RFC 1350): the
    session's own deadline ends it; cancelled (socket closed) when the loop shuts down."""
    try:
        await closed.wait()
    finally:
        runner.stop()


async def transfer_async(job: Job) -> TransferResult:
    """`transfer` on the running event loop; the socket dallies after the last ACK."""
    import asyncio

    channel = _channel(job, *await _resolve_async(job.host, job.port))
    loop = asyncio.get_running_loop()
    settled: asyncio.Future[None] = loop.create_future()
    closed = asyncio.Event()

    def answer() -> None:
        if not settled.done():
            settled.set_result(None)

    runner = AsyncChannel(channel, loop, on_settled=answer, on_closed=closed.set)
    try:
        runner.start()
        await settled
    except BaseException:
        runner.stop(cancel=True)
        raise
    if not closed.is_set():
        task = loop.create_task(_dally(runner, closed))
        _dallies.add(task)
        task.add_done_callback(_dallies.discard)
    return _outcome(channel)
