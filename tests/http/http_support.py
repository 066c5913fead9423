"""Shared by the HTTP tests: a served tree, the server as a real process, curl."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import Process, require_tool

BIG = 64 * 1024 * 1024


def free_tcp_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_tcp_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Wait until something listens on TCP `port` (read from /proc: no connection made)."""
    deadline = time.monotonic() + timeout
    hexport = f":{port:04X}"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early with {proc.returncode}")
        for name in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(name).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[1].endswith(hexport) and fields[3] == "0A":  # LISTEN
                    return
        time.sleep(0.05)
    raise AssertionError(f"nothing listened on TCP port {port} within {timeout} s")


def make_file(path: Path, size: int) -> None:
    """Deterministic content that differs per size and is not a repeating short pattern."""
    with open(path, "wb") as f:
        counter = 0
        left = size
        while left > 0:
            block = hashlib.sha256(f"{size}:{counter}".encode()).digest() * 2048  # 64 KiB
            f.write(block[:left])
            left -= len(block)
            counter += 1


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def make_tree(root: Path, outside: Path) -> None:
    """The served root, plus things that must never be served from it."""
    root.mkdir()
    make_file(root / "small.bin", 1000)
    make_file(root / "empty.bin", 0)
    (root / "boot").mkdir()
    (root / "boot" / "ipxe.efi").write_bytes(b"MZ" + bytes(range(256)) * 8)
    (root / "with space.txt").write_bytes(b"spaced\n")
    (root / "caf\u00e9.txt").write_bytes(b"accent\n")
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"SECRET\n")
    os.symlink(outside / "secret.txt", root / "escape.txt")
    os.symlink(outside, root / "escape-dir")
    os.symlink("small.bin", root / "inside-link.bin")
    os.mkfifo(root / "fifo")


@dataclass
class RunningHttp:
    port: int
    root: Path
    process: Process

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}{path}"

    def log(self) -> str:
        return self.process.output()


def start_http(root: Path, log: Path, *extra: str) -> RunningHttp:
    port = free_tcp_port()
    argv = [sys.executable, "-m", "ptftpd.http", "-v", str(root), "--port", str(port)]
    argv += ["--bind", "127.0.0.1", "--bind", "::1", *extra]
    proc = Process(argv, log)
    wait_tcp_listening(port, proc.proc)
    return RunningHttp(port, root, proc)


def curl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """curl with no proxy from the environment and a bounded run time."""
    exe = require_tool("curl")
    argv = [exe, "--noproxy", "*", "-sS", "--max-time", str(int(timeout)), *args]
    return subprocess.run(argv, capture_output=True, timeout=timeout + 10)


def curl_status(url: str, *args: str) -> int:
    done = curl("-o", "/dev/null", "-w", "%{http_code}", "--path-as-is", *args, url)
    return int(done.stdout or b"0")


@pytest.fixture(scope="module")
def http_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("http")
    make_tree(base / "root", base / "outside")
    return base / "root"


@pytest.fixture(scope="module")
def http_server(http_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHttp]:
    log = tmp_path_factory.mktemp("httplog") / "http.log"
    server = start_http(http_root, log, "--max-connections", "256", "--header-timeout", "2")
    yield server
    code = server.process.stop()
    text = server.log()
    assert "Traceback" not in text, text
    assert code == 0, text
