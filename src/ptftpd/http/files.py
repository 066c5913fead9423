"""Open the file a decoded request path names, confined to the root like TFTP.

Confinement is `ptftpd.paths.resolve` (resolved components, symlinks followed, no
string prefixes). The open itself refuses a symlink swapped in after that check
(O_NOFOLLOW), never blocks on a FIFO (O_NONBLOCK) and serves regular files only, so a
directory is 403 and never listed.
"""

from __future__ import annotations

import errno
import mimetypes
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from ptftpd.http.errors import HttpError
from ptftpd.http.growing import GrowingFile
from ptftpd.paths import PathRefused, resolve

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class OpenedFile:
    """An open regular file; the caller owns `fd` and must close it."""

    path: Path
    fd: int
    size: int
    mtime: float
    content_type: str
    growing: GrowingFile | None = None
    """Still being written (`ptftpd.http.growing`): `size` is what it will hold."""


def content_type(path: Path) -> str:
    guessed, _ = mimetypes.guess_type(path.name, strict=False)
    return guessed or "application/octet-stream"


def open_file(root: Path, request_path: str) -> OpenedFile:
    """`root` must be resolved; raises HttpError 403 (outside the root, a directory, not
    a regular file, unreadable), 404 (missing) or 503 (out of file descriptors)."""
    try:
        path = resolve(root, request_path)
    except PathRefused as exc:
        raise HttpError(403, str(exc)) from None
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise HttpError(404, "no such file") from None
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            raise HttpError(503, "out of file descriptors") from None
        raise HttpError(403, exc.strerror or "cannot open") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise HttpError(403, "is a directory (no listings)")
        if not stat.S_ISREG(st.st_mode):
            raise HttpError(403, "not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return OpenedFile(path, fd, st.st_size, st.st_mtime, content_type(path))


def in_memory(request_path: str, data: bytes) -> OpenedFile:
    """`data` as an open file (a memfd, so the server's sendfile path serves it)."""
    try:
        fd = os.memfd_create("generated", os.MFD_CLOEXEC)
    except OSError as exc:
        raise HttpError(503, exc.strerror or "cannot make a file") from None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        raise
    path = Path(request_path)
    return OpenedFile(path, fd, len(data), time.time(), "text/plain")
