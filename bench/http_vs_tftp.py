"""One file over HTTP and over TFTP (lock-step and windowed) from the same pxed, same run.

pxed runs with `--http-port` on the loopback interface of a network namespace made for
the run (so its DHCP side hears nothing but loopback, and nothing leaves the machine);
curl fetches the file over HTTP, atftp over TFTP with blksize 1428 (lock-step) and with
windowsize 16 as well. Rounds are interleaved so the three share the machine's
conditions; every download is checked by SHA-256. Wall time per fresh client process.

    sudo .venv/bin/python bench/http_vs_tftp.py [--size-mib 64] [--rounds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HTTP_PORT = 8080
HOST = "127.0.0.1"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("needs root (a network namespace, and pxed binds ports 67, 69, 4011)")
    for tool in ("ip", "curl", "atftp"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed")
    pxed = str(Path(sys.executable).with_name("pxed"))
    ns = f"ptbench{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="http-vs-tftp-"))
    root = work / "root"
    root.mkdir()
    big = root / "big.bin"
    with big.open("wb") as f:
        for _ in range(args.size_mib):
            f.write(os.urandom(1 << 20))
    want = sha256(big)
    out = work / "out.bin"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    server: subprocess.Popen[bytes] | None = None
    try:
        inside = ["ip", "netns", "exec", ns]
        subprocess.run([*inside, "ip", "link", "set", "lo", "up"], check=True)
        argv = [pxed, "--leases", str(work / "l.sqlite"), "--http-port", str(HTTP_PORT)]
        argv += ["--range", "127.0.0.10", "127.0.0.20", "lo", str(root), "big.bin"]
        log = (work / "pxed.log").open("wb")
        server = subprocess.Popen([*inside, *argv], stdout=log, stderr=subprocess.STDOUT)
        url = f"http://{HOST}:{HTTP_PORT}/big.bin"
        deadline = time.monotonic() + 20
        while subprocess.run([*inside, "curl", "-sfI", url], capture_output=True).returncode:
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"pxed did not start: {(work / 'pxed.log').read_text()}")
            time.sleep(0.2)
        atftp = ["atftp", "--get", "-r", "big.bin", "-l", str(out)]
        clients = {
            "HTTP (curl)": ["curl", "-sf", "-o", str(out), url],
            "TFTP lock-step (atftp, blksize 1428)": [
                *atftp,
                "--option",
                "blksize 1428",
                HOST,
                "69",
            ],
            "TFTP windowed (atftp, blksize 1428, windowsize 16)": [
                *atftp,
                "--option",
                "blksize 1428",
                "--option",
                "windowsize 16",
                HOST,
                "69",
            ],
        }
        times: dict[str, list[float]] = {name: [] for name in clients}
        for _ in range(args.rounds):
            for name, cmd in clients.items():
                out.unlink(missing_ok=True)
                start = time.monotonic()
                subprocess.run([*inside, *cmd], check=True, timeout=600, capture_output=True)
                times[name].append(time.monotonic() - start)
                if sha256(out) != want:
                    raise SystemExit(f"{name}: wrong content")
        load = os.getloadavg()[0]
        print(f"{args.size_mib} MiB, {args.rounds} interleaved rounds, load average {load:.1f}")
        cells = []
        for name, values in times.items():
            best, median = min(values), statistics.median(values)
            rate = args.size_mib / best
            print(f"{name}: best {best:.2f} s, median {median:.2f} s, {rate:.1f} MiB/s")
            cells.append(f"{best:.2f} / {median:.2f} ({rate:.0f} MiB/s)")
        print("| " + " | ".join([f"{args.size_mib} MiB from one pxed", *cells]) + " |")
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        subprocess.run(["ip", "netns", "delete", ns], check=False)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
