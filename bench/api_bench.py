"""The operator API's answers against a full timeline: what they cost and how long they
hold pxed's event loop (issue 23 item 3).

A timeline of N attempts (default 4,096, pxed's default bound) of 20 steps each (DORA,
leases, six TFTP downloads), then interleaved rounds of `/v1/boots` queries answered
two ways in the same run: "chunked" (the API as shipped: views built and encoded 50 at
a time, the loop free between) and "one piece" (every view built and encoded at once,
as before 6ad83d7). A task beside them notes the longest time it waited for the loop
during each answer ("loop stall"). Medians over the rounds; ratios one piece / chunked.

    .venv/bin/python bench/api_bench.py [--attempts 4096] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from ipaddress import IPv4Address
from typing import Any

from ptftpd.events import DhcpMessage, LeaseEvent, LeaseKind, TransferFinished, TransferStarted
from ptftpd.pxe.api import EventHub, Router, add_boot_routes
from ptftpd.pxe.api.connection import RawRequest
from ptftpd.pxe.timeline import Timeline
from ptftpd.pxe.timeline_driver import TimelineDriver

QUERIES = ("limit=100", "limit=1000", "state=failed", "mac=52:54:00:00:0f:ff")


def timeline(attempts: int) -> TimelineDriver:
    clock = [0.0]
    driver = TimelineDriver(
        Timeline(max_attempts=attempts), clock=lambda: clock[0], wall=lambda: 1.7e9 + clock[0]
    )
    for n in range(attempts):
        mac = f"52:54:00:00:{n >> 8 & 255:02x}:{n & 255:02x}"
        ip = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        address = IPv4Address(ip)
        events: list[Any] = [
            DhcpMessage("in", "discover", mac, vendor_class="PXEClient:Arch:00007:UNDI:003016"),
            LeaseEvent(LeaseKind.OFFERED, address, mac),
            DhcpMessage("out", "offer", mac, address),
            DhcpMessage("in", "request", mac, address),
            LeaseEvent(LeaseKind.BOUND, address, mac),
            DhcpMessage("out", "ack", mac, address),
        ]
        started = TransferStarted(ip, "ipxe.efi", options=(("blksize", "1468"),))
        events += [started, TransferFinished(ip, "ipxe.efi", True, 1_000_000, 1.0, None)] * 7
        for event in events:
            clock[0] += 0.001
            driver.feed(event)
    return driver


def one_piece(driver: TimelineDriver, query: str) -> bytes:
    """The answer built the way it was before chunking: every view, then one dumps."""
    key, _, value = query.partition("=")
    offset = driver.offset()
    limit = int(value) if key == "limit" else 100
    found = []
    for attempt in driver.timeline.attempts(value if key == "mac" else None):
        view = attempt.view(offset)
        if key == "state" and view["state"] != value:
            continue
        found.append(view)
        if len(found) >= limit:
            break
    return json.dumps({"boots": found}, separators=(",", ":")).encode()


async def measure(driver: TimelineDriver, router: Router, rounds: int) -> dict[str, list[float]]:
    stall = [0.0, 0.0]  # [longest wait, last turn]
    results: dict[str, list[float]] = {}

    async def ticker() -> None:
        while True:
            now = time.perf_counter()
            stall[0] = max(stall[0], now - stall[1])
            stall[1] = now
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    for _ in range(rounds):
        for query in QUERIES:
            for way in ("chunked", "one piece"):
                await asyncio.sleep(0)
                stall[:] = [0.0, time.perf_counter()]
                started = time.perf_counter()
                if way == "chunked":
                    raw = RawRequest("GET", "/v1/boots?" + query, (), b"")
                    answer = await router.dispatch(raw)
                    assert getattr(answer, "status", None) == 200
                else:
                    one_piece(driver, query)
                total = time.perf_counter() - started
                await asyncio.sleep(0)
                results.setdefault(f"{query}|{way}|total", []).append(total)
                results.setdefault(f"{query}|{way}|stall", []).append(stall[0])
    task.cancel()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--attempts", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    driver = timeline(args.attempts)
    router = Router()
    add_boot_routes(router, driver, EventHub(driver))
    load = os.getloadavg()[0]
    results = asyncio.run(measure(driver, router, args.rounds))
    print(f"{args.attempts} attempts, {args.rounds} rounds, load average {load:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at the end")  # fmt: skip
    print("| query | way | total ms (median) | longest loop stall ms (median) | stall ratio |")
    print("|---|---|---:|---:|---:|")
    for query in QUERIES:
        chunked = statistics.median(results[f"{query}|chunked|stall"])
        for way in ("chunked", "one piece"):
            total = statistics.median(results[f"{query}|{way}|total"]) * 1000
            worst = statistics.median(results[f"{query}|{way}|stall"]) * 1000
            ratio = worst / (chunked * 1000) if chunked else float("nan")
            print(f"| {query} | {way} | {total:.1f} | {worst:.1f} | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
