"""Issue 24: a pool's lock file (ptftpd --workers) is removed at exit, safely.

Real servers started and stopped with real signals: as root, as root with --user (the
file is given to USER before the drop, so USER may remove it from the sticky /run/lock),
as a non-root user holding CAP_NET_BIND_SERVICE (setpriv); a server killed with SIGKILL
leaves its file and the next start takes it over. The in-process tests show the re-check
after flock (a lock taken on a file its holder removed meanwhile is taken again)."""

from __future__ import annotations

import os
import pwd
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from ptftpd.service import address_lock
from ptftpd.service.address_lock import AddressLock, lock_address, lock_path
from support import (
    Process,
    free_udp_port,
    require_root,
    require_tool,
    script,
    wait_udp_bound,
    wait_udp_free,
    world_readable_dir,
)


@pytest.fixture
def root() -> Iterator[Path]:
    with world_readable_dir("ptftpd-lock-") as path:
        (path / "a.txt").write_bytes(b"a\n")
        (path / "a.txt").chmod(0o644)
        yield path


def start(root: Path, port: int, log: Path, *extra: str, prefix: tuple[str, ...] = ()) -> Process:
    argv = [*prefix, script("ptftpd"), "-v", "--read-only", "--workers", "2", *extra]
    server = Process([*argv, "-p", str(port), "127.0.0.1", str(root)], log)
    wait_udp_bound(port, proc=server.proc)
    server.wait_output("(2 workers)", timeout=30)
    return server


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT])
def test_user_removes_its_lock_at_exit(root: Path, tmp_path: Path, how: int) -> None:
    """Root with --user nobody: the lock is nobody's while it serves (given before the
    drop), and gone after a stop (SIGTERM as systemctl stop, SIGINT as Ctrl-C)."""
    require_root()
    nobody = pwd.getpwnam("nobody")
    port = free_udp_port()
    lock = Path(lock_path("127.0.0.1", port))
    server = start(root, port, tmp_path / "s.log", "--user", "nobody")
    try:
        st = lock.stat()
        assert (st.st_uid, st.st_nlink) == (nobody.pw_uid, 1), st
    finally:
        assert server.stop(how) == 0, server.output()
    assert not lock.exists(), server.output()


def test_root_and_a_capability_holder_remove_theirs(root: Path, tmp_path: Path) -> None:
    require_root()
    setpriv = require_tool("setpriv")
    port = free_udp_port()
    lock = Path(lock_path("127.0.0.1", port))
    server = start(root, port, tmp_path / "root.log")
    assert lock.stat().st_uid == 0
    assert server.stop() == 0, server.output()
    assert not lock.exists()
    nobody = pwd.getpwnam("nobody")
    as_nobody = (setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                 "--clear-groups", "--inh-caps=+net_bind_service",
                 "--ambient-caps=+net_bind_service")  # fmt: skip
    server = start(root, port, tmp_path / "nobody.log", prefix=as_nobody)
    assert lock.stat().st_uid == nobody.pw_uid
    assert server.stop() == 0, server.output()
    assert not lock.exists()


def test_a_killed_servers_lock_is_taken_over_then_removed(root: Path, tmp_path: Path) -> None:
    """SIGKILL leaves root's file behind; the next start (--user nobody) takes it, makes
    it nobody's and removes it at exit."""
    require_root()
    port = free_udp_port()
    lock = Path(lock_path("127.0.0.1", port))
    first = start(root, port, tmp_path / "first.log")
    first.stop(signal.SIGKILL)
    wait_udp_free(port)  # its workers (told by PDEATHSIG) are gone too
    assert lock.exists() and lock.stat().st_uid == 0
    second = start(root, port, tmp_path / "second.log", "--user", "nobody")
    try:
        assert lock.stat().st_uid == pwd.getpwnam("nobody").pw_uid
    finally:
        assert second.stop() == 0, second.output()
    assert not lock.exists(), second.output()


def test_a_second_server_is_refused_while_the_first_holds_the_lock(
    root: Path, tmp_path: Path
) -> None:
    port = free_udp_port()
    lock = Path(lock_path("127.0.0.1", port))
    first = start(root, port, tmp_path / "first.log")
    try:
        again = Process(
            [script("ptftpd"), "--read-only", "--workers", "2", "-p", str(port), "127.0.0.1",
             str(root)], tmp_path / "second.log",
        )  # fmt: skip
        assert again.proc.wait(30) == 1
        assert "already served by another ptftpd" in again.output()
        assert lock.exists()  # the refused one never removes the holder's file
    finally:
        assert first.stop() == 0
    assert not lock.exists()


def test_a_lock_on_a_removed_file_is_taken_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The holder removed the file between our open and our flock: the lock we got is
    on a file nobody else will ever open; lock_address must notice and start again."""
    port = free_udp_port()
    path = lock_path("127.0.0.1", port)
    holder = lock_address("127.0.0.1", port)
    stale = os.open(path, os.O_RDONLY)  # opened while the holder still had it
    kept = os.dup(stale)  # lock_address closes `stale`
    holder.release()
    assert not os.path.exists(path)
    real_open = address_lock._open_lock_file
    opened: list[int] = []

    def open_stale_first(p: str) -> int:
        fd = stale if not opened else real_open(p)
        opened.append(fd)
        return fd

    monkeypatch.setattr(address_lock, "_open_lock_file", open_stale_first)
    lock = lock_address("127.0.0.1", port)
    try:
        assert len(opened) == 2 and lock.fd == opened[1]
        assert os.path.exists(path) and lock.names_our_file()
        assert not AddressLock(kept, path).names_our_file()
    finally:
        lock.release()
        os.close(kept)
    assert not os.path.exists(path)


def test_release_leaves_a_file_that_is_no_longer_ours() -> None:
    """Someone replaced the path (it names another inode): release must not remove it."""
    port = free_udp_port()
    path = lock_path("127.0.0.1", port)
    lock = lock_address("127.0.0.1", port)
    os.unlink(path)
    Path(path).write_bytes(b"")
    try:
        lock.release()
        assert os.path.exists(path)
    finally:
        os.unlink(path)
