"""Issue 24: a server never changes a file it was not asked to change, refuses a mistyped
--leases, and says its unsafe defaults once. Real processes, real files."""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from pathlib import Path

import pytest

from support import (
    Process,
    free_udp_port,
    require_root,
    require_tool,
    script,
    world_readable_dir,
)


def run(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def test_uploads_on_and_root_not_writable_by_user_is_one_error_and_root_untouched() -> None:
    require_root()
    nobody = pwd.getpwnam("nobody")
    with world_readable_dir("ptftpd-op-") as root:
        root.chmod(0o755)
        before = root.stat()
        port = str(free_udp_port())
        res = run(script("ptftpd"), "-p", port, "--user", "nobody", "127.0.0.1", str(root))
        assert res.returncode == 1, res
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, res.stderr
        assert "--read-only" in lines[0] and f"chown nobody {root}" in lines[0]
        assert "Traceback" not in res.stderr
        after = root.stat()
        assert (after.st_uid, after.st_gid, after.st_mode) == (
            before.st_uid,
            before.st_gid,
            before.st_mode,
        )
        assert after.st_uid != nobody.pw_uid


@pytest.mark.parametrize("workers", ["1", "2"])
def test_user_with_a_writable_root_starts_and_never_chowns_it(tmp_path: Path, workers: str) -> None:
    """ROOT writable by USER through its group bits only: it starts, and ROOT keeps its
    owner (the old server chowned ROOT to USER and left it so)."""
    require_root()
    nobody = pwd.getpwnam("nobody")
    with world_readable_dir("ptftpd-op-") as root:
        os.chown(root, 0, nobody.pw_gid)
        root.chmod(0o775)
        port = str(free_udp_port())
        argv = [script("ptftpd"), "-v", "-p", port, "--workers", workers, "--user", "nobody"]
        server = Process([*argv, "127.0.0.1", str(root)], tmp_path / "s.log")
        try:
            server.wait_output("serving", timeout=20)
            assert root.stat().st_uid == 0
        finally:
            assert server.stop() == 0
        assert root.stat().st_uid == 0
        assert "Traceback" not in server.output()


@pytest.mark.parametrize("tool", ["dhcpd", "bootpd"])
@pytest.mark.parametrize(
    "value", ["mysql://dhcp@/x", "postgressql://dhcp@db/leases", "sqlite:///tmp/x.db"]
)
def test_leases_with_another_scheme_is_a_usage_error(
    tmp_path: Path, tool: str, value: str
) -> None:
    res = subprocess.run(
        [script(tool), "--leases", value, "--print-config", "lo", "pxelinux.0"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert res.returncode == 2, res
    assert res.stderr.count("\n") == 1, res.stderr
    assert "postgresql://" in res.stderr and "file path" in res.stderr
    assert list(tmp_path.iterdir()) == []  # no ./mysql:/... file or directory


def test_leases_in_a_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "leases.sqlite"
    res = run(script("dhcpd"), "--leases", str(missing), "--print-config", "lo", "pxelinux.0")
    assert res.returncode == 2, res
    assert "does not exist" in res.stderr and res.stderr.count("\n") == 1
    assert not missing.parent.exists()
    ok = run(script("dhcpd"), "--leases", str(tmp_path / "l.sqlite"), "--print-config", "lo", "x")
    assert ok.returncode == 0, ok
    pg = run(script("dhcpd"), "--leases", "postgresql://dhcp@db.lab/l", "--print-config", "lo", "x")
    assert pg.returncode == 0, pg


@pytest.mark.parametrize(
    ("flags", "names_read_only"), [((), True), (("--read-only",), False)], ids=["rw", "ro"]
)
def test_root_without_user_is_warned_once(
    tmp_path: Path, flags: tuple[str, ...], names_read_only: bool
) -> None:
    require_root()
    with world_readable_dir("ptftpd-op-") as root:
        port = str(free_udp_port())
        argv = [script("ptftpd"), "-p", port, "--workers", "2", *flags, "127.0.0.1", str(root)]
        server = Process(argv, tmp_path / "s.log")
        try:
            server.wait_output("--user USER", timeout=20)
        finally:
            server.stop()
        warnings = [line for line in server.output().splitlines() if "--user" in line]
        assert len(warnings) == 1, server.output()  # the parent, not each worker
        assert " WARNING: " in warnings[0]
        assert ("--read-only" in warnings[0]) is names_read_only
        # with --user, no such warning
        os.chown(root, pwd.getpwnam("nobody").pw_uid, -1)
        argv = [script("ptftpd"), "-v", "-p", port, "--user", "nobody", "127.0.0.1", str(root)]
        quiet = Process(argv, tmp_path / "q.log")
        try:
            time.sleep(1.5)
        finally:
            quiet.stop()
        assert "--user" not in quiet.output() and "WARNING" not in quiet.output()


def test_a_refused_upload_never_tells_the_peer_a_server_path(tmp_path: Path) -> None:
    """A subdirectory USER may not write: the peer reads why, not where ROOT lives."""
    require_root()
    tftp = require_tool("tftp")
    with world_readable_dir("ptftpd-op-") as root:
        root.chmod(0o777)
        (root / "sub").mkdir(mode=0o755)
        port = str(free_udp_port())
        argv = [script("ptftpd"), "-v", "-p", port, "--workers", "1", "--user", "nobody"]
        server = Process([*argv, "127.0.0.1", str(root)], tmp_path / "s.log")
        try:
            server.wait_output("serving", timeout=20)
            time.sleep(1)
            (tmp_path / "up.txt").write_text("hello\n")
            res = subprocess.run(
                [tftp, "127.0.0.1", port, "-m", "octet", "-c", "put", "up.txt", "sub/up.txt"],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            server.stop()
        said = res.stdout + res.stderr
        assert "Error code" in said, said
        assert str(root) not in said and "/tmp" not in said, said
        assert not (root / "sub" / "up.txt").exists()
