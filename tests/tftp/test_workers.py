"""ptftpd --workers: the whole real-client matrix against two processes sharing the
port, supervision (a killed worker comes back, SIGTERM stops all), the session limit
across workers, and no second instance joining the SO_REUSEPORT group."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from test_cli import assert_one_line_error, run

# Every interop test runs again here, against the `server` fixture below.
from test_interop import *  # noqa: F403

from conftest import RunningServer, start_server
from ptftpd.tftp.packets import Error, ErrorCode, Request, decode
from support import script


@pytest.fixture(scope="module")
def server(served_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("log") / "ptftpd.log"
    srv = start_server(served_root, log, "--workers", "2")
    assert len(workers_of(srv)) == 2
    yield srv
    code = srv.process.stop()
    text = srv.log()
    assert "Traceback" not in text, text
    assert code == 0, text


def workers_of(srv: RunningServer, count: int = 2, timeout: float = 10.0) -> list[int]:
    """The worker PIDs once `count` are up (bounded wait)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = [c.pid for c in psutil.Process(srv.process.pid).children()]
        if len(pids) == count or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


def fetch(srv: RunningServer, name: str, clients: int = 6) -> list[object]:
    """Lock-step download of a small file from several source ports (so both workers
    are asked), hand-driven; the decoded final packets."""
    ends: list[object] = []
    for _ in range(clients):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(5)
            sock.sendto(Request(1, name, "octet", ()).encode(), (srv.host, srv.port))
            data, addr = sock.recvfrom(70000)
            packet = decode(data)
            ends.append(packet)
            if not isinstance(packet, Error):
                sock.sendto(b"\x00\x04\x00\x01", addr)
    return ends


def test_killed_worker_is_restarted(served_root: Path, tmp_path: Path) -> None:
    srv = start_server(served_root, tmp_path / "log", "--workers", "2")
    try:
        before = workers_of(srv)
        assert len(before) == 2
        os.kill(before[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = workers_of(srv, timeout=0.1)
            if len(now) == 2 and before[0] not in now:
                break
            time.sleep(0.05)
        now = workers_of(srv)
        assert len(now) == 2 and before[0] not in now and before[1] in now, (before, now)
        assert "restarting it" in srv.log()
        data = (served_root / "f511.bin").read_bytes()
        assert all(getattr(p, "data", None) == data for p in fetch(srv, "f511.bin"))
    finally:
        assert srv.process.stop() == 0, srv.log()


def test_sigterm_stops_every_worker(served_root: Path, tmp_path: Path) -> None:
    srv = start_server(served_root, tmp_path / "log", "--workers", "2")
    pids = workers_of(srv)
    assert len(pids) == 2
    assert srv.process.stop(signal.SIGTERM) == 0, srv.log()
    for pid in pids:
        assert not psutil.pid_exists(pid), srv.log()
    assert "ptftpd stopped" in srv.log()


def test_max_sessions_hold_across_workers(served_root: Path, tmp_path: Path) -> None:
    """8 transfers from 8 ports, none ACKed (so they stay open): with a limit of 3 across
    both workers exactly 3 start, whichever worker each request reached."""
    srv = start_server(
        served_root, tmp_path / "log", "--workers", "2", "--max-sessions", "3", "--timeout", "5"
    )
    socks = []
    try:
        assert len(workers_of(srv)) == 2
        for _ in range(8):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(5)
            socks.append(sock)
            sock.sendto(Request(1, "f1024.bin", "octet", ()).encode(), (srv.host, srv.port))
        replies = [decode(sock.recvfrom(70000)[0]) for sock in socks]
        busy = [r for r in replies if isinstance(r, Error)]
        assert len(replies) - len(busy) == 3, replies
        assert all(r.code == ErrorCode.NOT_DEFINED and "busy" in r.message for r in busy)
    finally:
        for sock in socks:
            sock.close()
        assert srv.process.stop() == 0, srv.log()


def test_second_instance_cannot_join(served_root: Path, tmp_path: Path) -> None:
    srv = start_server(served_root, tmp_path / "log", "--workers", "2")
    try:
        assert len(workers_of(srv)) == 2
        port = str(srv.port)
        assert_one_line_error(
            run(script("ptftpd"), "--workers", "2", "-p", port, "127.0.0.1", str(served_root)),
            "already served by another ptftpd",
        )
        assert_one_line_error(
            run(script("ptftpd"), "--workers", "1", "-p", port, "127.0.0.1", str(served_root)),
            "already in use",
        )
        data = (served_root / "f511.bin").read_bytes()
        assert all(getattr(p, "data", None) == data for p in fetch(srv, "f511.bin"))
    finally:
        assert srv.process.stop() == 0, srv.log()


def test_single_process_flags_refuse_a_worker_pool(served_root: Path) -> None:
    """--user, --metrics and --map-file run only in one process so far: asking for them
    with a pool is a usage error, not a pool that silently ignores them."""
    for flags in (["--user", "nobody"], ["--metrics", "127.0.0.1:9"], ["--map-file", "/x"]):
        result = run(script("ptftpd"), "--workers", "2", *flags, "127.0.0.1", str(served_root))
        assert result.returncode == 2, result
        assert "Traceback" not in result.stderr
        assert f"{flags[0]} need --workers 1" in result.stderr.strip().splitlines()[-1]


def test_default_is_one_process(served_root: Path, tmp_path: Path) -> None:
    srv = start_server(served_root, tmp_path / "log")
    try:
        assert psutil.Process(srv.process.pid).children() == []
    finally:
        assert srv.process.stop() == 0, srv.log()
