"""Issue 24: --log-target syslog|journal sends each line to a socket (here one the test
binds itself: PTFTPD_SYSLOG_SOCKET / PTFTPD_JOURNAL_SOCKET), without own timestamps;
under journald ($JOURNAL_STREAM) standard error has no own timestamps either."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

from support import Process, free_udp_port, script, world_readable_dir

STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def receive_all(sock: socket.socket, want: str, limit: int = 50) -> list[str]:
    got: list[str] = []
    for _ in range(limit):
        got.append(sock.recv(65536).decode())
        if any(want in g for g in got):
            break
    return got


@pytest.mark.parametrize("target", ["syslog", "journal"])
def test_log_target_socket(tmp_path: Path, target: str) -> None:
    path = tmp_path / f"{target}.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(20)
    env = {**os.environ, f"PTFTPD_{target.upper()}_SOCKET": str(path)}
    env.pop("JOURNAL_STREAM", None)
    with world_readable_dir("ptftpd-op-") as root:
        argv = [script("ptftpd"), "-v", "--read-only", "--workers", "1", "--log-target", target]
        server = Process(
            [*argv, "-p", str(free_udp_port()), "127.0.0.1", str(root)], tmp_path / "s.log", env=env
        )
        try:
            got = receive_all(sock, "serving")
        finally:
            server.stop()
            sock.close()
    line = next(g for g in got if "serving" in g)
    assert not STAMP.search(line), line
    if target == "journal":
        assert "\nPRIORITY=6\n" in line and "SYSLOG_IDENTIFIER=ptftpd\n" in line
        assert line.startswith("MESSAGE=ptftpd.tftp.server INFO: serving ")
    else:
        assert line.startswith("<14>ptftpd: ptftpd.tftp.server INFO: serving "), line  # user.info
    assert "serving" not in server.output()  # not on standard error too


def test_bad_target_and_missing_journal(tmp_path: Path) -> None:
    res = subprocess.run(
        [script("ptftpd"), "--log-target", "file", "127.0.0.1", str(tmp_path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert res.returncode == 2 and "stderr, syslog or journal" in res.stderr
    env = {**os.environ, "PTFTPD_JOURNAL_SOCKET": str(tmp_path / "none")}
    res = subprocess.run(
        [script("ptftpd"), "--log-target", "journal", "--read-only", "-p", str(free_udp_port()),
         "127.0.0.1", str(tmp_path)],
        capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip
    assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
    assert "no journal socket" in res.stderr


def test_no_own_timestamps_under_journald(tmp_path: Path) -> None:
    with world_readable_dir("ptftpd-op-") as root:
        argv = [script("ptftpd"), "-v", "--read-only", "--workers", "1"]
        env = {**os.environ, "JOURNAL_STREAM": "8:12345"}
        server = Process(
            [*argv, "-p", str(free_udp_port()), "127.0.0.1", str(root)], tmp_path / "s.log", env=env
        )
        try:
            out = server.wait_output("serving", timeout=20)
        finally:
            server.stop()
    line = next(x for x in out.splitlines() if "serving" in x)
    assert line.startswith("ptftpd.tftp.server INFO: serving"), line
