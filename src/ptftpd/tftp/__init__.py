"""TFTP for Python programs: download and upload, from asyncio or from blocking code.

    from ptftpd.tftp import download, upload

    result = download("192.0.2.1", "pxelinux.0", "/tmp/pxelinux.0", blksize=1428, windowsize=16)
    print(result.summary("received"))

`download`/`upload` block the calling thread (no event loop involved: the command line
uses them); `download_async`/`upload_async` are the same for a running event loop.
The local side is a path or a binary file object. A download to a path
goes to a temporary file beside it and is renamed only once complete, so a failed
transfer never leaves a partial file under the destination name. Every failure raises
`TftpError`, whose message is one line fit to show a person.

Options are checked once, into a frozen `options.TransferOptions`; the protocol pieces
(`packets`, `options`, `machine`, `session`, `driver`, `server`, `client`) stay
importable as submodules (README "Architecture" says which holds which rule).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import BinaryIO, TypedDict, Unpack

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
    "OptionArgs",
    "ProgressCallback",
    "ProtocolError",
    "RemoteError",
    "RequestRefused",
    "TftpError",
    "TftpUrl",
    "TransferOptions",
    "TransferResult",
    "TransferTimeout",
    "download",
    "download_async",
    "download_with",
    "parse_url",
    "upload",
    "upload_async",
    "upload_with",
]

Local = str | os.PathLike[str] | BinaryIO


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


class OptionArgs(TypedDict, total=False):
    """The transfer options as keyword arguments (see `TransferOptions` for each)."""

    mode: str
    blksize: int | None
    windowsize: int | None
    tsize: bool
    timeout: float | None
    retries: int
    rfc1350: bool


def download_with(
    host: str,
    remote: str,
    local: Local,
    options: TransferOptions,
    *,
    port: int = DEFAULT_PORT,
    overwrite: bool = True,
    progress: ProgressCallback | None = None,
) -> TransferResult:
    """`download` with the options already built (what ptftp uses)."""
    with _download_target(local, overwrite) as file:
        return transfer(Job(host, port, remote, file, True, options, progress))


def upload_with(
    host: str,
    local: Local,
    remote: str | None,
    options: TransferOptions,
    *,
    port: int = DEFAULT_PORT,
    progress: ProgressCallback | None = None,
) -> TransferResult:
    """`upload` with the options already built (what ptftp uses)."""
    with _upload_source(local, remote) as (file, name):
        return transfer(Job(host, port, name, file, False, options, progress))


def download(
    host: str,
    remote: str,
    local: Local,
    *,
    port: int = DEFAULT_PORT,
    overwrite: bool = True,
    progress: ProgressCallback | None = None,
    **options: Unpack[OptionArgs],
) -> TransferResult:
    """Fetch `remote` from `host` into `local` (a path or a binary file object).

    Options are asked for only when given: `blksize` (RFC 2348), `windowsize`
    (RFC 7440), `tsize` (RFC 2349, the size then reaches `progress`), `timeout`
    (seconds between retransmissions; from 1 s up also sent as the RFC 2349 option);
    `retries` (5) bounds the retransmissions of each packet, so an unreachable server
    fails after about `timeout * (retries + 1)` seconds; `rfc1350` asks for no option
    at all; `mode` is "octet" (default) or "netascii". With `overwrite=False` an
    existing local file is an error, checked again when the file gets its name. Blocks
    the calling thread and needs no event loop. Raises `TftpError` (a one-line
    message) on any failure.
    """
    opts = TransferOptions(**options)
    return download_with(
        host, remote, local, opts, port=port, overwrite=overwrite, progress=progress
    )


async def download_async(
    host: str,
    remote: str,
    local: Local,
    *,
    port: int = DEFAULT_PORT,
    overwrite: bool = True,
    progress: ProgressCallback | None = None,
    **options: Unpack[OptionArgs],
) -> TransferResult:
    """`download` for a running event loop (other tasks run meanwhile)."""
    opts = TransferOptions(**options)
    with _download_target(local, overwrite) as file:
        return await transfer_async(Job(host, port, remote, file, True, opts, progress))


def upload(
    host: str,
    local: Local,
    remote: str | None = None,
    *,
    port: int = DEFAULT_PORT,
    progress: ProgressCallback | None = None,
    **options: Unpack[OptionArgs],
) -> TransferResult:
    """Send `local` (a path or a binary file object) to `host` as `remote` (by default
    the local file's name). Same options as `download`; `tsize` announces the size of
    a regular file in octet mode. Blocks the calling thread."""
    opts = TransferOptions(**options)
    return upload_with(host, local, remote, opts, port=port, progress=progress)


async def upload_async(
    host: str,
    local: Local,
    remote: str | None = None,
    *,
    port: int = DEFAULT_PORT,
    progress: ProgressCallback | None = None,
    **options: Unpack[OptionArgs],
) -> TransferResult:
    """`upload` for a running event loop."""
    opts = TransferOptions(**options)
    with _upload_source(local, remote) as (file, name):
        return await transfer_async(Job(host, port, name, file, False, opts, progress))
