"""ptftpd --workers: the whole real-client matrix against two processes sharing the
port, supervision (a killed worker comes back, SIGTERM stops all), the session limit
across workers, no second instance joining the SO_REUSEPORT group, and the default.
The service life cycle with workers (--user, --metrics, reload, drain, sd_notify) is
tested in tests/service/test_service_tftp.py, over --workers 1 and 2."""

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
from ptftpd.service.workers import default_workers
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
        served_root,
        tmp_path / "log",
        *("--workers", "2", "--max-sessions", "3", "--timeout", "5"),
        *("--drain", "0"),  # the 3 never-ACKed transfers would drain for 10 s
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


def test_default_is_one_worker_per_cpu(served_root: Path, tmp_path: Path) -> None:
    """Without --workers: one worker per CPU (a single process where there is one)."""
    srv = start_server(served_root, tmp_path / "log")
    try:
        expected = default_workers()
        pids = workers_of(srv, expected if expected > 1 else 0)
        assert len(pids) == (expected if expected > 1 else 0), srv.log()
        data = (served_root / "f511.bin").read_bytes()
        assert all(getattr(p, "data", None) == data for p in fetch(srv, "f511.bin"))
    finally:
        assert srv.process.stop() == 0, srv.log()


def test_help_names_the_default() -> None:
    out = run(script("ptftpd"), "--help").stdout
    assert "1 keeps a single process" in " ".join(out.split())
