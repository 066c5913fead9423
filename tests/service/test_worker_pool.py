"""ptftpd --workers: what the other worker tests could not see (issue 19, honesty gaps).

- READY=1 after a reload means every worker applies the new settings: requests sent
  right after it never meet the old rules (sending READY=1 before the workers have
  re-read them let 20 of 80 such requests through under the old rules, unnoticed).
- A killed worker's sessions no longer count against --max-sessions: the parent frees
  its slots when it reaps it (kept counted, the server would refuse every request as
  busy until a restart).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from pathlib import Path

import psutil
import pytest
from test_service_tftp import workers_of

from ptftpd.service.workers import TftpWorkers
from ptftpd.tftp.packets import Data, Error, Opcode, Request, decode
from ptftpd.tftp.server import ServerConfig
from support import Process, free_udp_port, script, wait_udp_bound

BOOT = b"b" * 3000


def first_replies(port: int, count: int, name: str = "boot.bin") -> list[object]:
    """One RRQ from each of `count` sockets (different addresses, so the kernel spreads
    them over the workers), all sent at once; each socket's first reply, decoded."""
    socks = []
    try:
        for i in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((f"127.0.{i // 200 + 20}.{i % 200 + 1}", 0))
            sock.settimeout(10)
            socks.append(sock)
        request = Request(Opcode.RRQ, name, "octet").encode()
        for sock in socks:
            sock.sendto(request, ("127.0.0.1", port))
        replies: list[object] = []
        for sock in socks:
            try:
                replies.append(decode(sock.recvfrom(65536)[0]))
            except TimeoutError:
                replies.append(None)
        return replies
    finally:
        for sock in socks:
            sock.close()


def test_ready_after_a_reload_means_every_worker_has_the_new_rules(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    listener, path = notify_socket
    root = tmp_path / "root"
    root.mkdir()
    (root / "boot.bin").write_bytes(BOOT)
    rules = tmp_path / "rules"
    rules.write_text("r ^nothing$ x\n")
    port = free_udp_port()
    argv = [script("ptftpd"), "-v", "--workers", "2", "-p", str(port), "--map-file", str(rules)]
    env = {**os.environ, "NOTIFY_SOCKET": path}
    server = Process([*argv, "127.0.0.1", str(root)], tmp_path / "ptftpd.log", env=env)
    try:
        assert listener.recv(4096) == b"READY=1"
        wait_udp_bound(port, proc=server.proc)
        assert len(workers_of(server.pid, 2)) == 2
        before = first_replies(port, 80)
        assert all(isinstance(r, Data) for r in before), before  # the old rules serve it
        for _ in range(3):  # a few reloads: the race is narrow, each is a new chance
            rules.write_text("a ^boot\\.bin$ refused-by-the-new-rules\n")
            os.kill(server.pid, signal.SIGHUP)
            assert listener.recv(4096).startswith(b"RELOADING=1")
            assert listener.recv(4096) == b"READY=1"
            after = first_replies(port, 80)
            old = [r for r in after if not isinstance(r, Error)]
            assert not old, f"{len(old)} of 80 requests right after READY met the old rules"
            assert {r.message for r in after if isinstance(r, Error)} == {
                "refused-by-the-new-rules"
            }
            rules.write_text("r ^nothing$ x\n")
            os.kill(server.pid, signal.SIGHUP)
            assert listener.recv(4096).startswith(b"RELOADING=1")
            assert listener.recv(4096) == b"READY=1"
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.output()


def holder_of(pids: list[int], port: int) -> list[int]:
    """The worker whose socket has local port `port` (a transfer's TID)."""
    return [
        pid
        for pid in pids
        if any(c.laddr.port == port for c in psutil.Process(pid).net_connections("udp"))
    ]


def test_a_killed_workers_sessions_no_longer_count_against_max_sessions(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "boot.bin").write_bytes(BOOT)
    port = free_udp_port()
    argv = [script("ptftpd"), "-v", "--workers", "2", "-p", str(port)]
    argv += ["--max-sessions", "1", "--timeout", "20"]  # a transfer left hanging lasts
    server = Process([*argv, "127.0.0.1", str(root)], tmp_path / "ptftpd.log")
    hanging = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        wait_udp_bound(port, proc=server.proc)
        pids = workers_of(server.pid, 2)
        assert len(pids) == 2
        # One transfer, never ACKed: the one session the limit allows.
        hanging.bind(("127.0.0.10", 0))
        hanging.settimeout(10)
        hanging.sendto(Request(Opcode.RRQ, "boot.bin", "octet").encode(), ("127.0.0.1", port))
        data, tid = hanging.recvfrom(65536)
        assert isinstance(decode(data), Data)
        busy = first_replies(port, 4)
        assert all(isinstance(r, Error) and "busy" in r.message for r in busy), busy
        holder = holder_of(pids, tid[1])
        assert len(holder) == 1, (pids, tid)
        os.kill(holder[0], signal.SIGKILL)
        deadline = time.monotonic() + 20
        now = pids
        while time.monotonic() < deadline:
            now = workers_of(server.pid, 2, timeout=0.1)
            if len(now) == 2 and holder[0] not in now:
                break
            time.sleep(0.05)
        assert len(now) == 2 and holder[0] not in now, server.output()
        # Well before the hanging transfer would have timed out (20 s x 6): served.
        replies = []
        for _ in range(50):  # until the restarted worker serves (bounded)
            replies = first_replies(port, 1)
            if isinstance(replies[0], Data):
                break
            time.sleep(0.1)
        assert isinstance(replies[0], Data), (replies, server.output()[-2000:])
    finally:
        hanging.close()
        assert server.stop() == 0


def test_the_reload_line_names_how_many_workers_applied_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The parent's one reload line (ptftpd and pxed --workers share it): "(2 workers)"
    at INFO once both serve the reload's generation, else a warning naming "1 of 2"."""
    pool = TftpWorkers(ServerConfig(root=tmp_path), ["127.0.0.1"], 0, 2)
    try:
        pool.pids = {101: 0, 102: 1}  # the parent's view: worker index per PID
        generation = pool.counters.new_generation()
        pool.counters.serving(0)  # worker 0 applied it, worker 1 not yet
        with caplog.at_level(logging.INFO, logger="ptftpd.service"):
            pool.announce_reloaded("TFTP max sessions 1", generation)
            pool.counters.serving(1)
            pool.announce_reloaded("TFTP max sessions 1", generation)
    finally:
        pool.pids = {}
        pool.counters.close()
    said = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert said == [
        ("ptftpd.service", logging.WARNING,
         "reloaded: TFTP max sessions 1; not every worker answered in time (1 of 2 workers)"),
        ("ptftpd.service", logging.INFO, "reloaded: TFTP max sessions 1 (2 workers)"),
    ], said  # fmt: skip
