"""The local side of a transfer: one errno -> TFTP error mapping and one commit rule.

Every byte received (server upload or client download to a path) goes to a temporary
file beside its destination and gets its name only once complete, with `os.link`
(which, unlike rename, never replaces a file created meanwhile) or `os.replace` when
overwriting was asked for. A failed transfer never leaves a partial file behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

from ptftpd.tftp.errors import LocalError
from ptftpd.tftp.packets import ErrorCode

READ_CHUNK = 64 * 1024  # at least this much is read from a file per system call
WRITE_BUFFER = 1 << 20  # one write system call per MiB received, not per block


def error_for(exc: OSError, what: str = "") -> LocalError:
    """The TFTP error for a failed local file operation: the one mapping for server
    and client. `what` prefixes the message (e.g. "cannot write the local file")."""
    number = exc.errno or 0
    if number in (errno.ENOSPC, errno.EDQUOT):
        code = ErrorCode.DISK_FULL
    elif number == errno.ENOENT:
        code = ErrorCode.FILE_NOT_FOUND
    elif number == errno.EEXIST:
        code = ErrorCode.FILE_EXISTS
    else:
        code = ErrorCode.ACCESS_VIOLATION
    if number in (errno.EACCES, errno.EPERM):
        text = "permission denied"
    elif number == errno.ENOENT:
        text = "file not found"
    elif number == errno.EEXIST:
        text = "file already exists"
    else:
        text = os.strerror(number) if number else str(exc)
    return LocalError(code, f"{what}: {text}" if what else text)


def open_for_read(path: Path) -> tuple[BinaryIO, int]:
    """A regular file to serve and its size; never follows a final symlink, never
    blocks on a FIFO. Raises `LocalError`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise error_for(exc) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise LocalError(ErrorCode.ACCESS_VIOLATION, "not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb", buffering=0), st.st_size


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class StagedFile:
    """A temporary file beside `path` that becomes `path` only by `commit`.

    Raises `LocalError` when it cannot be created."""

    def __init__(self, path: str | os.PathLike[str], *, buffering: int = WRITE_BUFFER) -> None:
        self.path = os.fspath(path)
        folder, name = os.path.split(self.path)
        try:
            fd, self.temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder or ".")
        except OSError as exc:
            # no path: a server sends this text to its peer (issue 24)
            raise error_for(exc, "cannot write to that directory") from None
        with contextlib.suppress(OSError):
            # mkstemp makes the file private; the finished file gets the usual mode.
            os.fchmod(fd, 0o666 & ~_umask())
        self.file: BinaryIO = os.fdopen(fd, "wb", buffering=buffering)
        self._done = False

    def commit(self, *, replace: bool = False, fsync: bool = False) -> None:
        """Give the file its name; raises `LocalError` (the temporary file is removed)."""
        try:
            self.file.flush()
            if fsync:
                os.fsync(self.file.fileno())
            self.file.close()
            if replace:
                os.replace(self.temp, self.path)
            else:
                os.link(self.temp, self.path)
                os.unlink(self.temp)
        except OSError as exc:
            self.discard()
            raise error_for(exc, "" if exc.errno == errno.EEXIST else "cannot store file") from None
        self._done = True

    def discard(self) -> None:
        """Remove the temporary file (after a failure); harmless after `commit`."""
        if self._done:
            return
        self._done = True
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.temp)
