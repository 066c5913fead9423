"""One exclusive lock per UDP address and port, so a second, unrelated ptftpd or pxed
cannot join the SO_REUSEPORT group of a running one (it would silently take a share of
the requests): a pool's parent takes it before it binds and holds it until it exits,
then removes the file.

Taking and removing it safely (the file lives in a shared directory, /run/lock):

- taken: open the file (never following a symlink; created if missing), flock it, then
  check that the path still names the inode we locked. The holder before us removes the
  file while it holds the lock, so a lock taken on an inode that is no longer at the path
  is worthless: close and start again (bounded).
- removed at exit, while still held: unlink only if the path still names our inode,
  then close. Whoever opened the old inode meanwhile finds it gone at the re-check.
- who may remove it: /run/lock is sticky, so only the file's owner (or root) may unlink
  it, and the server drops to --user before it exits. The parent keeps no privilege to
  do it later (it drops everything: `ptftpd.service.privileges`), and a lock in the
  service's own RuntimeDirectory would not be seen by a second ptftpd started by hand.
  So the lock stays in the one shared place and is given to the run-as user while we
  are still root (`give_held_locks`, called just before the drop): that user, as owner,
  may then remove it at exit. A file left behind by a killed server is root's or another
  user's: opened without O_CREAT it still works for anyone (see `_open_lock_file`), and
  a server that cannot remove it at exit leaves it (a debug line), as before.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import tempfile

from ptftpd.errors import StartError

__all__ = ["AddressLock", "give_held_locks", "lock_address", "lock_path"]

log = logging.getLogger("ptftpd.service.lock")

_ATTEMPTS = 5  # a lock taken on a file its holder removed meanwhile: start again


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


class AddressLock:
    """A held lock file: `release` removes it (the process that took it, at exit),
    `forget` only closes this process's copy (a forked worker)."""

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path

    def names_our_file(self) -> bool:
        """The path still names the inode we hold, a plain file with no other name."""
        try:
            ours = os.fstat(self.fd)
            there = os.stat(self.path, follow_symlinks=False)
        except OSError:
            return False
        return (ours.st_dev, ours.st_ino) == (there.st_dev, there.st_ino)

    def give_to(self, uid: int, gid: int) -> None:
        """Make the run-as user the owner, so it may remove the file at exit (sticky
        directory). Only a plain file with one name: never another file through a
        hard link someone placed there."""
        st = os.fstat(self.fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or not self.names_our_file():
            return
        try:
            os.fchown(self.fd, uid, gid)
        except OSError as exc:
            log.debug("cannot give %s to uid %d: %s", self.path, uid, exc.strerror)

    def release(self) -> None:
        """Remove the file (if it is still ours) while holding the lock, then unlock."""
        if self.fd < 0:
            return
        try:
            if self.names_our_file():
                os.unlink(self.path)
        except OSError as exc:  # e.g. a root-owned leftover and we are USER now
            log.debug("leaving %s: %s", self.path, exc.strerror)
        self.forget()

    def forget(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self in _held:
            _held.remove(self)


_held: list[AddressLock] = []  # this process's locks, for `give_held_locks`


def give_held_locks(uid: int, gid: int) -> None:
    """Before dropping root for --user: every lock this process holds becomes the run-as
    user's, so the server can still remove them at exit (see the module doc)."""
    if os.geteuid() != 0:
        return
    for lock in _held:
        lock.give_to(uid, gid)


def lock_address(host: str, port: int) -> AddressLock:
    """An exclusive flock naming `host` and `port`, or `StartError`."""
    path = lock_path(host, port)
    for _ in range(_ATTEMPTS):
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
                    f"UDP port {port} on {host} is already served by another ptftpd "
                    f"(it holds {path})"
                ) from None
            raise StartError(f"cannot lock {path}: {exc.strerror}") from None
        lock = AddressLock(fd, path)
        if lock.names_our_file():
            _held.append(lock)
            return lock
        os.close(fd)  # its holder removed it between our open and our flock: again
    raise StartError(f"cannot lock {path}: it keeps being replaced")


def _open_lock_file(path: str) -> int:
    """Open (read-only: flock needs no more) or create the lock file, never through a
    symlink. A file left by a killed server may be another user's (a root start, then a
    service user's): opening it without O_CREAT works for any user, where O_CREAT on
    another user's file in a sticky directory is refused (fs.protected_regular)."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
    for _ in range(3):  # bounded: lost a create race to a file that went away again
        try:
            return os.open(path, flags)
        except FileNotFoundError:
            pass
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        os.fchmod(fd, 0o644)  # whatever the umask: every later user must open it
        return fd
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST))
