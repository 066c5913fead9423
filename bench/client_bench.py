"""Benchmark TFTP clients: our `ptftp` against tftp-hpa's `tftp` and atftp, on the same
64 MiB file, against our server (`ptftpd`) and tftpd-hpa, in the same run.

    .venv/bin/python bench/client_bench.py --update-docs

Each client/server pair downloads the file as a fresh process, the way a person or a
script runs it, so wall time includes process start-up (about 0.1 s for a Python
client). After a warm-up round, `--repeat` rounds (5) each run every pair once in a
shuffled order, so load from elsewhere on the machine falls on all pairs alike. Every
download is checked for size and SHA-256. The table gives the best and median wall
time, the rate of the best run, and each pair's time as a multiple of the fastest
pair. All traffic stays on 127.0.0.1; both servers run in the foreground and are
stopped by their PIDs. --update-docs rewrites the "## TFTP clients" section of
docs/benchmarks.md (and nothing else in it).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
SECTION = "## TFTP clients"
MIB = 1024 * 1024
HOST = "127.0.0.1"
FILE = "bench64.bin"


@dataclass(frozen=True)
class Client:
    label: str
    options: str
    argv: Sequence[str]  # {port}, {out}, {file} are filled in


@dataclass
class Row:
    client: str
    options: str
    server: str
    times: list[float]
    error: str | None = None

    @property
    def best(self) -> float:
        return min(self.times)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_bound(port: int, proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Wait until UDP `port` is bound, reading /proc (no packets sent)."""
    deadline = time.monotonic() + timeout
    needle = f":{port:04X}"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        for table in ("/proc/net/udp", "/proc/net/udp6"):
            with open(table) as f:
                if any(line.split()[1].endswith(needle) for line in f.readlines()[1:]):
                    return
        time.sleep(0.05)
    raise RuntimeError(f"nothing bound UDP port {port} in {timeout} s")


@contextmanager
def server(argv: list[str], port: int, log: Path) -> Iterator[None]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_bound(port, proc)
            yield
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def clients(venv_bin: Path) -> list[Client]:
    ptftp = str(venv_bin / "ptftp")
    tftp = shutil.which("tftp") or "tftp"
    atftp = shutil.which("atftp") or "atftp"
    get = ["-q", "-f", "-p", "{port}", "get", HOST, "{file}", "{out}"]
    atftp_get = ["--get", "-r", "{file}", "-l", "{out}"]
    return [
        Client("ptftp", "blksize 1428, windowsize 16", [ptftp, "-b", "1428", "-w", "16", *get]),
        Client("ptftp", "blksize 1428", [ptftp, "-b", "1428", *get]),
        Client("ptftp", "512 B, no options", [ptftp, "-r", *get]),
        Client(
            "atftp 0.8",
            "blksize 1428, windowsize 16",
            [
                atftp,
                *atftp_get,
                "--option",
                "blksize 1428",
                "--option",
                "windowsize 16",
                HOST,
                "{port}",
            ],
        ),
        Client(
            "atftp 0.8",
            "blksize 1428",
            [atftp, *atftp_get, "--option", "blksize 1428", HOST, "{port}"],
        ),
        Client("atftp 0.8", "512 B, no options", [atftp, *atftp_get, HOST, "{port}"]),
        Client(
            "tftp-hpa 5.2",
            "512 B, no options (it has none)",
            [tftp, "-m", "binary", HOST, "{port}", "-c", "get", "{file}", "{out}"],
        ),
    ]


def run_client(client: Client, port: int, work: Path, expected: str, size: int) -> float:
    out = work / "out.bin"
    if out.exists():
        out.unlink()
    argv = [a.format(port=port, out=out, file=FILE) for a in client.argv]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=work, capture_output=True, timeout=300)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(
            f"exit {done.returncode}: {(done.stderr or done.stdout).decode(errors='replace')[:200]}"
        )
    if out.stat().st_size != size or sha256(out) != expected:
        raise RuntimeError("downloaded file differs from the original")
    return elapsed


def measure(repeat: int, size: int) -> tuple[list[Row], str]:
    venv_bin = Path(sys.executable).parent
    in_tftpd = shutil.which("in.tftpd") or "/usr/sbin/in.tftpd"
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ptftp-bench-") as tmp:
        base = Path(tmp)
        root, work = base / "root", base / "work"
        root.mkdir()
        work.mkdir()
        with open(root / FILE, "wb") as f:
            for _ in range(size // MIB):
                f.write(os.urandom(MIB))
        expected = sha256(root / FILE)
        ours, hpa = free_udp_port(), free_udp_port()
        servers = [
            ("ptftpd", [str(venv_bin / "ptftpd"), "-p", str(ours), HOST, str(root)], ours),
            (
                "tftpd-hpa 5.2",
                [in_tftpd, "-L", "-u", "root", "-s", str(root), "-a", f"{HOST}:{hpa}"],
                hpa,
            ),
        ]
        with contextlib.ExitStack() as stack:
            for _, argv, port in servers:
                stack.enter_context(server(argv, port, base / f"{port}.log"))
            pairs = [(c, name, port) for name, _, port in servers for c in clients(venv_bin)]
            rows = [Row(c.label, c.options, name, []) for c, name, _ in pairs]
            # Rounds, each running every pair once in a shuffled order: a burst of load
            # from elsewhere on the machine then spreads over all pairs, not one.
            order = list(range(len(pairs)))
            for round_number in range(repeat + 1):  # round 0 warms up
                random.shuffle(order)
                for index in order:
                    client, _, port = pairs[index]
                    row = rows[index]
                    if row.error:
                        continue
                    try:
                        elapsed = run_client(client, port, work, expected, size)
                    except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
                        row.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                        continue
                    if round_number:
                        row.times.append(elapsed)
                print(f"round {round_number} done", file=sys.stderr, flush=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    return rows, machine


def format_row(row: Row, fastest: float | None, size: int) -> str:
    if row.error or not row.times:
        return f"| {row.client} | {row.options} | {row.server} | failed: {row.error} | | | |"
    best, median = row.best, statistics.median(row.times)
    rate = size / MIB / best
    ratio = f"{best / fastest:.2f}x" if fastest else ""
    return (
        f"| {row.client} | {row.options} | {row.server} | {best:.2f} | {median:.2f} | "
        f"{rate:.1f} | {ratio} |"
    )


def table(rows: list[Row], size: int) -> str:
    measured = [r for r in rows if r.times and not r.error]
    fastest = min(r.best for r in measured) if measured else None
    lines = [
        "| client | options | server | best s | median s | MiB/s (best) | time vs fastest |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    ordered = sorted(rows, key=lambda r: (r.error is not None, r.best if r.times else 1e9))
    lines += [format_row(r, fastest, size) for r in ordered]
    return "\n".join(lines)


def update_doc(text: str) -> None:
    DOC.parent.mkdir(parents=True, exist_ok=True)
    old = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    start = old.find(SECTION + "\n")
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = old.find("\n## ", start + len(SECTION))
        new = old[:start] + text + (old[end + 1 :] if end >= 0 else "")
    DOC.write_text(new if new.endswith("\n") else new + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds (5)")
    parser.add_argument("--size-mib", type=int, default=64, help="file size in MiB (64)")
    parser.add_argument("--update-docs", action="store_true", help="rewrite our docs section")
    args = parser.parse_args()
    for tool in ("tftp", "atftp"):
        if shutil.which(tool) is None:
            print(f"client_bench: error: {tool} is not installed", file=sys.stderr)
            return 1
    if not Path(shutil.which("in.tftpd") or "/usr/sbin/in.tftpd").exists():
        print("client_bench: error: tftpd-hpa (in.tftpd) is not installed", file=sys.stderr)
        return 1
    # Byte-compile our package first, as `pip install` leaves it: an editable checkout
    # run with PYTHONDONTWRITEBYTECODE (set on these machines) would otherwise compile
    # every module from source at each start, about 15 ms of each ptftp run.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "src")], check=True)
    size = args.size_mib * MIB
    load_before = os.getloadavg()[0]
    rows, machine = measure(args.repeat, size)
    load_after = os.getloadavg()[0]
    command = "sudo .venv/bin/python bench/client_bench.py --update-docs"
    if args.repeat != 5 or args.size_mib != 64:
        command += f" --repeat {args.repeat} --size-mib {args.size_mib}"
    text = (
        f"{SECTION}\n\n"
        f"One {args.size_mib} MiB download per run, each client started as a fresh process "
        f"(wall time includes start-up; our package byte-compiled first, as an install "
        f"leaves it), best and median of {args.repeat} shuffled rounds "
        f"after a warm-up round, every file checked by SHA-256; loopback, {machine}, "
        f'{time.strftime("%Y-%m-%d")}. "time vs fastest" divides each pair\'s best time by '
        f"the fastest pair's. The machine was shared: 1-minute load average "
        f"{load_before:.1f} at the start, {load_after:.1f} at the end.\n\n"
        f"```sh\n{command}\n```\n\n{table(rows, size)}\n\n"
        "tftpd-hpa grants no windowsize, so clients asking for one run lock-step against "
        "it; tftp-hpa's client asks for no options at all.\n"
    )
    print(text)
    if args.update_docs:
        update_doc(text)
        print(f"updated {DOC.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
