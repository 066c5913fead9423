"""Remote files (issue 22 item 2): what streaming through pxed costs, same run.

One file of --size-mib on the test upstream (tests/pxe/remote_upstream.py, Python's
http.server, a process on loopback), fetched by curl four ways, rounds interleaved:
straight from the upstream (what iPXE fetching the URL itself sees), through pxed on a
cache miss (pxed fetches and streams at once; each round a new URL, so a new miss),
through pxed on a cache hit (sendfile from the cache), and the same bytes as a file
of pxed's ROOT (the baseline). pxed here is its HTTP server and `RemoteFiles` in this
process, as the service wires them. Every download checked by SHA-256; wall time per
fresh curl process.

    .venv/bin/python bench/remote_bench.py [--size-mib 64] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ptftpd.http import HttpConfig, HttpServer
from ptftpd.pxe.remote import RemoteFiles, RemoteNames

UPSTREAM = Path(__file__).resolve().parent.parent / "tests" / "pxe" / "remote_upstream.py"
MAC = "52:54:00:be:0c:01"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def fetch(url: str, out: Path) -> float:
    began = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        "curl", "--noproxy", "*", "-sS", "-f", "-o", str(out), url
    )
    if await proc.wait() != 0:
        raise SystemExit(f"curl failed: {url}")
    return time.monotonic() - began


async def run(size_mib: int, rounds: int, work: Path) -> dict[str, list[float]]:
    files, root = work / "files", work / "root"
    files.mkdir()
    root.mkdir()
    with (files / "blob").open("wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(1 << 20))
    shutil.copyfile(files / "blob", root / "blob")
    want = hashlib.sha256((files / "blob").read_bytes()).hexdigest()
    port = free_port()
    up = subprocess.Popen([sys.executable, str(UPSTREAM), str(port), str(files)],
                          stdout=subprocess.DEVNULL)  # fmt: skip
    remote = RemoteFiles(work / "cache", RemoteNames(), cache_size=4 * size_mib << 20,
                         max_file=2 * size_mib << 20)  # fmt: skip
    http = HttpServer(HttpConfig(root=root, bind=(("127.0.0.1", 0),)))
    http.streamed = remote.open
    remote.start()
    await http.start()
    host, hport = http.bound[0]
    base = f"http://{host}:{hport}"
    times: dict[str, list[float]] = {}
    try:
        await asyncio.sleep(1.0)  # the upstream listens
        naming = remote.names.naming(MAC, time.monotonic())
        hit = naming(f"http://127.0.0.1:{port}/files/blob?hit")
        misses = [naming(f"http://127.0.0.1:{port}/files/blob?{n}") for n in range(rounds)]
        naming.commit()
        out = work / "out.bin"
        await fetch(f"{base}/{hit}", out)  # warm: the hit row's file is cached
        for n in range(rounds):
            ways = {
                "upstream directly": f"http://127.0.0.1:{port}/files/blob",
                "pxed, cache miss (streamed)": f"{base}/{misses[n]}",
                "pxed, cache hit": f"{base}/{hit}",
                "pxed, ROOT file": f"{base}/blob",
            }
            order = list(ways.items())
            order = order[n % len(order) :] + order[: n % len(order)]  # interleaved
            for name, url in order:
                times.setdefault(name, []).append(await fetch(url, out))
                if hashlib.sha256(out.read_bytes()).hexdigest() != want:
                    raise SystemExit(f"{name}: wrong bytes")
    finally:
        remote.close()
        http.close()
        await http.wait_closed()
        up.kill()
        up.wait()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("curl") is None:
        parser.error("curl is not installed")
    work = Path(tempfile.mkdtemp(prefix="remote-bench-"))
    try:
        times = asyncio.run(run(args.size_mib, args.rounds, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = min(times["pxed, ROOT file"])
    print(f"{args.size_mib} MiB, {args.rounds} interleaved rounds, load {os.getloadavg()[0]:.1f}")
    print("| fetched | best s | median s | MiB/s (best) | time vs ROOT file |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in times.items():
        best = min(runs)
        print(f"| {name} | {best:.2f} | {statistics.median(runs):.2f} | "
              f"{args.size_mib / best:.0f} | {best / base:.2f}x |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
