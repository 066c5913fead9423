"""pxed --workers 2 over real sockets: TFTP served by two worker processes while the
parent keeps proxyDHCP, 4011 and the boot log. Scripted PXE client (pxe_probe.py) and
tftp-hpa in a peer namespace; no QEMU (tests/pxe/test_pxe_boot.py boots QEMU with it).

Each test names what it shows: both workers serve and the metrics sum exactly; a killed
worker is restarted and pxed keeps serving; --user nobody leaves no privilege in any
process; SIGTERM mid-transfer drains and exits 0; a refused request fails the boot."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from pxe_harness import BootNetwork, boot_network
from test_pxe_metrics import scrape
from test_pxe_sockets import PROBE, probe

from dhcp.dhcplab import wait_for
from support import Netns, Process, free_udp_port, require_tool, script, wait_udp_bound

pytestmark = [pytest.mark.netns, pytest.mark.timeout(180)]

MAC = "52:54:00:aa:03:01"
BOOT = b"ipxe" * 2500  # 10000 bytes
SLOW_TFTP = Path(__file__).parents[1] / "service"


def make_root(root: Path) -> None:
    root.mkdir()
    (root / "default.0").write_bytes(b"boot")
    (root / "ipxe.efi").write_bytes(BOOT)


def start_pxed(net: BootNetwork, tmp: Path, *extra: str) -> Process:
    argv = [script("pxed"), "-v", "--proxy", "--workers", "2", "--boot-idle", "1",
            "--efi64-bootfile", "ipxe.efi", "--leases", str(tmp / "leases.sqlite"), *extra,
            net.bridge, str(tmp / "root"), "default.0"]  # fmt: skip
    pxed = net.start(argv, "pxed")
    wait_udp_bound(4011, timeout=15, proc=pxed.proc, netns=net.ns.name)
    # Every worker forked (they serve soon after). --workers 1 serves TFTP in pxed's
    # own process: no worker to wait for (waiting for 2 took the whole 20 s bound).
    workers = int(extra[extra.index("--workers") + 1]) if "--workers" in extra else 2
    workers_of(pxed.pid, workers if workers > 1 else 0)
    return pxed


def workers_of(pid: int, count: int = 2, timeout: float = 20.0) -> list[int]:
    """The PIDs of pxed's `count` TFTP workers (bounded wait)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = sorted(child.pid for child in psutil.Process(pid).children())
        if len(pids) == count or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


def served_by(log: str) -> set[str]:
    """Which workers logged a finished transfer ("[worker 1] ... RRQ ...")."""
    return set(re.findall(r"\[(worker \d+)\] ptftpd\.tftp\.server INFO: \S+ RRQ ", log))


def boot(client: Netns) -> None:
    """The x64 UEFI firmware's proxyDHCP and 4011 exchanges (the file comes next)."""
    [offer] = probe(client, "discover", "--mac", MAC, "--arch", "7")
    assert offer["type"] == "OFFER" and offer["file"] == "ipxe.efi"
    [ack] = probe(client, "bootserver", "--mac", MAC, "--arch", "7", "--ciaddr", "10.78.0.50")
    assert ack["type"] == "ACK" and ack["file"] == "ipxe.efi"


def download(client: Netns, work: Path, count: int, name: str = "ipxe.efi") -> None:
    """`count` tftp-hpa downloads, each from its own source port (the kernel spreads
    requests over the SO_REUSEPORT sockets by the client's address and port)."""
    tftp = require_tool("tftp")
    work.mkdir(exist_ok=True)
    gets = " && ".join(
        f"{tftp} 10.78.0.1 -m octet -c get {name} {name}.{i}" for i in range(count)
    )
    subprocess.run(client.popen_argv(["sh", "-c", f"cd {work} && {gets}"]), check=True,
                   timeout=120)  # fmt: skip
    for i in range(count):
        assert (work / f"{name}.{i}").read_bytes() == BOOT


def test_two_workers_serve_one_boot_log_and_exact_metrics(tmp_path: Path) -> None:
    curl = require_tool("curl")
    assert PROBE.is_file()
    make_root(tmp_path / "root")
    downloads = 16  # all on one worker: 2 x 2**-16
    with boot_network(tmp_path) as net:
        client = net.peer("10.78.0.50")
        mport = free_udp_port()
        pxed = start_pxed(net, tmp_path, "--metrics", f"127.0.0.1:{mport}")

        def metrics() -> dict[str, float]:
            return scrape(net.ns.run(curl, "-sf", f"http://127.0.0.1:{mport}/metrics").stdout)

        boot(client)
        download(client, tmp_path / "client", downloads)
        done = 'ptftpd_pxe_boots_total{arch="efi-x64",outcome="completed"}'
        wait_for(lambda: done in metrics(), 20, "the boot to be counted")
        counts = metrics()
        read = '{direction="read"}'
        tftp_counts = {k: v for k, v in counts.items() if k.startswith("ptftpd_tftp_")}
        assert tftp_counts == {
            f"ptftpd_tftp_transfers_started_total{read}": downloads,
            f"ptftpd_tftp_transfers_completed_total{read}": downloads,
            "ptftpd_tftp_sent_bytes_total": downloads * len(BOOT),
            "ptftpd_tftp_received_bytes_total": 0,
            "ptftpd_tftp_active_sessions": 0,
            f"ptftpd_tftp_transfer_duration_seconds_count{read}": downloads,
            "ptftpd_tftp_requests_dropped_total": 0,
        }
        assert counts[done] == 1
        assert counts['ptftpd_dhcp_messages_total{direction="out",type="ack"}'] == 1
        assert pxed.stop() == 0
        log = pxed.output()
    assert served_by(log) == {"worker 0", "worker 1"}, log
    line = f"boot {MAC} arch=EFI x64: completed: served ipxe.efi over tftp"
    assert line in log, log
    assert "Traceback" not in log


def test_a_killed_worker_is_restarted_and_pxed_keeps_serving(tmp_path: Path) -> None:
    make_root(tmp_path / "root")
    with boot_network(tmp_path) as net:
        client = net.peer("10.78.0.50")
        pxed = start_pxed(net, tmp_path)
        before = workers_of(pxed.pid)
        assert len(before) == 2, pxed.output()
        os.kill(before[0], signal.SIGKILL)  # a worker pxed started, by its PID
        wait_for(lambda: "restarting it" in pxed.output(), 20, "the worker's restart")
        wait_for(
            lambda: len(set(workers_of(pxed.pid, timeout=0)) - {before[0]}) == 2,
            20,
            "a new worker",
        )
        after = workers_of(pxed.pid)
        assert before[0] not in after and before[1] in after
        boot(client)
        download(client, tmp_path / "client", 8)
        assert pxed.proc.poll() is None
        assert pxed.stop() == 0
        log = pxed.output()
    killed = rf"worker \d \(pid {before[0]}\) ended with signal 9: restarting it"
    assert re.search(killed, log), log
    assert "Traceback" not in log


def test_as_nobody_every_process_is_nobody_with_no_capability(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody").pw_uid
    # ROOT where every user can reach it (pytest's tmp_path is root-only)
    shared = Path(tempfile.mkdtemp(prefix="ptftpd-pxe-"))
    shared.chmod(0o755)
    make_root(shared / "root")
    try:
        _serve_as_nobody(tmp_path, shared, nobody)
    finally:
        shutil.rmtree(shared)


def _serve_as_nobody(tmp_path: Path, shared: Path, nobody: int) -> None:
    with boot_network(tmp_path) as net:
        client = net.peer("10.78.0.50")
        pxed = start_pxed(net, shared, "--user", "nobody")
        children = workers_of(pxed.pid)
        assert len(children) == 2, pxed.output()
        # the drop happens after binding: wait for the parent to have made it
        wait_for(lambda: _uids(pxed.pid) == [str(nobody)] * 4, 20, "pxed to run as nobody")
        for pid in (pxed.pid, *children):
            fields = _status(pid)
            assert fields["Uid"].split() == [str(nobody)] * 4, (pid, fields["Uid"])
            assert int(fields["CapEff"], 16) == 0, (pid, fields["CapEff"])
            assert int(fields["CapPrm"], 16) == 0, (pid, fields["CapPrm"])
        boot(client)
        download(client, tmp_path / "client", 4)
        assert pxed.stop() == 0
        log = pxed.output()
    assert served_by(log), log


def _status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def _uids(pid: int) -> list[str]:
    return _status(pid)["Uid"].split()


def test_sigterm_mid_transfer_drains_and_exits_0(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_root(root)
    big = bytes(range(256)) * 200  # 51200 bytes: 101 blocks of 512
    (root / "big.bin").write_bytes(big)
    with boot_network(tmp_path) as net:
        client = net.peer("10.78.0.50")
        pxed = start_pxed(net, tmp_path, "--drain", "30")
        # A slow RFC 1350 reader (ACKs every 0.05 s: about 5 s for the file).
        code = (
            f"import sys; sys.path.insert(0, {str(SLOW_TFTP)!r}); import slow_tftp\n"
            "r = slow_tftp.read('10.78.0.1', 69, 'big.bin', delay=0.05,"
            " on_block=lambda n: n == 5 and print('started', flush=True))\n"
            "sys.stdout.buffer.write(r.data); sys.exit(1 if r.error else 0)\n"
        )
        reader = subprocess.Popen(
            client.popen_argv([sys.executable, "-c", code]), stdout=subprocess.PIPE
        )
        try:
            assert reader.stdout is not None
            assert reader.stdout.readline() == b"started\n"
            pxed.proc.send_signal(signal.SIGTERM)
            out, _ = reader.communicate(timeout=60)
        finally:
            if reader.poll() is None:
                reader.kill()
                reader.wait(5)
        assert reader.returncode == 0
        assert out == big
        assert pxed.proc.wait(40) == 0
        log = pxed.output()
    assert re.search(r"\[worker \d\] ptftpd\.tftp\.server INFO: \S+ RRQ 'big\.bin'", log), log
    assert "Traceback" not in log


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_refused_request_is_a_failed_boot(tmp_path: Path, workers: str) -> None:
    make_root(tmp_path / "root")
    tftp = require_tool("tftp")
    with boot_network(tmp_path) as net:
        client = net.peer("10.78.0.50")
        pxed = start_pxed(net, tmp_path, "--workers", workers)
        boot(client)
        work = tmp_path / "client"
        work.mkdir()
        get = f"cd {work} && {tftp} 10.78.0.1 -m octet -c get missing.efi"
        subprocess.run(client.popen_argv(["sh", "-c", get]), timeout=30, check=False)
        line = f"boot {MAC} arch=EFI x64: failed"
        wait_for(lambda: line in pxed.output(), 20, "the boot's line")
        assert pxed.stop() == 0
        log = pxed.output()
    [entry] = [x for x in log.splitlines() if f"boot {MAC} " in x]
    assert "missing.efi" in entry and "refused" in entry, entry


def test_a_root_the_user_cannot_read_is_one_error_line(tmp_path: Path) -> None:
    """ROOT that --user cannot reach (pytest's tmp_path is root-only): the workers could
    not serve it, so pxed says so in one line and exits 1 instead of serving DHCP
    without TFTP."""
    make_root(tmp_path / "root")
    with boot_network(tmp_path) as net:
        argv = [script("pxed"), "--proxy", "--workers", "2", "--user", "nobody",
                net.bridge, str(tmp_path / "root"), "default.0"]  # fmt: skip
        pxed = net.start(argv, "pxed")
        assert pxed.proc.wait(60) == 1
        log = pxed.output()
    assert log == f"pxed: error: ROOT {tmp_path / 'root'} cannot be read by user nobody\n", log


def test_sighup_gives_every_worker_the_new_limit_which_holds_across_them(
    tmp_path: Path,
) -> None:
    """max-sessions = 1 after a reload: while one slow transfer runs in some worker, a
    second request (another source port: either worker) is refused "server busy"."""
    root = tmp_path / "root"
    make_root(root)
    big = bytes(range(256)) * 60  # 15360 bytes: 31 blocks of 512
    (root / "big.bin").write_bytes(big)
    config = tmp_path / "pxed.toml"
    config.write_text("max-sessions = 8\n")
    with boot_network(tmp_path) as net:
        client = net.peer("10.78.0.50")
        pxed = start_pxed(net, tmp_path, "--config", str(config), "-D")
        config.write_text("max-sessions = 1\n")
        pxed.proc.send_signal(signal.SIGHUP)
        # a worker's reload line is debug (issue 24: the parent says it once, at -v)
        reloaded = r"\[worker (\d)\] ptftpd\.service DEBUG: reloaded: TFTP max sessions 1"
        try:
            wait_for(
                lambda: set(re.findall(reloaded, pxed.output())) == {"0", "1"},
                20,
                "both workers to reload",
            )
        except AssertionError as exc:
            raise AssertionError(pxed.output()) from exc
        code = (
            f"import sys; sys.path.insert(0, {str(SLOW_TFTP)!r}); import slow_tftp\n"
            "def second(n):\n"
            "    if n == 3:\n"
            "        r = slow_tftp.read('10.78.0.1', 69, 'ipxe.efi')\n"
            "        print(r.error, flush=True)\n"
            "r = slow_tftp.read('10.78.0.1', 69, 'big.bin', delay=0.1, on_block=second)\n"
            "print(len(r.data), r.error, flush=True)\n"
        )
        done = subprocess.run(
            client.popen_argv([sys.executable, "-c", code]),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert done.stdout.splitlines() == ["(0, 'server busy, try again')", "15360 None"]
        netns = os.stat(f"/run/netns/{net.ns.name}").st_ino
        locks = f"ptftpd-udp-net{netns}-10.78.0.1-69.lock"  # inodes are reused: exact name
        assert list(Path("/run/lock").glob(locks)), "the TFTP port's lock while serving"
        assert pxed.stop() == 0
        log = pxed.output()
        assert not list(Path("/run/lock").glob(locks)), "lock files removed at exit"
    assert "reloaded: " in log and "TFTP max sessions 1" in log, log
    # one "serving" line for TFTP and one "reloaded" line for the service, not per worker
    info = [line for line in log.splitlines() if " INFO: " in line]
    serving = [line for line in info if "INFO: serving " in line and " port 69" in line]
    assert len(serving) == 1 and serving[0].endswith("(2 workers)"), info
    assert "[worker" not in serving[0], serving
    # the parent's one reload line names how many workers applied it, said after they did
    parent = [line for line in info if "reloaded: " in line]
    assert len(parent) == 1 and "[worker" not in parent[0], info
    assert re.search(r" ptftpd\.service INFO: reloaded: boot files \S.*; "
                     r"TFTP max sessions 1 \(2 workers\)$", parent[0]), parent  # fmt: skip
    lines = log.splitlines()
    workers_said = [i for i, line in enumerate(lines) if re.search(reloaded, line)]
    assert len(workers_said) == 2 and max(workers_said) < lines.index(parent[0]), lines


def test_a_stop_during_a_reload_says_how_many_workers_applied_it(tmp_path: Path) -> None:
    """One worker stopped (SIGSTOP) cannot apply a reload: the parent's line waits for it
    (bounded, 30 s), and a SIGTERM meanwhile says the line at once, naming 1 of 2."""
    make_root(tmp_path / "root")
    config = tmp_path / "pxed.toml"
    config.write_text("max-sessions = 8\n")
    with boot_network(tmp_path) as net:
        pxed = start_pxed(net, tmp_path, "--config", str(config))
        wait_for(lambda: "(2 workers)" in pxed.output(), 20, "both workers to serve")
        frozen = workers_of(pxed.pid)[0]  # pxed's own worker, by PID
        os.kill(frozen, signal.SIGSTOP)
        try:
            config.write_text("max-sessions = 1\n")
            pxed.proc.send_signal(signal.SIGHUP)
            time.sleep(1.5)
            assert "reloaded: " not in pxed.output(), "said before the workers applied it"
            pxed.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: "reloaded: " in pxed.output(), 5, "the line at the stop")
        finally:
            os.kill(frozen, signal.SIGCONT)
        assert pxed.proc.wait(30) == 0, pxed.output()
        log = pxed.output()
    said = [line for line in log.splitlines() if "reloaded: " in line]
    assert len(said) == 1, said
    assert said[0].endswith("ptftpd.service WARNING: reloaded: boot files BOOTFILE=default.0, "
                            "--efi64-bootfile=ipxe.efi; TFTP max sessions 1; not every worker "
                            "answered in time (1 of 2 workers)"), said  # fmt: skip


def test_a_boot_whose_worker_died_mid_transfer_still_ends(tmp_path: Path) -> None:
    """Both workers killed while a slow transfer runs in one of them: the parent ends
    that transfer (cancelled) so the boot's line comes after --boot-idle, not never."""
    root = tmp_path / "root"
    make_root(root)
    (root / "big.bin").write_bytes(bytes(range(256)) * 400)  # 200 blocks of 512
    with boot_network(tmp_path) as net:
        client = net.peer("10.78.0.50")
        # --boot-idle 5: the transfer starts well within the boot (not a boot of its own)
        pxed = start_pxed(net, tmp_path, "--boot-idle", "5")
        boot(client)
        workers = workers_of(pxed.pid)
        assert len(workers) == 2, pxed.output()
        kill = ", ".join(f"os.kill({pid}, 9)" for pid in workers)  # pxed's workers, by PID
        code = (
            f"import sys, os; sys.path.insert(0, {str(SLOW_TFTP)!r}); import slow_tftp\n"
            "r = slow_tftp.read('10.78.0.1', 69, 'big.bin', delay=0.05, timeout=3,"
            f" on_block=lambda n: n == 3 and ({kill}))\n"
        )
        reader = subprocess.run(
            client.popen_argv([sys.executable, "-c", code]), capture_output=True, timeout=60
        )
        assert b"TimeoutError" in reader.stderr, reader.stderr  # its server died
        line = f"boot {MAC} arch=EFI x64: abandoned"
        wait_for(lambda: line in pxed.output(), 20, "the boot's line")
        assert pxed.proc.poll() is None
        assert pxed.stop() == 0
        log = pxed.output()
    assert log.count("ended with signal 9: restarting it") == 2, log


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process `pid` holds ("socket:[123]" -> "123")."""
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[8:-1])
    return found


def udp_inodes(pid: int, ports: set[int]) -> set[str]:
    """Inodes of the UDP sockets bound to `ports` in `pid`'s network namespace."""
    found = set()
    for table in ("udp", "udp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) in ports:
                found.add(fields[9])
    return found


def test_workers_hold_none_of_the_parents_dhcp_sockets(tmp_path: Path) -> None:
    """A worker (and a restarted one, forked while pxed serves) closes the DHCP and
    4011 sockets it inherited: they must not outlive the parent in a draining worker."""
    make_root(tmp_path / "root")
    with boot_network(tmp_path) as net:
        client = net.peer("10.78.0.50")
        pxed = start_pxed(net, tmp_path)
        boot(client)
        dhcp = udp_inodes(pxed.pid, {67, 4011})
        assert len(dhcp) >= 2 and dhcp <= socket_inodes(pxed.pid), dhcp
        first = workers_of(pxed.pid)
        os.kill(first[0], signal.SIGKILL)  # a worker pxed started, by its PID
        wait_for(
            lambda: len(set(workers_of(pxed.pid, timeout=0)) - {first[0]}) == 2,
            20,
            "a new worker",
        )
        download(client, tmp_path / "client", 4)  # every worker is serving by now
        for worker in workers_of(pxed.pid):
            assert not socket_inodes(worker) & dhcp, (worker, pxed.output())
        assert pxed.stop() == 0
