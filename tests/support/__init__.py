"""Test support shared by every suite: real tools, real namespaces, real processes.

CI runs as root with CI=true: there a missing tool, namespace or firmware is a failure,
never a skip, so a broken CI image cannot pass by skipping everything.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def missing(reason: str) -> None:
    """Skip locally, fail in CI."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def require_tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")
    if path is None:
        missing(f"tool {name!r} is not installed")
    assert path is not None
    return path


def require_root() -> None:
    if os.geteuid() != 0:
        missing("needs root (network namespaces, privileged ports)")


def script(name: str) -> str:
    """A console script of this package, from the running interpreter's environment."""
    path = VENV_BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"console script {name} is not installed (pip install -e .)")
    return found


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free_for(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(family, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A port free for UDP and for TCP on `host` (servers get a TFTP or DHCP port and a
    --metrics, --api or --http-port listener from it), taken below the kernel's
    ephemeral range: a port the kernel hands out (binding port 0) can be given to a
    client's or a transfer's socket between this check and the server's bind, which
    made a server under test fail with "Address already in use" once in a full run."""
    low = max(_ephemeral_low(), 20000)
    for _ in range(500):
        port = random.randrange(10000, low)
        if _free_for(host, port):
            return port
    raise RuntimeError(f"no free port on {host} below {low} after 500 tries")


def udp_port_bound(port: int, netns: str | None = None) -> bool:
    """Whether a socket holds UDP `port` (read from /proc, so no packets sent)."""
    cmd = ["cat", "/proc/net/udp", "/proc/net/udp6"]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    hexport = f":{port:04X}"
    return any(
        len(fields) > 2 and fields[1].endswith(hexport)
        for fields in (line.split() for line in out.splitlines())
    )


def wait_udp_bound(
    port: int,
    timeout: float = 10.0,
    proc: subprocess.Popen[bytes] | None = None,
    netns: str | None = None,
) -> None:
    """Wait until something listens on UDP `port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited early with {proc.returncode}")
        if udp_port_bound(port, netns):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing bound UDP port {port} within {timeout} s")


def wait_udp_free(port: int, timeout: float = 10.0) -> None:
    """Wait until nothing holds UDP `port` (a server closed a transfer's socket)."""
    deadline = time.monotonic() + timeout
    while udp_port_bound(port):
        if time.monotonic() > deadline:
            raise AssertionError(f"UDP port {port} still bound after {timeout} s")
        time.sleep(0.02)


def wait_signal_ready(pid: int, signum: int, timeout: float = 20.0) -> None:
    """Wait until process `pid` catches `signum` (a handler: /proc's SigCgt), blocks it
    (SigBlk: it then waits, pending, for a sigwait), or one of its threads waits in
    sigwait: sending it then no longer takes the default action."""
    bit = 1 << (signum - 1)
    deadline = time.monotonic() + timeout
    while True:
        for task in Path(f"/proc/{pid}/task").iterdir():  # any of its threads
            try:
                lines = (task / "status").read_text().splitlines()
                wchan = (task / "wchan").read_text()
            except OSError:  # the thread ended
                continue
            fields = dict(line.split(":", 1) for line in lines)
            # A thread in sigwait has its waited signals unblocked while it waits.
            if wchan.startswith("do_sigtimedwait"):
                return
            if (int(fields["SigCgt"], 16) | int(fields["SigBlk"], 16)) & bit:
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} did not take signal {signum} in {timeout} s")
        time.sleep(0.02)


class Process:
    """A process we started, stopped by its own PID (never by name)."""

    def __init__(self, argv: Sequence[str], log_path: Path, **kwargs: object) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (lives as long as the process)
        self.proc = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
        )  # type: ignore[call-overload]

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_output(self, text: str, timeout: float = 10.0) -> str:
        """The output once it holds `text`: a server logs a request after answering it."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.output()
            if text in out or time.monotonic() >= deadline:
                return out
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return int(self.proc.returncode)


class Netns:
    """A network namespace the test owns; removed with everything in it afterwards."""

    def __init__(self, prefix: str = "pt") -> None:
        self.name = f"{prefix}{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.run("ip", "link", "set", "lo", "up")

    def run(
        self, *argv: str, check: bool = True, timeout: float = 60, capture: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *argv],
            check=check,
            timeout=timeout,
            capture_output=capture,
            text=True,
        )

    def popen_argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def delete(self) -> None:
        # Processes started in the namespace are stopped by their owners first.
        subprocess.run(["ip", "netns", "delete", self.name], check=False)


def add_veth(a: Netns, a_if: str, b: Netns, b_if: str) -> None:
    """A veth pair with one end in each namespace (down, no address)."""
    subprocess.run(
        [
            "ip",
            "link",
            "add",
            a_if,
            "netns",
            a.name,
            "type",
            "veth",
            "peer",
            "name",
            b_if,
            "netns",
            b.name,
        ],
        check=True,
    )


@contextmanager
def veth_pair(
    server_ip: str = "10.77.0.1/24", client_ip: str | None = None, prefix: str = "pt"
) -> Iterator[tuple[Netns, Netns, str, str]]:
    """Two namespaces joined by a veth pair: (server ns, client ns, server if, client if).

    Addresses are private test addresses that exist only inside these namespaces.
    """
    require_root()
    require_tool("ip")
    server, client = Netns(prefix + "s"), Netns(prefix + "c")
    sif, cif = "vs" + server.name[-8:], "vc" + client.name[-8:]
    try:
        add_veth(server, sif, client, cif)
        server.run("ip", "addr", "add", server_ip, "dev", sif)
        server.run("ip", "link", "set", sif, "up")
        if client_ip:
            client.run("ip", "addr", "add", client_ip, "dev", cif)
        client.run("ip", "link", "set", cif, "up")
        yield server, client, sif, cif
    finally:
        server.delete()
        client.delete()


@contextmanager
def world_readable_dir(prefix: str) -> Iterator[Path]:
    """A directory every user can reach (pytest's tmp_path is root-only): state and
    files for a server that drops to another user, removed afterwards."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)
