"""ptftpd as a service, as a real process: --user, capabilities, sd_notify, drain, reload,
metrics, the tftpd-hpa knobs and never stealing a port.

Port 69 tests run in a network namespace of their own; the others on loopback ports.
Where the life cycle applies to both forms, a test runs over --workers 1 (one process)
and --workers 2 (a parent supervising two workers that share the port).
"""

from __future__ import annotations

import os
import pwd
import re
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import slow_tftp

from ptftpd.service.workers import lock_path
from service.proc_status import status_fields, threads
from service.test_metrics import scrape
from support import (
    Netns,
    Process,
    free_udp_port,
    require_root,
    require_tool,
    script,
    wait_udp_bound,
    wait_udp_free,
    world_readable_dir,
)

FILE = bytes(range(256)) * 200 + b"tail"  # 51204 bytes: 101 blocks of 512
# The kernel's last ephemeral port: a --port-range above it meets no other client socket.
EPHEMERAL_END = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[1])
WORKERS = pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-workers"])


@pytest.fixture
def root() -> Iterator[Path]:
    """A served directory every user can reach (pytest's tmp_path is root-only)."""
    with world_readable_dir("ptftpd-svc-") as folder:
        (folder / "boot.bin").write_bytes(FILE)
        (folder / "boot.bin").chmod(0o644)
        yield folder


def tftp_hpa(ns: Netns | None, port: int, *command: str, cwd: Path) -> str:
    """tftp-hpa's client, one command, in `ns` (or here); its output (errors included)."""
    tftp = require_tool("tftp")
    argv = [tftp, "127.0.0.1", str(port), "-m", "octet", "-c", *command]
    if ns is not None:
        argv = ns.popen_argv(argv)
    res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60)
    return res.stdout + res.stderr


def ptftpd(root: Path, *args: str, log: Path, workers: int = 1, **kw: object) -> Process:
    argv = [script("ptftpd"), "-v", "--workers", str(workers), *args, "127.0.0.1", str(root)]
    return Process(argv, log, **kw)


def workers_of(pid: int, count: int, timeout: float = 20.0) -> list[int]:
    """The PIDs of `pid`'s `count` workers (none for --workers 1), bounded wait."""
    if count == 1:
        count = 0
    deadline = time.monotonic() + timeout
    while True:
        pids = [child.pid for child in psutil.Process(pid).children()]
        if len(pids) == count or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


def served_by(log: str) -> set[str]:
    """Which workers logged a finished transfer ("[worker 1] ... RRQ ...")."""
    return set(re.findall(r"\[(worker \d+)\] ptftpd\.tftp\.server INFO: \S+ [RW]RQ ", log))


BOTH_WORKERS = {"worker 0", "worker 1"}


def reload_and_wait(server: Process, listener: socket.socket) -> None:
    """SIGHUP, then wait for the reload to be over: READY=1 after RELOADING=1 (with
    workers: once every worker has re-read its settings)."""
    server.proc.send_signal(signal.SIGHUP)
    assert listener.recv(4096).startswith(b"RELOADING=1\n")
    assert listener.recv(4096) == b"READY=1"


def until_both_workers_served(
    server: Process, download: Callable[[], None], mark: int = 0, bound: int = 40
) -> set[str]:
    """Download from new client ports until both workers have logged a transfer.

    SO_REUSEPORT hashes the client's address and port, so a fixed number of downloads
    may all land on one worker; and a worker logs a transfer just after its final ACK,
    which the client may not wait for. Bounded in downloads and time."""
    for _ in range(bound):
        if served_by(server.output()[mark:]) == BOTH_WORKERS:
            break
        download()
    deadline = time.monotonic() + 5
    while served_by(server.output()[mark:]) != BOTH_WORKERS and time.monotonic() < deadline:
        time.sleep(0.05)
    return served_by(server.output()[mark:])


@WORKERS
def test_ptftpd_as_nobody_binds_69_keeps_no_root_and_serves(
    netns: Netns,
    root: Path,
    tmp_path: Path,
    notify_socket: tuple[socket.socket, str],
    workers: int,
) -> None:
    listener, path = notify_socket
    nobody = pwd.getpwnam("nobody")
    env = {**os.environ, "NOTIFY_SOCKET": path}
    argv = [script("ptftpd"), "-v", "--workers", str(workers), "--user", "nobody"]
    os.chown(root, nobody.pw_uid, -1)  # uploads on: the operator lets USER write ROOT
    server = Process(
        netns.popen_argv([*argv, "127.0.0.1", str(root)]), tmp_path / "server.log", env=env
    )
    try:
        assert listener.recv(4096) == b"READY=1"
        wait_udp_bound(69, timeout=0.5, netns=netns.name)  # bound before READY=1
        children = workers_of(server.pid, workers)
        assert len(children) == (workers if workers > 1 else 0), server.output()
        for pid in (server.pid, *children):  # the parent and every worker
            fields = status_fields(pid)
            assert fields["Uid"].split() == [str(nobody.pw_uid)] * 4
            assert fields["Gid"].split() == [str(nobody.pw_gid)] * 4
            assert int(fields["CapEff"], 16) == 0
            assert int(fields["CapPrm"], 16) == 0
            assert fields["NoNewPrivs"] == "1"
        work = tmp_path / "client"
        work.mkdir()
        tftp_hpa(netns, 69, "get", "boot.bin", cwd=work)
        assert (work / "boot.bin").read_bytes() == FILE
        (work / "up.bin").write_bytes(FILE[::-1])
        tftp_hpa(netns, 69, "put", "up.bin", cwd=work)
        assert (root / "up.bin").read_bytes() == FILE[::-1]
        assert (root / "up.bin").stat().st_uid == nobody.pw_uid
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.output()


@WORKERS
def test_ptftpd_non_root_with_only_net_bind_service_serves_69(
    netns: Netns,
    root: Path,
    tmp_path: Path,
    notify_socket: tuple[socket.socket, str],
    workers: int,
) -> None:
    setpriv = require_tool("setpriv")
    listener, path = notify_socket
    nobody = pwd.getpwnam("nobody")
    prefix = [
        setpriv,
        f"--reuid={nobody.pw_uid}",
        f"--regid={nobody.pw_gid}",
        "--clear-groups",
        "--inh-caps=+net_bind_service",
        "--ambient-caps=+net_bind_service",
    ]
    argv = [*prefix, script("ptftpd"), "-v", "--workers", str(workers), "--read-only"]
    env = {**os.environ, "NOTIFY_SOCKET": path}
    server = Process(netns.popen_argv([*argv, "127.0.0.1", str(root)]), tmp_path / "s.log", env=env)
    try:
        assert listener.recv(4096) == b"READY=1"
        children = workers_of(server.pid, workers)
        for pid in (server.pid, *children):
            fields = status_fields(pid)
            assert fields["Uid"].split() == [str(nobody.pw_uid)] * 4
            assert int(fields["CapAmb"], 16) == 0
            assert int(fields["CapEff"], 16) == 0
        work = tmp_path / "client"
        work.mkdir()
        tftp_hpa(netns, 69, "get", "boot.bin", cwd=work)
        assert (work / "boot.bin").read_bytes() == FILE
    finally:
        assert server.stop() == 0


@WORKERS
def test_ready_only_once_the_port_answers_then_reloading_and_stopping(
    root: Path, tmp_path: Path, notify_socket: tuple[socket.socket, str], workers: int
) -> None:
    listener, path = notify_socket
    port = free_udp_port()
    env = {**os.environ, "NOTIFY_SOCKET": path}
    server = ptftpd(root, "-p", str(port), log=tmp_path / "s.log", workers=workers, env=env)
    try:
        assert listener.recv(4096) == b"READY=1"

        # No waiting at all: requests right after READY=1 are served, by every worker.
        def download() -> None:
            got = slow_tftp.read("127.0.0.1", port, "boot.bin", timeout=5)
            assert got.error is None and got.data == FILE

        for _ in range(4 * workers):
            download()
        if workers > 1:
            assert until_both_workers_served(server, download) == BOTH_WORKERS, server.output()
        server.proc.send_signal(signal.SIGHUP)
        reloading = listener.recv(4096).decode().split("\n")
        assert reloading[0] == "RELOADING=1" and reloading[1].startswith("MONOTONIC_USEC=")
        assert listener.recv(4096) == b"READY=1"
        assert server.proc.poll() is None
    finally:
        assert server.stop() == 0
    assert listener.recv(4096) == b"STOPPING=1"


def refused_soon(port: int) -> slow_tftp.Result:
    """A new request once stopping has reached the server (bounded: a loaded machine may
    deliver the signal late; before that a request may still be served)."""
    for _ in range(20):
        time.sleep(0.2)
        got = slow_tftp.read("127.0.0.1", port, "boot.bin", timeout=5)
        if got.error is not None:
            return got
    return got


@WORKERS
@pytest.mark.parametrize("ctrl_c", [False, True], ids=["sigterm", "ctrl-c"])
def test_sigterm_drains_a_running_transfer_and_refuses_new_ones(
    root: Path, tmp_path: Path, workers: int, ctrl_c: bool
) -> None:
    """SIGTERM to the server, or Ctrl-C (SIGINT to its whole process group, workers
    included: they leave it to the parent, which forwards one SIGTERM)."""
    port = free_udp_port()
    argv = ("-p", str(port), "--drain", "60")
    server = ptftpd(root, *argv, log=tmp_path / "s.log", workers=workers)
    wait_udp_bound(port, proc=server.proc)
    assert len(workers_of(server.pid, workers)) == (workers if workers > 1 else 0)
    refused: list[slow_tftp.Result] = []

    def at_block(n: int) -> None:
        if n == 10:
            if ctrl_c:
                os.killpg(server.pid, signal.SIGINT)  # its own session: its group only
            else:
                server.proc.send_signal(signal.SIGTERM)
            refused.append(refused_soon(port))
            # Every new client is refused, whichever worker's socket its port hashes to
            # (an idle worker that already exited must not leave an unread socket).
            refused.extend(
                slow_tftp.read("127.0.0.1", port, "boot.bin", timeout=5) for _ in range(8)
            )

    try:
        got = slow_tftp.read("127.0.0.1", port, "boot.bin", delay=0.01, on_block=at_block)
        assert got.error is None and got.data == FILE
        assert [r.error for r in refused] == [(0, "server shutting down")] * 9
        assert server.proc.wait(30) == 0
    finally:
        server.stop()
    assert "Traceback" not in server.output()
    assert "second stop signal" not in server.output()


@WORKERS
def test_stop_past_the_drain_time_sends_error_to_the_peer(
    root: Path, tmp_path: Path, workers: int
) -> None:
    port = free_udp_port()
    argv = ("-p", str(port), "--drain", "0.5")
    server = ptftpd(root, *argv, log=tmp_path / "s.log", workers=workers)
    wait_udp_bound(port, proc=server.proc)

    def at_block(n: int) -> None:
        if n == 5:
            server.proc.send_signal(signal.SIGINT)

    try:
        got = slow_tftp.read("127.0.0.1", port, "boot.bin", delay=0.05, on_block=at_block)
        assert got.error is not None, "the transfer was not ended"
        assert len(got.data) < len(FILE)
        assert server.proc.wait(30) == 0
    finally:
        server.stop()
    assert "drain time over: ending 1 running transfer(s)" in server.output()


@WORKERS
def test_sighup_rereads_the_map_file_without_dropping_a_transfer(
    root: Path, tmp_path: Path, notify_socket: tuple[socket.socket, str], workers: int
) -> None:
    """The reload is over when READY=1 follows RELOADING=1 (with workers: every worker
    has re-read the file), so the test waits for that rather than for a while."""
    listener, path = notify_socket
    (root / "other.bin").write_bytes(b"other" * 1000)
    (root / "other.bin").chmod(0o644)
    rules = tmp_path / "map"
    rules.write_text("r ^pxelinux\\.0$ boot.bin\n")
    port = free_udp_port()
    env = {**os.environ, "NOTIFY_SOCKET": path}
    argv = ("-p", str(port), "--map-file", str(rules))
    server = ptftpd(root, *argv, log=tmp_path / "s.log", workers=workers, env=env)
    assert listener.recv(4096) == b"READY=1"

    def reload() -> None:
        reload_and_wait(server, listener)

    def at_block(n: int) -> None:
        if n == 10:
            rules.write_text("r ^pxelinux\\.0$ other.bin\na ^secret\n")
            reload()

    try:
        got = slow_tftp.read("127.0.0.1", port, "pxelinux.0", delay=0.01, on_block=at_block)
        assert got.error is None and got.data == FILE
        mark = len(server.output())

        def download() -> None:
            after = slow_tftp.read("127.0.0.1", port, "pxelinux.0", timeout=5)
            assert after.error is None and after.data == b"other" * 1000
            assert slow_tftp.read("127.0.0.1", port, "secret", timeout=5).error == (
                2,
                "Access denied",
            )

        for _ in range(4 * workers):  # from new client ports
            download()
        if workers > 1:  # the new rule, applied by every worker
            assert until_both_workers_served(server, download, mark) == BOTH_WORKERS
            # READY=1 came once both had re-read the file: the parent says so in its one
            # line (the workers' are debug; one not answering in time makes it a warning).
            lines = server.output().splitlines()
            done = [i for i, line in enumerate(lines) if "reloaded: 2 rule(s)" in line]
            assert len(done) == 1, lines
            assert " INFO: " in lines[done[0]] and lines[done[0]].endswith("(2 workers)")
            assert "[worker" not in lines[done[0]]
        # A broken file is reported once and the running rules stay, in every worker.
        rules.write_text("x bad\n")
        reload()
        for _ in range(2 * workers):
            again = slow_tftp.read("127.0.0.1", port, "pxelinux.0", timeout=5)
            assert again.data == b"other" * 1000
        assert server.proc.poll() is None
    finally:
        assert server.stop() == 0
    assert server.output().count("reload failed, keeping the running settings") == 1


@WORKERS
def test_metrics_count_exactly_what_was_served(root: Path, tmp_path: Path, workers: int) -> None:
    curl = require_tool("curl")
    (root / "small.bin").write_bytes(b"x" * 1000)
    (root / "small.bin").chmod(0o644)
    port, mport = free_udp_port(), free_udp_port()
    argv = ("-p", str(port), "--metrics", f"127.0.0.1:{mport}")
    server = ptftpd(root, *argv, log=tmp_path / "s.log", workers=workers)
    wait_udp_bound(port, proc=server.proc)
    try:
        for name in ("boot.bin", "small.bin", "boot.bin"):
            assert slow_tftp.read("127.0.0.1", port, name).data == (root / name).read_bytes()
        assert slow_tftp.read("127.0.0.1", port, "absent").error is not None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # a peer that gives up
            sock.settimeout(10)
            sock.sendto(slow_tftp.rrq("boot.bin"), ("127.0.0.1", port))
            _, peer = sock.recvfrom(65536)
            sock.sendto(b"\x00\x05\x00\x00enough\x00", peer)
        deadline = time.monotonic() + 10
        text = ""
        while time.monotonic() < deadline:  # the last log line may trail its ACK
            text = subprocess.run(
                [curl, "-sf", f"http://127.0.0.1:{mport}/metrics"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
            if 'reason="peer_error"} 1.0' in text:
                break
            time.sleep(0.1)
    finally:
        assert server.stop() == 0, server.output()
    samples = dict(re.findall(r"^(ptftpd_tftp_\S+) (\S+)$", text, re.MULTILINE))
    assert samples['ptftpd_tftp_transfers_started_total{direction="read"}'] == "4.0"
    assert samples['ptftpd_tftp_transfers_completed_total{direction="read"}'] == "3.0"
    failed = 'ptftpd_tftp_transfers_failed_total{direction="read",reason="peer_error"}'
    assert samples[failed] == "1.0"
    # Bytes the peers acknowledged: the abandoned transfer adds none.
    assert float(samples["ptftpd_tftp_sent_bytes_total"]) == 2 * len(FILE) + 1000
    assert samples["ptftpd_tftp_active_sessions"] == "0.0"
    assert samples['ptftpd_tftp_transfer_duration_seconds_count{direction="read"}'] == "4.0"
    # A refused request (absent file) never started a transfer: one failure in all.
    assert sum(k.startswith("ptftpd_tftp_transfers_failed_total") for k in samples) == 1


def test_no_thread_of_the_pool_parent_takes_its_signals(root: Path, tmp_path: Path) -> None:
    """The parent of `--workers` takes SIGTERM, SIGHUP and SIGCHLD with sigwait in its
    main thread, so every other thread it has must block them: one that does not (the
    --metrics HTTP thread) takes a signal that arrives while the main thread is busy,
    and the parent never sees it (a lost SIGCHLD hung a stop until the test killed the
    server: seen once in CI). The main thread is not checked: while it waits in
    sigtimedwait, /proc shows the signals it waits for as unblocked."""
    port, mport = free_udp_port(), free_udp_port()
    argv = ("-p", str(port), "--metrics", f"127.0.0.1:{mport}")
    server = ptftpd(root, *argv, log=tmp_path / "s.log", workers=2)
    wait_udp_bound(port, proc=server.proc)
    try:
        assert len(workers_of(server.pid, 2)) == 2
        tasks = [task for task in threads(server.pid) if task != server.pid]
        assert tasks  # the metrics thread at least
        wanted = {signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGINT}
        for task in tasks:
            blocked = int(status_fields(server.pid, task)["SigBlk"], 16)
            missing = {s.name for s in wanted if not blocked >> (s - 1) & 1}
            assert not missing, (task, missing)
    finally:
        assert server.stop() == 0, server.output()


def test_port_range_and_umask(root: Path, tmp_path: Path) -> None:
    os.chmod(root, 0o777)
    port = free_udp_port()
    # Above the kernel's ephemeral ports (ip_local_port_range), where another process's
    # client socket may sit: the range must hold only what this server binds.
    low = EPHEMERAL_END + 1 + port % (65535 - EPHEMERAL_END - 1)
    argv = ("-p", str(port), "--port-range", f"{low}:{low + 1}", "--umask", "077")
    server = ptftpd(root, *argv, log=tmp_path / "s.log")
    wait_udp_bound(port, proc=server.proc)
    try:
        for _ in range(3):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(10)
                sock.sendto(slow_tftp.rrq("boot.bin"), ("127.0.0.1", port))
                _, peer = sock.recvfrom(65536)
                assert low <= peer[1] <= low + 1
                sock.sendto(b"\x00\x05\x00\x00done\x00", peer)  # end it
            # The next request needs a free port of the two: the server may read it
            # before this ERROR (both are waiting), so wait for the transfer to close.
            wait_udp_free(peer[1])
        work = tmp_path / "c"
        work.mkdir()
        (work / "up.bin").write_bytes(b"u" * 700)
        tftp_hpa(None, port, "put", "up.bin", cwd=work)
        assert (root / "up.bin").read_bytes() == b"u" * 700
        assert (root / "up.bin").stat().st_mode & 0o777 == 0o600
    finally:
        server.stop()


def test_no_create_refuses_uploads(root: Path, tmp_path: Path) -> None:
    port = free_udp_port()
    server = ptftpd(root, "-p", str(port), "--no-create", log=tmp_path / "s.log")
    wait_udp_bound(port, proc=server.proc)
    try:
        work = tmp_path / "c"
        work.mkdir()
        (work / "up.bin").write_bytes(b"u" * 700)
        out = tftp_hpa(None, port, "put", "up.bin", cwd=work)
        assert "Error code" in out
        assert not (root / "up.bin").exists()
    finally:
        server.stop()


def test_bad_map_file_is_one_line_exit_2(root: Path, tmp_path: Path) -> None:
    rules = tmp_path / "map"
    rules.write_text("r ok fine\nq what\n")
    res = subprocess.run(
        [script("ptftpd"), "-p", str(free_udp_port()), "--map-file", str(rules), "127.0.0.1",
         str(root)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and res.stderr.startswith(f"ptftpd: {rules}: line 2: ")
    assert res.stderr.endswith(" (try --help)\n")


def test_unknown_user_is_one_line_exit_2(root: Path) -> None:
    res = subprocess.run(
        [script("ptftpd"), "-p", str(free_udp_port()), "--user", "no-such-user-q", "127.0.0.1",
         str(root)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 2
    assert res.stderr == "ptftpd: error: --user: no such user 'no-such-user-q'\n"


def one_line_exit_1(argv: list[str]) -> str:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1, res.stderr
    assert res.stderr.count("\n") == 1, res.stderr
    return res.stderr


@WORKERS
def test_a_second_ptftpd_does_not_steal_the_port(root: Path, tmp_path: Path, workers: int) -> None:
    port = free_udp_port()
    first = ptftpd(root, "-p", str(port), log=tmp_path / "a.log", workers=workers)
    wait_udp_bound(port, proc=first.proc)
    try:
        second = [script("ptftpd"), "--workers", str(workers), "-p", str(port), "127.0.0.1"]
        err = one_line_exit_1([*second, str(root)])
        if workers == 1:
            assert err == f"ptftpd: error: UDP port {port} on 127.0.0.1 is already in use\n"
        else:  # the pool's lock, before its SO_REUSEPORT sockets could join the group
            assert "is already served by another ptftpd" in err
        assert slow_tftp.read("127.0.0.1", port, "boot.bin").data == FILE
    finally:
        assert first.stop() == 0


def test_ptftpd_does_not_steal_tftpd_hpa_port(root: Path, tmp_path: Path) -> None:
    in_tftpd = require_tool("in.tftpd")
    port = free_udp_port()
    argv = [in_tftpd, "-L", "-s", "-a", f"127.0.0.1:{port}", str(root)]
    if os.geteuid() == 0:
        argv[1:1] = ["-u", "nobody"]
    hpa = Process(argv, tmp_path / "hpa.log")
    wait_udp_bound(port, proc=hpa.proc)
    try:
        err = one_line_exit_1([script("ptftpd"), "-p", str(port), "127.0.0.1", str(root)])
        assert "already in use" in err
    finally:
        hpa.stop()


@WORKERS
@pytest.mark.parametrize("gap", [0.3, 0.0], ids=["apart", "back-to-back"])
def test_a_second_stop_signal_ends_transfers_at_once(
    root: Path, tmp_path: Path, workers: int, gap: float
) -> None:
    """Back to back, the parent's two orders reach a worker before it runs: they must
    not merge into one (a worker would then drain for the whole 600 s)."""
    port = free_udp_port()
    argv = ("-p", str(port), "--drain", "600")
    server = ptftpd(root, *argv, log=tmp_path / "s.log", workers=workers)
    wait_udp_bound(port, proc=server.proc)
    assert len(workers_of(server.pid, workers)) == (workers if workers > 1 else 0)

    def at_block(n: int) -> None:
        if n == 5:
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(gap)
            server.proc.send_signal(signal.SIGINT)

    try:
        got = slow_tftp.read("127.0.0.1", port, "boot.bin", delay=0.05, on_block=at_block)
        assert got.error is not None, "the transfer was not ended"
        assert server.proc.wait(30) == 0  # long before the 600 s drain
    finally:
        server.stop()
    assert "second stop signal: ending running transfers now" in server.output()


def test_metrics_with_two_workers_sum_exactly_and_survive_a_killed_worker(
    root: Path, tmp_path: Path
) -> None:
    """Counters summed over both workers (each served some), the active-sessions gauge
    forgets a worker killed with SIGKILL while it held a transfer, and the totals stay
    exact across its restart."""
    folders = set(Path(tempfile.gettempdir()).glob("ptftpd-metrics-*"))
    port, mport = free_udp_port(), free_udp_port()
    argv = ("-p", str(port), "--metrics", f"127.0.0.1:{mport}", "--timeout", "10")
    server = ptftpd(root, *argv, log=tmp_path / "s.log", workers=2)
    wait_udp_bound(port, proc=server.proc)
    completed = ("ptftpd_tftp_transfers_completed_total", (("direction", "read"),))
    sent = ("ptftpd_tftp_sent_bytes_total", ())
    active = ("ptftpd_tftp_active_sessions", ())

    def settled(count: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The scrape once `count` downloads are counted (a log line may trail the
        client's last ACK); bounded."""
        deadline = time.monotonic() + 20
        while True:
            samples = scrape(mport)
            if samples.get(completed) == count or time.monotonic() > deadline:
                return samples
            time.sleep(0.1)

    try:
        pids = workers_of(server.pid, 2)
        assert len(pids) == 2
        downloads = 0

        def download() -> None:
            nonlocal downloads
            got = slow_tftp.read("127.0.0.1", port, "boot.bin")  # a new client port each
            assert got.error is None and got.data == FILE
            downloads += 1

        assert until_both_workers_served(server, download) == BOTH_WORKERS, server.output()
        samples = settled(downloads)
        assert samples[completed] == downloads
        assert samples[sent] == downloads * len(FILE)
        assert samples[active] == 0

        # A transfer left hanging (never ACKed): one active session, in one worker.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hanging:
            hanging.settimeout(10)
            hanging.sendto(slow_tftp.rrq("boot.bin"), ("127.0.0.1", port))
            _, peer = hanging.recvfrom(65536)
            assert scrape(mport)[active] == 1
            holder = [
                pid
                for pid in pids
                if any(c.laddr.port == peer[1] for c in psutil.Process(pid).net_connections("udp"))
            ]
            assert len(holder) == 1, (pids, peer)
            os.kill(holder[0], signal.SIGKILL)
            now = pids
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                now = workers_of(server.pid, 2, timeout=0.1)
                if len(now) == 2 and holder[0] not in now:
                    break
                time.sleep(0.05)
            assert len(now) == 2 and holder[0] not in now, server.output()
        samples = scrape(mport)
        assert samples[active] == 0  # the dead worker's session no longer counts
        assert samples[completed] == downloads
        assert samples[sent] == downloads * len(FILE)
        for _ in range(4):
            got = slow_tftp.read("127.0.0.1", port, "boot.bin")
            assert got.error is None and got.data == FILE
        samples = settled(downloads + 4)
        assert samples[completed] == downloads + 4
        assert samples[sent] == (downloads + 4) * len(FILE)
        assert samples[active] == 0
    finally:
        assert server.stop() == 0, server.output()
    assert "restarting it" in server.output()
    # The private multiprocess directory is gone with the server.
    assert set(Path(tempfile.gettempdir()).glob("ptftpd-metrics-*")) <= folders


def test_pool_start_problems_are_one_line_exit_1(root: Path) -> None:
    """--metrics with workers: a busy metrics port or no place for the workers' files is
    one line and exit 1, and the request port is free again afterwards."""
    port = free_udp_port()
    argv = [script("ptftpd"), "--workers", "2", "-p", str(port)]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        mport = busy.getsockname()[1]
        err = one_line_exit_1([*argv, "--metrics", f"127.0.0.1:{mport}", "127.0.0.1", str(root)])
        assert f"cannot serve metrics on 127.0.0.1:{mport}" in err
    res = subprocess.run(
        [*argv, "--metrics", "127.0.0.1:9", "127.0.0.1", str(root)],
        env={**os.environ, "RUNTIME_DIRECTORY": "/nonexistent/run"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 1
    assert res.stderr == (
        "ptftpd: error: cannot make a metrics directory in /nonexistent/run: "
        "No such file or directory\n"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", port))  # nothing kept it


def test_a_lock_file_left_by_root_does_not_stop_a_service_user(root: Path, tmp_path: Path) -> None:
    """A pool killed with SIGKILL leaves its lock file: a pool started as root and
    killed, then one started as a service user on the same address and port (systemd
    User=/DynamicUser=) must start (a clean stop removes the file:
    tests/operator/test_lock_files.py)."""
    require_root()
    setpriv = require_tool("setpriv")
    port = free_udp_port()
    lock = Path(lock_path("127.0.0.1", port))
    existed = lock.exists()
    first = ptftpd(root, "-p", str(port), log=tmp_path / "root.log", workers=2)
    wait_udp_bound(port, proc=first.proc)
    first.stop(signal.SIGKILL)
    wait_udp_free(port)  # its workers (told by PDEATHSIG) are gone too
    assert lock.exists() and (existed or lock.stat().st_uid == 0)
    nobody = pwd.getpwnam("nobody")
    as_nobody = [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
    argv = [script("ptftpd"), "-v", "--workers", "2", "--read-only", "-p", str(port)]
    second = Process([*as_nobody, *argv, "127.0.0.1", str(root)], tmp_path / "nobody.log")
    try:
        wait_udp_bound(port, proc=second.proc)
        second.wait_output("(2 workers)", timeout=30)  # serving, signal handlers in place
        got = slow_tftp.read("127.0.0.1", port, "boot.bin")
        assert got.error is None and got.data == FILE
    finally:
        assert second.stop() == 0, second.output()
