"""Shared pieces of the client tests: test files, and the real servers they talk to.

Files are seeded random bytes, not a short repeating pattern: a block written at the
wrong place after the block-number rollover (65536 blocks of 512 bytes = 32 MiB) would
go unnoticed in a pattern whose period divides 32 MiB.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from support import (
    Netns,
    Process,
    free_udp_port,
    require_root,
    require_tool,
    script,
    wait_udp_bound,
)

MIB = 1024 * 1024
SIZES = [0, 512, 513, MIB, 40 * MIB]
TEXT = b"line one\nline two\r\nbare\rcr\n" * 200 + b"ends with cr\r"
RUN_TIMEOUT = 120


def content(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def make_root(root: Path, sizes: Sequence[int] = SIZES) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for size in sizes:
        (root / f"f{size}.bin").write_bytes(content(size))
    (root / "text.txt").write_bytes(TEXT)
    (root / "uploads").mkdir(exist_ok=True)
    (root / "uploads").chmod(0o777)
    return root


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def same_file(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and digest(a.read_bytes()) == digest(b.read_bytes())


def netascii_wire(data: bytes) -> bytes:
    return data.replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")


@dataclass
class Server:
    host: str
    port: int
    root: Path
    process: Process

    def stop(self) -> str:
        code = self.process.stop()
        text = self.process.output()
        assert "Traceback" not in text, text
        assert code in (0, -15, 143), f"server exited with {code}: {text}"
        return text


def start_ptftpd(root: Path, log: Path, *extra: str, host: str = "127.0.0.1") -> Server:
    port = free_udp_port(host)
    proc = Process([script("ptftpd"), "-v", "-p", str(port), *extra, host, str(root)], log)
    wait_udp_bound(port, proc=proc.proc)
    return Server(host, port, root, proc)


def start_tftpd_hpa(root: Path, log: Path, *extra: str) -> Server:
    """tftpd-hpa in the foreground (-L) on a free loopback port, uploads allowed (-c)."""
    exe = require_tool("in.tftpd")
    port = free_udp_port()
    argv = [exe, "-L", "-c", "-u", "root", "-s", str(root), "-a", f"127.0.0.1:{port}", *extra]
    proc = Process(argv, log)
    wait_udp_bound(port, proc=proc.proc)
    return Server("127.0.0.1", port, root, proc)


@contextmanager
def dnsmasq_in_netns(root: Path, log: Path) -> Iterator[tuple[Netns, Server]]:
    """dnsmasq's TFTP binds port 69: run it in a namespace of our own, on its loopback."""
    require_root()
    require_tool("ip")
    exe = require_tool("dnsmasq")
    ns = Netns("ptc")
    proc: Process | None = None
    try:
        argv = ns.popen_argv(
            [
                exe,
                "--no-daemon",
                "--conf-file=/dev/null",
                "--port=0",
                "--enable-tftp",
                f"--tftp-root={root}",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--user=root",
                "--pid-file=",
                "--log-facility=-",
            ]
        )
        proc = Process(argv, log)
        wait_udp_bound(69, proc=proc.proc, netns=ns.name)
        yield ns, Server("127.0.0.1", 69, root, proc)
    finally:
        if proc is not None:
            proc.stop()
        ns.delete()


def ptftp(
    *args: str,
    cwd: Path | None = None,
    stdin: bytes | None = None,
    netns: Netns | None = None,
    timeout: float = RUN_TIMEOUT,
) -> subprocess.CompletedProcess[bytes]:
    """Run the installed `ptftp` console script; bounded in time."""
    argv = [script("ptftp"), *args]
    if netns is not None:
        argv = netns.popen_argv(argv)
    return subprocess.run(
        argv,
        cwd=cwd,
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=timeout,
    )


def python_module(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]
