"""TFTP for Python programs: download and upload, from asyncio or from blocking code.

    from ptftpd.tftp import TftpClient, TransferOptions

    server = TftpClient("192.0.2.1", options=TransferOptions(blksize=1428, windowsize=16))
    result = server.download("pxelinux.0", "/tmp/pxelinux.0")
    print(result.summary("received"))

A `TftpClient` is a server and the options to ask it for. Its `download`/`upload`
block the calling thread (no event loop involved: the command line uses them);
`download_async`/`upload_async` are the same for a running event loop.
The local side is a path or a binary file object. A download to a path
goes to a temporary file beside it and is renamed only once complete, so a failed
transfer never leaves a partial file under the destination name. Every failure raises
`TftpError`, whose message is one line fit to show a person.

The options are one frozen `TransferOptions`, checked once when built (a bad value is
a `TftpError` before anything is sent; one object serves many transfers); the protocol
pieces (`packets`, `options`, `machine`, `session`, `driver`, `server`, `client`) stay
importable as submodules (README "Architecture" says which holds which rule).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import BinaryIO

from ptftpd.tftp.client import (
    DEFAULT_PORT,
    Job,
    ProgressCallback,
    TftpUrl,
    TransferResult,
    parse_url,
    transfer,
    transfer_async,
)
from ptftpd.tftp.errors import (
    LocalError,
    ProtocolError,
    RemoteError,
    RequestRefused,
    TftpError,
    TransferTimeout,
)
from ptftpd.tftp.options import TransferOptions

__all__ = [
    "LocalError",
    "ProgressCallback",
    "ProtocolError",
    "RemoteError",
    "RequestRefused",
    "TftpClient",
    "TftpError",
    "TftpUrl",
    "TransferOptions",
    "TransferResult",
    "TransferTimeout",
    "parse_url",
]

Local = str | os.PathLike[str] | BinaryIO
Progress = ProgressCallback | None


@contextlib.contextmanager
def _download_target(local: Local, overwrite: bool) -> Iterator[BinaryIO]:
    """`local` itself when it is a file object; else a temporary file beside the path,
    given its name only if the block succeeds (`localfiles.StagedFile`)."""
    if not isinstance(local, str | os.PathLike):
        yield local
        return
    from ptftpd.tftp.localfiles import StagedFile  # here: start-up time of the CLI

    path = os.fspath(local)
    if not overwrite and os.path.lexists(path):
        raise TftpError(f"{path} already exists")
    staged = StagedFile(path)
    try:
        yield staged.file
        try:
            staged.commit(replace=overwrite)
        except LocalError as exc:
            raise TftpError(f"{path}: {exc.message}") from None
    finally:
        staged.discard()


@contextlib.contextmanager
def _upload_source(local: Local, remote: str | None) -> Iterator[tuple[BinaryIO, str]]:
    if not isinstance(local, str | os.PathLike):
        if remote is None:
            raise TftpError("a remote name is needed to upload from a file object")
        yield local, remote
        return
    try:
        file = open(local, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise TftpError(f"cannot read {os.fspath(local)}: {exc.strerror}") from None
    with file:
        yield file, remote if remote is not None else os.path.basename(os.fspath(local))


class TftpClient:
    """One TFTP server and what to ask it for: every transfer of this client goes to
    `host` (a name, an IPv4 or IPv6 address) on `port` with `options` (a frozen
    `TransferOptions`, checked when built; none given: plain RFC 1350 blocks in octet
    mode, 5 retries of each packet a second apart). Holds no socket: each transfer opens
    its own, so one client serves any number of transfers, one after another or (the
    async methods) at once."""

    def __init__(
        self, host: str, port: int = DEFAULT_PORT, options: TransferOptions | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.options = options or TransferOptions()

    def _job(self, remote: str, file: BinaryIO, is_read: bool, progress: Progress) -> Job:
        return Job(self.host, self.port, remote, file, is_read, self.options, progress)

    def download(
        self, remote: str, local: Local, *, overwrite: bool = True, progress: Progress = None
    ) -> TransferResult:
        """Fetch `remote` into `local` (a path or a binary file object). With
        `overwrite=False` an existing local file is an error, checked again when the
        file gets its name. Blocks the calling thread and needs no event loop."""
        with _download_target(local, overwrite) as file:
            return transfer(self._job(remote, file, True, progress))

    async def download_async(
        self, remote: str, local: Local, *, overwrite: bool = True, progress: Progress = None
    ) -> TransferResult:
        """`download` for a running event loop (other tasks run meanwhile)."""
        with _download_target(local, overwrite) as file:
            return await transfer_async(self._job(remote, file, True, progress))

    def upload(
        self, local: Local, remote: str | None = None, *, progress: Progress = None
    ) -> TransferResult:
        """Send `local` (a path or a binary file object) as `remote` (by default the
        local file's name); the options' `tsize` announces the size of a regular file
        in octet mode. Blocks the calling thread."""
        with _upload_source(local, remote) as (file, name):
            return transfer(self._job(name, file, False, progress))

    async def upload_async(
        self, local: Local, remote: str | None = None, *, progress: Progress = None
    ) -> TransferResult:
        """`upload` for a running event loop."""
        with _upload_source(local, remote) as (file, name):
            return await transfer_async(self._job(name, file, False, progress))
