"""DORA of many clients against two stores at once, as two servers on one wire see it.

Each client's DISCOVER reaches every server (a broadcast): each offers, the client takes
the first offer and REQUESTs it from that server. A `StoreBusy` is a server staying
silent, so the client retransmits, a bounded number of times. Run in threads here and
as a separate process (`python dora.py URI SERVER_ID FIRST COUNT ORDER`) by the tests.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
from ipaddress import IPv4Address

from ptftpd.dhcp.lease_store import Claim
from ptftpd.dhcp.pg_store import PgLink, PgStore, StoreBusy

NOW = 1_000_000.0
POOL = "lab"
RETRIES = 40


def client_key(i: int) -> bytes:
    return b"\x01" + i.to_bytes(6, "big")


def dora(servers: list[PgStore], i: int) -> IPv4Address | None:
    """The client's bound address, or None when every server said the pool is full."""
    key, mac = client_key(i), client_key(i)[1:].hex(":")
    for _ in range(RETRIES):
        try:
            offers = [
                (s, o)
                for s in servers
                if (o := s.offer(Claim(key, mac, NOW, NOW + 30.0), POOL, None))
            ]
        except StoreBusy:
            continue
        if not offers:
            return None
        server, offer = offers[i % len(offers)]
        try:
            lease = server.bind(Claim(key, mac, NOW + 1, NOW + 3600), offer.address)
        except StoreBusy:
            continue
        if lease is not None:
            return lease.address
    raise AssertionError(f"client {i} got nothing after {RETRIES} tries")


def run_threads(
    servers: list[PgStore], clients: list[int], threads: int
) -> dict[int, IPv4Address | None]:
    """DORA for every client in `clients`, spread over `threads` threads."""
    todo: queue.Queue[int] = queue.Queue()
    for i in clients:
        todo.put(i)
    results: dict[int, IPv4Address | None] = {}
    errors: list[BaseException] = []

    def work() -> None:
        while True:
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            try:
                results[i] = dora(servers, i)
            except BaseException as exc:
                errors.append(exc)
                return

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(120)
    assert not errors, errors[:3]
    assert not any(t.is_alive() for t in pool), "a worker thread hung"
    return results


def race(
    jobs: list[tuple[list[PgStore], list[int]]], threads: int
) -> list[dict[int, IPv4Address | None]]:
    """Run several `run_threads` at once (e.g. one per server, clients in other orders)."""
    out: list[dict[int, IPv4Address | None]] = [{} for _ in jobs]
    errors: list[BaseException] = []

    def job(n: int) -> None:
        try:
            out[n] = run_threads(jobs[n][0], jobs[n][1], threads)
        except BaseException as exc:
            errors.append(exc)

    runners = [threading.Thread(target=job, args=(n,)) for n in range(len(jobs))]
    for t in runners:
        t.start()
    for t in runners:
        t.join(180)
    assert not errors, errors[:3]
    return out


def main() -> None:
    uri, server_id, first, count, order = sys.argv[1:6]
    store = PgStore(PgLink(uri, server_id))
    clients = list(range(int(first), int(first) + int(count)))
    if order == "reverse":
        clients.reverse()
    try:
        results = run_threads([store], clients, threads=4)
    finally:
        store.close()
    print(json.dumps({str(i): None if a is None else str(a) for i, a in results.items()}))


if __name__ == "__main__":
    main()
