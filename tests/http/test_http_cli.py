"""`python -m ptftpd.http`: help, usage errors (exit 2), start-up errors (one line, exit 1)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from http_support import curl_status, free_tcp_port, start_http

ENTRY = [sys.executable, "-m", "ptftpd.http"]


def run_entry(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ENTRY, *args], capture_output=True, text=True, timeout=60)


def test_help() -> None:
    done = run_entry("--help")
    assert done.returncode == 0
    for flag in ("--port", "--bind", "--max-connections", "--idle-timeout", "--header-timeout"):
        assert flag in done.stdout


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["ROOT", "--port", "0"],
        ["ROOT", "--port", "70000"],
        ["ROOT", "--port", "http"],
        ["ROOT", "--max-connections", "0"],
        ["ROOT", "--header-timeout", "-1"],
        ["ROOT", "--idle-timeout", "soon"],
        ["ROOT", "--no-such-flag"],
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    done = run_entry(*[str(tmp_path) if a == "ROOT" else a for a in args])
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("python -m ptftpd.http: error:")


def test_missing_root_is_one_line(tmp_path: Path) -> None:
    done = run_entry(str(tmp_path / "missing"), "--port", str(free_tcp_port()))
    assert done.returncode == 1
    assert (
        done.stderr == f"python -m ptftpd.http: error: root {tmp_path / 'missing'} does not exist\n"
    )


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_entry(str(tmp_path), "--port", str(port), "--bind", "127.0.0.1")
    assert done.returncode == 1
    assert done.stderr == (
        f"python -m ptftpd.http: error: TCP port {port} on 127.0.0.1 is already in use\n"
    )


def test_serves_then_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "hello.txt").write_bytes(b"hello\n")
    server = start_http(root, tmp_path / "log")
    assert curl_status(server.url("/hello.txt")) == 200
    assert curl_status(server.url("/hello.txt", "::1")) == 200
    assert server.process.stop(signal.SIGTERM) == 0
    log = server.log()
    assert "Traceback" not in log
    assert " GET /hello.txt 200 6 bytes in " in log
