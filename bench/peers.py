"""TFTP servers to benchmark against, and the process plumbing to run them fairly.

Each peer is set up on first use in its own folder under ``bench/.work/`` (a venv for the
Python ones, an unpacked ``.deb`` for atftpd, which conflicts with tftpd-hpa as a package),
started in the foreground on 127.0.0.1, and stopped by its PID. Nothing here touches a
process it did not start.

Other benches may import this module: :func:`build_peers`, :class:`RunningServer`,
:func:`probe_options` and :func:`free_udp_port` are the useful parts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
WORK = BENCH_DIR / ".work"
OUR_VENV = REPO / ".venv"

HOST = "127.0.0.1"


class PeerUnavailable(Exception):
    """A peer that cannot be set up or started here; the reason goes in the table."""


def _run(cmd: list[str], timeout: float = 300, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(
            cmd,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PeerUnavailable(f"{' '.join(cmd[:3])}: timed out after {timeout:.0f} s") from None
    except OSError as exc:
        raise PeerUnavailable(f"{cmd[0]}: {exc.strerror}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise PeerUnavailable(f"{' '.join(cmd[:4])} failed: {' / '.join(tail)}")
    return done.stdout


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _venv(path: Path, requirement: str, check_import: str) -> Path:
    """A venv at `path` with `requirement` installed (once); returns its bin folder."""
    python = path / "bin" / "python"
    marker = path / ".bench-installed"
    if marker.exists() and marker.read_text() == requirement:
        return path / "bin"
    if path.exists():
        shutil.rmtree(path)
    _run([sys.executable, "-m", "venv", str(path)], timeout=120)
    _run([str(python), "-m", "pip", "install", "-q", requirement], timeout=600)
    _run([str(python), "-c", f"import {check_import}"], timeout=60)
    marker.write_text(requirement)
    return path / "bin"


# -- TFTP probing ----------------------------------------------------------------------


def _rrq(filename: str, options: dict[str, str]) -> bytes:
    parts = [filename.encode(), b"octet"]
    for name, value in options.items():
        parts += [name.encode(), value.encode()]
    return struct.pack("!H", 1) + b"".join(p + b"\0" for p in parts)


def probe_options(port: int, filename: str, options: dict[str, str], wait: float = 3.0) -> str:
    """Ask for `filename` with `options` and describe the server's first answer.

    Returns ``"oack blksize=1428 windowsize=16"``, ``"data"`` (options ignored, RFC 1350),
    ``"error N: message"`` or ``"no answer"``. The transfer is then abandoned with an
    ERROR packet, as a PXE ROM does after reading tsize.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(wait)
        sock.sendto(_rrq(filename, options), (HOST, port))
        try:
            data, addr = sock.recvfrom(70000)
        except TimeoutError:
            return "no answer"
        if len(data) < 2:
            return "malformed answer"
        opcode = struct.unpack("!H", data[:2])[0]
        if opcode == 5:
            code = struct.unpack("!H", data[2:4])[0] if len(data) >= 4 else -1
            text = data[4:].split(b"\0", 1)[0].decode("ascii", "replace")
            return f"error {code}: {text}"
        with contextlib.suppress(OSError):
            sock.sendto(struct.pack("!HH", 5, 8) + b"benchmark probe done\0", addr)
        if opcode == 3:
            return "data"
        if opcode == 6:
            fields = data[2:].split(b"\0")
            pairs = [
                f"{fields[i].decode('ascii', 'replace').lower()}="
                f"{fields[i + 1].decode('ascii', 'replace')}"
                for i in range(0, len(fields) - 1, 2)
                if fields[i]
            ]
            return "oack " + " ".join(pairs)
        return f"opcode {opcode}"


def wait_ready(port: int, proc: psutil.Process, timeout: float = 15.0) -> None:
    """Wait until the server answers a request (for a missing file) on `port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            gone = proc.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            gone = True
        if gone:
            raise PeerUnavailable("server exited at start-up")
        answer = probe_options(port, "bench-ready-probe-missing", {}, wait=0.3)
        if answer != "no answer":
            return
    raise PeerUnavailable(f"server did not answer on port {port} within {timeout:.0f} s")


# -- running servers -------------------------------------------------------------------


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return [proc]


def _vm_hwm(pid: int) -> int:
    """Peak resident set size of one process, from the kernel (bytes)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _pss(proc: psutil.Process) -> int:
    try:
        return int(getattr(proc.memory_full_info(), "pss", 0)) or proc.memory_info().rss
    except psutil.Error:
        return 0


class MemorySampler:
    """Samples a server's memory in a thread; `peak` is the largest total seen (bytes).

    The total is the main process's RSS plus the PSS of its child processes (a forking
    server's children share most pages with it; PSS counts each shared page once), and
    never less than the main process's own peak RSS (VmHWM).
    """

    def __init__(self, proc: psutil.Process, interval: float = 0.25) -> None:
        self.proc = proc
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        tree = _tree(self.proc)
        total = 0
        with contextlib.suppress(psutil.Error):
            total = self.proc.memory_info().rss
        total += sum(_pss(p) for p in tree[1:])
        self.peak = max(self.peak, total, _vm_hwm(self.proc.pid))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> MemorySampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()


CPUACCT = Path("/sys/fs/cgroup/cpuacct")


class CpuMeter:
    """CPU seconds used by a server and every process it ever forked.

    As root on a cgroup-v1 machine, the server goes into its own cpuacct group (that
    hierarchy only), which counts children even when the server ignores SIGCHLD and
    never reaps them (tftpd-hpa does: psutil's children_* times stay 0). Otherwise
    psutil's times of the process, its threads and its reaped children.
    """

    def __init__(self, name: str, proc: psutil.Process) -> None:
        self.proc = proc
        self.group: Path | None = None
        usage = CPUACCT / "cpuacct.usage"
        if os.geteuid() == 0 and usage.exists():
            group = CPUACCT / f"ptftpd-bench-{os.getpid()}-{name}"
            try:
                group.mkdir(exist_ok=True)
                (group / "cgroup.procs").write_text(str(proc.pid))
                self.group = group
            except OSError:
                with contextlib.suppress(OSError):
                    group.rmdir()

    @property
    def method(self) -> str:
        return "cgroup cpuacct" if self.group else "psutil"

    def seconds(self) -> float:
        if self.group is not None:
            return int((self.group / "cpuacct.usage").read_text()) / 1e9
        t = self.proc.cpu_times()
        return float(t.user + t.system + t.children_user + t.children_system)

    def close(self) -> None:
        if self.group is None:
            return
        for _ in range(50):  # the group empties once every member has exited
            try:
                self.group.rmdir()
                break
            except OSError:
                time.sleep(0.1)
        self.group = None


@dataclass
class RunningServer:
    """A started server: its Popen, psutil handle and port."""

    peer: Peer
    popen: subprocess.Popen[bytes]
    proc: psutil.Process
    port: int
    log_path: Path
    cpu: CpuMeter
    _seen: dict[int, psutil.Process] = field(default_factory=dict)

    def _note_children(self) -> list[psutil.Process]:
        try:
            kids: list[psutil.Process] = self.proc.children(recursive=True)
        except psutil.Error:
            return []
        for kid in kids:
            self._seen.setdefault(kid.pid, kid)
        return kids

    def cpu_seconds(self) -> float:
        """User + system CPU of the server, its threads and its children so far."""
        return self.cpu.seconds()

    def quiesce(self, timeout: float = 5.0) -> None:
        """Wait (bounded) until the server has no child processes left (forking servers)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._note_children():
                return
            time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server, then any child it left behind, each by its PID."""
        self._note_children()
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        for child in self._seen.values():
            # is_running() also checks the start time, so a reused PID is never hit
            with contextlib.suppress(psutil.Error):
                if child.is_running():
                    child.kill()
        self.cpu.close()


class Peer:
    """One TFTP server implementation."""

    name = "peer"
    label = "peer"
    fixed_port: int | None = None
    notes: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.version = "?"
        self.unavailable: str | None = None

    def setup(self) -> None:
        """Install the peer under bench/.work/ if needed; raise PeerUnavailable if not possible."""

    def command(self, root: Path, port: int) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        return None

    @contextlib.contextmanager
    def running(self, root: Path, logs: Path, cpu: int | None = None) -> Iterator[RunningServer]:
        """Start the server (pinned to `cpu`, threads and children included, if given)."""
        if self.unavailable:
            raise PeerUnavailable(self.unavailable)
        port = self.fixed_port or free_udp_port()
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{self.name}.log"
        with open(log_path, "ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} start on port {port}\n".encode())
            log.flush()
            pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
            popen = subprocess.Popen(
                [*pin, *self.command(root, port)],
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        proc = psutil.Process(popen.pid)
        server = RunningServer(self, popen, proc, port, log_path, CpuMeter(self.name, proc))
        try:
            try:
                wait_ready(port, server.proc)
            except PeerUnavailable as exc:
                rc = popen.poll()
                tail = log_path.read_text(errors="replace").strip().splitlines()[-1:]
                detail = f" (exit {rc})" if rc is not None else ""
                detail += f": {tail[0]}" if tail and not tail[0].startswith("---") else ""
                raise PeerUnavailable(f"{exc}{detail}") from None
            yield server
        finally:
            server.stop()


class OurPtftpd(Peer):
    name = "ptftpd"
    label = "ptftpd (this repo)"

    def setup(self) -> None:
        exe = OUR_VENV / "bin" / "ptftpd"
        if not exe.exists():
            raise PeerUnavailable(f"{exe} missing: run `pip install -e .[test]` in .venv")
        described = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty=+dirty"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        self.version = f"git {described or '?'}"

    workers = 1

    def command(self, root: Path, port: int) -> list[str]:
        exe = str(OUR_VENV / "bin" / "ptftpd")
        return [exe, "--workers", str(self.workers), "-p", str(port), HOST, str(root)]


class OurPtftpdWorkers(OurPtftpd):
    """The same ptftpd with two worker processes sharing the port (SO_REUSEPORT)."""

    name = "ptftpd-w2"
    label = "ptftpd --workers 2"
    notes = ("two worker processes; CPU and memory include both and the parent",)
    workers = 2


class AltPtftpd(Peer):
    """ptftpd from another source tree (e.g. a proposed change), run with our venv."""

    name = "ptftpd-alt"

    def __init__(self, src: Path) -> None:
        super().__init__()
        self.src = src.resolve()
        self.label = f"ptftpd ({self.src})"
        self.notes = (f"`python -m ptftpd.cli.ptftpd` with PYTHONPATH={self.src}",)

    def setup(self) -> None:
        if not (self.src / "ptftpd" / "cli" / "ptftpd.py").exists():
            raise PeerUnavailable(f"{self.src} holds no ptftpd/cli/ptftpd.py")
        self.version = "alternative tree"

    def command(self, root: Path, port: int) -> list[str]:
        code = "import sys; from ptftpd.cli.ptftpd import main; sys.exit(main())"
        python = str(OUR_VENV / "bin" / "python")
        # Compare like with like: one worker, if this tree has the flag at all (it moved
        # from cli/ptftpd.py to the settings model, so look at every module).
        single = ["--workers", "1"] if self._knows("--workers") else []
        return [python, "-c", code, *single, "-p", str(port), HOST, str(root)]

    def _knows(self, flag: str) -> bool:
        """Whether any module of the tree mentions `flag`."""
        return any(flag in path.read_text(errors="replace") for path in self.src.rglob("*.py"))

    def environment(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.src)}


class TftpdHpa(Peer):
    name = "tftpd-hpa"
    label = "tftpd-hpa"
    notes = ("forks one process per transfer; CPU and RSS include the children",)

    def setup(self) -> None:
        if not Path("/usr/sbin/in.tftpd").exists():
            raise PeerUnavailable("/usr/sbin/in.tftpd not installed (apt-get install tftpd-hpa)")
        out = subprocess.run(
            ["/usr/sbin/in.tftpd", "-V"], capture_output=True, text=True, check=False
        )
        self.version = (out.stdout or out.stderr).split(",")[0].strip()

    def command(self, root: Path, port: int) -> list[str]:
        return ["/usr/sbin/in.tftpd", "-L", "-s", str(root), "-a", f"{HOST}:{port}"]


class Atftpd(Peer):
    name = "atftpd"
    label = "atftpd"
    notes = ("run with -m 256 (its default of 100 threads would refuse the 100th client)",)

    def __init__(self) -> None:
        super().__init__()
        self.folder = WORK / "atftpd"
        self.binary = self.folder / "root" / "usr" / "sbin" / "atftpd"

    def setup(self) -> None:
        if not self.binary.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            for deb in self.folder.glob("*.deb"):
                deb.unlink()
            try:
                _run(["apt-get", "download", "atftpd"], cwd=self.folder, timeout=180)
            except PeerUnavailable:
                _run(["apt-get", "update"], timeout=300)
                _run(["apt-get", "download", "atftpd"], cwd=self.folder, timeout=180)
            debs = sorted(self.folder.glob("atftpd_*.deb"))
            if not debs:
                raise PeerUnavailable("apt-get download atftpd produced no .deb")
            _run(["dpkg", "-x", str(debs[-1]), str(self.folder / "root")])
        debs = sorted(self.folder.glob("atftpd_*.deb"))
        self.version = debs[-1].name.split("_")[1] if debs else "?"

    def command(self, root: Path, port: int) -> list[str]:
        user = ["--user", "nobody", "--group", "nogroup"] if os.geteuid() == 0 else []
        return [
            str(self.binary),
            "--daemon",
            "--no-fork",
            "--port",
            str(port),
            "--bind-address",
            HOST,
            "--maxthread",
            "256",
            "--logfile",
            "/dev/null",
            *user,
            str(root),
        ]


class OriginalPtftpd(Peer):
    name = "ptftpd-1.3"
    label = "ptftpd 1.3 (PyPI)"
    notes = (
        "unmodified PyPI release in its own venv, `ptftpd -p PORT lo ROOT` (it takes an "
        "interface name); it runs on Python 3.11",
        "with any option it answers ERROR 0 'Server error': every RRQ with options runs the "
        "BSD-only `sysctl -n net.inet.udp.maxdgram`, which fails on Linux (its log shows it)",
        "without options its block counter stops at 65535: 512-byte transfers end at "
        "33,553,920 bytes (ERROR 4 'Illegal TFTP operation')",
    )

    def __init__(self) -> None:
        super().__init__()
        self.folder = WORK / "ptftpd13"

    def setup(self) -> None:
        _venv(self.folder, "ptftpd==1.3", "ptftplib.tftpserver")
        self.version = "1.3"

    def command(self, root: Path, port: int) -> list[str]:
        # 1.3 takes an interface name and listens on its first IPv4 address.
        return [str(self.folder / "bin" / "ptftpd"), "-p", str(port), "lo", str(root)]


class PyTftp(Peer):
    name = "pytftp"
    label = "tftp 0.2.1 (PyPI)"
    notes = ("PyPI `tftp` package's server, `pytftp serve` from tftp[cli]",)

    def __init__(self) -> None:
        super().__init__()
        self.folder = WORK / "pytftp"

    def setup(self) -> None:
        _venv(self.folder, "tftp[cli]==0.2.1", "tftp")
        self.version = "0.2.1"

    def command(self, root: Path, port: int) -> list[str]:
        return [
            str(self.folder / "bin" / "pytftp"),
            "serve",
            "--listen",
            f"{HOST}:{port}",
            "--port",
            str(port),
            str(root),
        ]


class Dnsmasq(Peer):
    name = "dnsmasq"
    label = "dnsmasq TFTP"
    fixed_port = 69
    notes = (
        "listens on port 69 only: run as root inside a network namespace; "
        "--tftp-max=256 (default 50)",
    )

    def setup(self) -> None:
        exe = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        if not Path(exe).exists():
            raise PeerUnavailable("dnsmasq not installed (apt-get install dnsmasq-base)")
        self.exe = exe
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
        first = out.stdout.splitlines()[0] if out.stdout else "?"
        self.version = first.replace("Dnsmasq version ", "").split()[0]
        if os.geteuid() != 0:
            raise PeerUnavailable("needs root for port 69")

    def command(self, root: Path, port: int) -> list[str]:
        return [
            self.exe,
            "--no-daemon",
            "--conf-file=/dev/null",
            "--port=0",
            "--enable-tftp",
            f"--tftp-root={root}",
            f"--listen-address={HOST}",
            "--bind-interfaces",
            "--tftp-max=256",
        ]


PEER_CLASSES: tuple[type[Peer], ...] = (
    OurPtftpd,
    OurPtftpdWorkers,
    TftpdHpa,
    Atftpd,
    OriginalPtftpd,
    PyTftp,
    Dnsmasq,
)


def build_peers(names: list[str] | None = None, alt_src: Path | None = None) -> list[Peer]:
    """Every peer (or those named), plus ptftpd-alt when an alternative tree is given."""
    peers: list[Peer] = [cls() for cls in PEER_CLASSES]
    if names:
        wanted = set(names)
        peers = [p for p in peers if p.name in wanted]
    if alt_src is not None:
        peers.insert(1 if peers and peers[0].name == "ptftpd" else 0, AltPtftpd(alt_src))
    return peers
