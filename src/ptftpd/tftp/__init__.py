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

The protocol pieces (`packets`, `options`, `machine`, `netascii`, `server`, `client`)
stay importable as submodules.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import BinaryIO

from ptftpd.tftp.client import (
    DEFAULT_PORT,
    DEFAULT_RETRIES,
    ProgressCallback,
    ProtocolError,
    RemoteError,
    RequestRefused,
    TftpError,
    TftpUrl,
    TransferResult,
    TransferTimeout,
    get_file,
    get_file_async,
    parse_url,
    put_file,
    put_file_async,
)

__all__ = [
    "ProgressCallback",
    "ProtocolError",
    "RemoteError",
    "RequestRefused",
    "TftpError",
    "TftpUrl",
    "TransferResult",
    "TransferTimeout",
    "download",
    "download_async",
    "parse_url",
    "upload",
    "upload_async",
]

Local = str | os.PathLike[str] | BinaryIO
_WRITE_BUFFER = 1 << 20


@contextlib.contextmanager
def _download_target(local: str | os.PathLike[str], overwrite: bool) -> Iterator[BinaryIO]:
    """A temporary file beside `local`, renamed to it only if the block succeeds; removed
    on any failure, so a failed transfer never leaves a partial file under that name."""
    import tempfile  # here, not at the top: start-up time of the command line

    path = os.fspath(local)
    if not overwrite and os.path.lexists(path):
        raise TftpError(f"{path} already exists")
    folder, name = os.path.split(path)
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder or ".")
    except OSError as exc:
        raise TftpError(f"cannot write to {folder or '.'}: {exc.strerror}") from None
    try:
        # A large buffer: one write system call per MiB instead of one per 8 KiB.
        with os.fdopen(fd, "wb", buffering=_WRITE_BUFFER) as file:
            yield file
        with contextlib.suppress(OSError):
            os.chmod(temp, 0o666 & ~_umask())
        if overwrite:
            os.replace(temp, path)
        else:
            os.link(temp, path)  # unlike rename, never replaces a file created meanwhile
            os.unlink(temp)
    except FileExistsError:
        _remove(temp)
        raise TftpError(f"{path} already exists") from None
    except OSError as exc:
        _remove(temp)
        raise TftpError(f"cannot write {path}: {exc.strerror}") from None
    except BaseException:
        _remove(temp)
        raise


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


def download(
    host: str,
    remote: str,
    local: Local,
    *,
    port: int = DEFAULT_PORT,
    mode: str = "octet",
    blksize: int | None = None,
    windowsize: int | None = None,
    tsize: bool = False,
    timeout: float | None = None,
    retries: int = DEFAULT_RETRIES,
    rfc1350: bool = False,
    overwrite: bool = True,
    progress: ProgressCallback | None = None,
) -> TransferResult:
    """Fetch `remote` from `host` into `local` (a path or a binary file object).

    Options are asked for only when given: `blksize` (RFC 2348), `windowsize`
    (RFC 7440), `tsize` (RFC 2349, the size then reaches `progress`), `timeout`
    (seconds between retransmissions; from 1 s up also sent as the RFC 2349 option);
    `retries` bounds the retransmissions of each packet, so an unreachable server fails
    after about `timeout * (retries + 1)` seconds. With `overwrite=False` an existing
    local file is an error, checked again at the rename. Blocks the calling thread and
    needs no event loop.
    """

    def fetch(file: BinaryIO) -> TransferResult:
        return get_file(
            host,
            remote,
            file,
            port=port,
            mode=mode,
            blksize=blksize,
            windowsize=windowsize,
            tsize=tsize,
            timeout=timeout,
            retries=retries,
            rfc1350=rfc1350,
            progress=progress,
        )

    if not isinstance(local, str | os.PathLike):
        return fetch(local)
    with _download_target(local, overwrite) as file:
        return fetch(file)


async def download_async(
    host: str,
    remote: str,
    local: Local,
    *,
    port: int = DEFAULT_PORT,
    mode: str = "octet",
    blksize: int | None = None,
    windowsize: int | None = None,
    tsize: bool = False,
    timeout: float | None = None,
    retries: int = DEFAULT_RETRIES,
    rfc1350: bool = False,
    overwrite: bool = True,
    progress: ProgressCallback | None = None,
) -> TransferResult:
    """`download` for a running event loop (other tasks run meanwhile)."""

    async def fetch(file: BinaryIO) -> TransferResult:
        return await get_file_async(
            host,
            remote,
            file,
            port=port,
            mode=mode,
            blksize=blksize,
            windowsize=windowsize,
            tsize=tsize,
            timeout=timeout,
            retries=retries,
            rfc1350=rfc1350,
            progress=progress,
        )

    if not isinstance(local, str | os.PathLike):
        return await fetch(local)
    with _download_target(local, overwrite) as file:
        return await fetch(file)


def upload(
    host: str,
    local: Local,
    remote: str | None = None,
    *,
    port: int = DEFAULT_PORT,
    mode: str = "octet",
    blksize: int | None = None,
    windowsize: int | None = None,
    tsize: bool = False,
    timeout: float | None = None,
    retries: int = DEFAULT_RETRIES,
    rfc1350: bool = False,
    progress: ProgressCallback | None = None,
) -> TransferResult:
    """Send `local` (a path or a binary file object) to `host` as `remote` (by default
    the local file's name). Same options as `download`; blocks the calling thread."""
    with _upload_source(local, remote) as (file, name):
        return put_file(
            host,
            file,
            name,
            port=port,
            mode=mode,
            blksize=blksize,
            windowsize=windowsize,
            tsize=tsize,
            timeout=timeout,
            retries=retries,
            rfc1350=rfc1350,
            progress=progress,
        )


async def upload_async(
    host: str,
    local: Local,
    remote: str | None = None,
    *,
    port: int = DEFAULT_PORT,
    mode: str = "octet",
    blksize: int | None = None,
    windowsize: int | None = None,
    tsize: bool = False,
    timeout: float | None = None,
    retries: int = DEFAULT_RETRIES,
    rfc1350: bool = False,
    progress: ProgressCallback | None = None,
) -> TransferResult:
    """`upload` for a running event loop."""
    with _upload_source(local, remote) as (file, name):
        return await put_file_async(
            host,
            file,
            name,
            port=port,
            mode=mode,
            blksize=blksize,
            windowsize=windowsize,
            tsize=tsize,
            timeout=timeout,
            retries=retries,
            rfc1350=rfc1350,
            progress=progress,
        )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
