#!/usr/bin/env python3
"""Decision latency with pxed's decision API (issue 22 item 2, `pxed --boot-api`).

A test API in pixiecore's format (tests/pxe/pixie_api.py, its own process on
loopback) answers every machine after --fast seconds (0.05) or --slow seconds (5).
DISCOVERs from --count distinct machines (400) arrive at --rate per second (200); each
is asked of pxed's decision chain link (`ApiFetcher` + `BootApi`, the code pxed runs)
as the DHCP path asks it, and again when its answer arrives or at the deadline (2 s),
as the firmware's retransmission is. In the slow configuration every machine has a
cached answer from an earlier boot (the cache stands in at the deadline).

Reported per configuration, in interleaved rounds: the decision latency (first
DISCOVER -> a decision) p50/p99, the DHCP path's own cost per ask (µs, what every
other client waits behind) p50/p99, and the event loop's longest stall. "No client
waits for another": with a 5 s API every machine is decided at the deadline, not
behind the machines before it (serially, 400 x 5 s).

Run:  .venv/bin/python bench/bootapi_bench.py [--rounds 2] [--count 400] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import statistics
import subprocess
import sys
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from tempfile import TemporaryDirectory

from ptftpd.pxe.bootapi import ApiFetcher
from ptftpd.pxe.decision import Decision, MachineFacts, Pending

API = Path(__file__).resolve().parent.parent / "tests" / "pxe" / "pixie_api.py"


def mac_of(i: int) -> str:
    return f"52:54:01:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def one_round(url: str, count: int, rate: float, warm: bool) -> dict[str, float]:
    fetcher = ApiFetcher(url, Path("/nonexistent"), dict, time.monotonic, deadline=2.0)
    fetcher.attach(asyncio.get_running_loop())
    events: dict[str, asyncio.Event] = {}
    fetcher.wake = lambda mac: events[mac].set() if mac in events else None
    if warm:  # an earlier boot's answer for every machine
        from ptftpd.pxe.decision import Kind, Profile, Source

        cached = Decision(Kind.BOOT, Source.API, Profile("api", kernel="k"))
        fetcher.api.cache.update({mac_of(i): cached for i in range(count)})
    costs: list[float] = []
    latencies: list[float] = []
    stall = 0.0
    stop = False

    async def ticker() -> None:
        nonlocal stall
        last = time.monotonic()
        while not stop:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            stall = max(stall, now - last - 0.005)
            last = now

    async def machine(i: int) -> None:
        mac = mac_of(i)
        facts = MachineFacts(
            mac=mac, server="10.0.0.1", ip=IPv4Address("10.0.0.5"), arch=7,
            subnet=IPv4Network("10.0.0.0/24"),
        )  # fmt: skip
        events[mac] = asyncio.Event()
        began = time.monotonic()
        while True:
            t0 = time.perf_counter()
            answer = fetcher.api.decide(facts, time.monotonic())
            costs.append(time.perf_counter() - t0)
            if not isinstance(answer, Pending):
                break
            events[mac].clear()
            try:
                await asyncio.wait_for(events[mac].wait(), answer.deadline - time.monotonic())
            except TimeoutError:
                pass
        latencies.append(time.monotonic() - began)

    tick = asyncio.get_running_loop().create_task(ticker())
    start = time.monotonic()
    tasks = []
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.get_running_loop().create_task(machine(i)))
    await asyncio.gather(*tasks)
    stop = True
    await tick
    fetcher.close()
    return {
        "p50": statistics.median(latencies),
        "p99": pct(latencies, 0.99),
        "cost50": statistics.median(costs) * 1e6,
        "cost99": pct(costs, 0.99) * 1e6,
        "stall": stall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--fast", type=float, default=0.05)
    parser.add_argument("--slow", type=float, default=5.0)
    args = parser.parse_args()
    logging.getLogger("ptftpd.pxe").setLevel(logging.ERROR)  # a cache line per machine
    results: dict[str, list[dict[str, float]]] = {"fast": [], "slow": []}
    with TemporaryDirectory() as tmp:
        procs = {}
        try:
            for name, delay in (("fast", args.fast), ("slow", args.slow)):
                rules = Path(tmp) / f"{name}.json"
                body = json.dumps({"kernel": "vmlinuz", "cmdline": "x=1"})
                table = {mac_of(i): [delay, 200, body] for i in range(args.count)}
                rules.write_text(json.dumps(table))
                port = free_port()
                procs[name] = (
                    subprocess.Popen(
                        [sys.executable, str(API), str(port), str(rules)],
                        stdout=subprocess.DEVNULL,
                    ),
                    f"http://127.0.0.1:{port}",
                )
            time.sleep(1.0)
            for _ in range(args.rounds):
                for name in ("fast", "slow"):
                    url = procs[name][1]
                    results[name].append(
                        asyncio.run(one_round(url, args.count, args.rate, name == "slow"))
                    )
        finally:
            for proc, _ in procs.values():
                proc.terminate()
                proc.wait(10)
    print(f"{args.count} machines at {args.rate:g} DISCOVERs/s, deadline 2 s, {args.rounds} rounds")
    print("API answer | decision p50 | p99 | DHCP-path cost p50 / p99 | longest loop stall")
    for name, delay in (("fast", args.fast), ("slow", args.slow)):
        for r in results[name]:
            print(
                f"{delay * 1000:7.0f} ms | {r['p50'] * 1000:8.1f} ms | {r['p99'] * 1000:8.1f} ms"
                f" | {r['cost50']:5.1f} / {r['cost99']:5.1f} µs | {r['stall'] * 1000:5.1f} ms"
            )


if __name__ == "__main__":
    main()
