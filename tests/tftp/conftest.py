from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import Process, free_udp_port, script, wait_udp_bound

SIZES = [0, 511, 512, 513, 1024 * 1024, 40 * 1024 * 1024]


@dataclass
class RunningServer:
    port: int
    root: Path
    process: Process
    host: str = "127.0.0.1"

    def log(self) -> str:
        return self.process.output()


def start_server(root: Path, log: Path, *extra: str, host: str = "127.0.0.1") -> RunningServer:
    port = free_udp_port(host)
    proc = Process([script("ptftpd"), "-v", "-p", str(port), *extra, host, str(root)], log)
    wait_udp_bound(port, proc=proc.proc)
    return RunningServer(port, root, proc, host)


def make_file(path: Path, size: int) -> None:
    # Deterministic, incompressible-ish content that differs per size.
    seed = hashlib.sha256(str(size).encode()).digest()
    block = hashlib.sha256(seed).digest() * 2048  # 64 KiB
    with open(path, "wb") as f:
        left = size
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def served_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    for size in SIZES:
        make_file(root / f"f{size}.bin", size)
    make_file(root / "f1024.bin", 1024)
    (root / "sub").mkdir()
    (root / "sub" / "nested.txt").write_bytes(b"nested\n")
    (root / "text.txt").write_bytes(b"line one\nline two\r\nbare\rcr\n" * 50)
    (root / "uploads").mkdir()
    os.chmod(root / "uploads", 0o777)
    return root


@pytest.fixture(scope="module")
def server(served_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("log") / "ptftpd.log"
    # today's single process; test_workers.py runs the same matrix with --workers 2
    srv = start_server(served_root, log, "--workers", "1")
    yield srv
    code = srv.process.stop()
    text = srv.log()
    assert "Traceback" not in text, text
    assert code == 0, text
