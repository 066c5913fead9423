"""One exclusive lock per UDP address and port, so a second, unrelated ptftpd or pxed
cannot join the SO_REUSEPORT group of a running one (it would silently take a share of
the requests): a pool's parent takes it before it binds and holds it until it exits."""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile

from ptftpd.errors import StartError

__all__ = ["lock_address", "lock_path"]


def _lock_dir() -> str:
    run_lock = "/run/lock"
    return run_lock if os.access(run_lock, os.W_OK | os.X_OK) else tempfile.gettempdir()


def lock_path(host: str, port: int) -> str:
    """The lock file of `host`:`port` in this network namespace (the same address and
    port in another namespace is another socket, served by whoever it likes)."""
    try:
        netns = f"net{os.stat('/proc/self/ns/net').st_ino}-"
    except OSError:
        netns = ""
    name = f"ptftpd-udp-{netns}{host.replace(':', '_').replace('%', '_')}-{port}.lock"
    return os.path.join(_lock_dir(), name)


def lock_address(host: str, port: int) -> int:
    """An exclusive flock naming `host` and `port`: the fd, or `StartError`."""
    path = lock_path(host, port)
    try:
        fd = _open_lock_file(path)
    except OSError as exc:
        raise StartError(f"cannot create the lock file {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
            raise StartError(
                f"UDP port {port} on {host} is already served by another ptftpd (it holds {path})"
            ) from None
        raise StartError(f"cannot lock {path}: {exc.strerror}") from None
    return fd


def _open_lock_file(path: str) -> int:
    """Open (read-only: flock needs no more) or create the lock file. The file outlives
    the server and may be another user's (a root start, then a service user's): opening
    it without O_CREAT works for any user, where O_CREAT on another user's file in a
    sticky directory is refused (fs.protected_regular)."""
    for _ in range(3):  # bounded: lost a create race to a file that went away again
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            pass
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            continue
        os.fchmod(fd, 0o644)  # whatever the umask: every later user must open it
        return fd
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST))
