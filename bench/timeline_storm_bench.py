"""Does the boot timeline stay within its bound under a 1,000-machine storm? (issue 23)

    .venv/bin/python bench/timeline_storm_bench.py [--machines 1000] [--rounds 10]

pxed's timeline pipeline in one process, fed the typed events pxed's servers emit, in
the loop as pxed runs it: the `TimelineDriver` (its stall timer and watcher batches),
the boot records (`BootRetention` writing to an SQLite lease file from its own thread)
and the OTLP exporter when the otel extra is installed (to a local endpoint that
accepts and drops). Each round, every machine boots once (DISCOVER/OFFER/REQUEST/ACK,
a TFTP request, a transfer that ends, one in two failing), then the loop lets the
watchers run. After each round: attempts kept, Python heap (tracemalloc) and the
process's resident memory. The same storm runs with --boot-records 500 and 4096
(pxed's default), interleaved, so the two are measured under the same load; the
figure to read is how the heap grows from round to round once the bound is reached
(it should not), and the heap per attempt kept.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import threading
import time
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import psutil

from ptftpd.events import DhcpMessage, Failure, TransferFinished, TransferStarted
from ptftpd.pxe.boot_records import BootRetention, SqliteBootRecords
from ptftpd.pxe.timeline import Timeline
from ptftpd.pxe.timeline_driver import TimelineDriver


def mac_of(n: int) -> str:
    return ":".join(f"{b:02x}" for b in (0x52, 0x54, 0, n >> 16 & 255, n >> 8 & 255, n & 255))


class Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


async def storm(bound: int, machines: int, rounds: int, leases: Path, otlp: str | None) -> Any:
    tl = Timeline(max_attempts=bound, stall=30.0)
    driver = TimelineDriver(tl, flush_delay=0.05)
    keep = BootRetention(driver, SqliteBootRecords(leases), "bench", interval=0.2)
    keep.start()
    traces = None
    if otlp is not None:
        from ptftpd.pxe.traces import open_traces

        traces = open_traces(driver, otlp, quiet=0.5)
        assert traces is not None
        traces.start()
    proc = psutil.Process()
    rows = []
    for r in range(rounds):
        for n in range(machines):
            mac = mac_of(n)
            ip = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
            address = IPv4Address(ip)
            driver.feed(DhcpMessage("in", "discover", mac, port=67))
            driver.feed(DhcpMessage("out", "offer", mac, address, port=67))
            driver.feed(DhcpMessage("in", "request", mac, address, port=67))
            driver.feed(DhcpMessage("out", "ack", mac, address, port=67))
            driver.feed(TransferStarted(ip, "ipxe.efi", options=(("blksize", "1468"),)))
            kind = Failure.NOT_FOUND if (n + r) % 2 else None
            failure = "file not found" if kind else None
            driver.feed(TransferFinished(ip, "ipxe.efi", True, 1000, 0.1, failure, kind))
            if n % 100 == 99:
                await asyncio.sleep(0)  # the loop runs the watchers as pxed's would
        await asyncio.sleep(0.5)  # the batch, the write, the quiet time
        gc.collect()
        heap, _ = tracemalloc.get_traced_memory()
        rows.append(
            {
                "round": r + 1,
                "attempts": len(tl),
                "heap_mib": round(heap / 2**20, 2),
                "rss_mib": round(proc.memory_info().rss / 2**20, 1),
                "traces": None if traces is None else traces.exported,
            }
        )
    driver.flush()
    keep.close()
    if traces is not None:
        traces.close()
    driver.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--machines", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--no-otlp", action="store_true")
    args = parser.parse_args()
    sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    otlp = None
    if not args.no_otlp:
        try:
            import opentelemetry.sdk.trace  # noqa: F401

            otlp = f"http://127.0.0.1:{sink.server_address[1]}/v1/traces"
        except ImportError:
            print("otel extra not installed: no traces", file=sys.stderr)
    results: dict[str, Any] = {"machines": args.machines, "rounds": args.rounds, "otlp": bool(otlp)}
    with tempfile.TemporaryDirectory() as tmp:
        for bound in (500, 4096):  # one after the other in the same process and load
            tracemalloc.start()
            started = time.perf_counter()
            rows = asyncio.run(
                storm(bound, args.machines, args.rounds, Path(tmp) / f"{bound}.db", otlp)
            )
            seconds = time.perf_counter() - started
            tracemalloc.stop()
            kept = rows[-1]["attempts"]
            full = [row for row in rows if row["attempts"] == kept]
            growth = full[-1]["heap_mib"] - full[0]["heap_mib"] if len(full) > 1 else 0.0
            results[str(bound)] = {
                "rows": rows,
                "seconds": round(seconds, 1),
                "heap_growth_once_full_mib": round(growth, 2),
                "heap_per_attempt_kib": round(rows[-1]["heap_mib"] * 1024 / max(kept, 1), 2),
            }
    sink.shutdown()
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
