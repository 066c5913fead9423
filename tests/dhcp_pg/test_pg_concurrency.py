"""Two servers (two stores, two connection pools) allocating from one pool at once."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from dora import POOL, client_key, race
from pgtest import Stores, assert_one_lease_each, ip

from ptftpd.dhcp.lease_store import Claim
from ptftpd.dhcp.pg_store import StoreBusy

CLIENTS = list(range(200))


def check_outcome(
    stores: Stores, results: list[dict[int, IPv4Address | None]], capacity: int
) -> dict[bytes, IPv4Address]:
    """Each run saw the same answer per client; no address twice; the database agrees."""
    for result in results:
        assert sorted(result) == CLIENTS
    merged: dict[int, IPv4Address | None] = {}
    for i in CLIENTS:
        answers = {result[i] for result in results}
        granted = answers - {None}
        assert len(granted) <= 1, f"client {i} was bound to {answers}"
        merged[i] = granted.pop() if granted else None
    given = [a for a in merged.values() if a is not None]
    assert [a for a, n in Counter(given).items() if n > 1] == []
    assert len(given) == min(capacity, len(CLIENTS))
    in_db = assert_one_lease_each(stores)
    assert in_db == {client_key(i): a for i, a in merged.items() if a is not None}
    return in_db


def test_two_servers_race_for_200_clients_without_duplicates(stores: Stores) -> None:
    s1, s2 = stores("10.30.0.1", max_connections=4), stores("10.30.0.2", max_connections=4)
    assert s1.ensure_pool(POOL, ip("10.30.0.10"), ip("10.30.0.250")) == 241
    # Every client's DISCOVER reaches both servers; one set of threads per server side
    # plus threads asking both, clients in opposite orders to collide as much as possible.
    results = race(
        [([s1], CLIENTS), ([s2], CLIENTS[::-1]), ([s1, s2], CLIENTS[50:] + CLIENTS[:50])],
        threads=4,
    )
    check_outcome(stores, results, capacity=241)


def test_a_full_pool_is_answered_cleanly_under_the_race(stores: Stores) -> None:
    s1, s2 = stores("10.31.0.1"), stores("10.31.0.2")
    assert s1.ensure_pool(POOL, ip("10.31.0.10"), ip("10.31.0.59")) == 50
    results = race([([s1], CLIENTS), ([s2], CLIENTS[::-1])], threads=4)
    in_db = check_outcome(stores, results, capacity=50)
    assert len(in_db) == 50
    # Nothing else is held: no offer was left behind for a client that got no lease.
    assert stores.sql("SELECT count(*) FROM leases WHERE state <> 'bound'") == [(0,)]


def test_two_server_processes_race_without_duplicates(stores: Stores) -> None:
    """The same race from two OS processes (two interpreters, no shared Python state)."""
    stores("10.32.0.1").ensure_pool(POOL, ip("10.32.0.10"), ip("10.32.0.250"))
    worker = str(Path(__file__).with_name("dora.py"))
    procs = [
        subprocess.Popen(
            [sys.executable, worker, stores.uri, server, "0", str(len(CLIENTS)), order],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for server, order in (("10.32.0.1", "forward"), ("10.32.0.2", "reverse"))
    ]
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=240)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        assert proc.returncode == 0, err[-2000:]
        raw = json.loads(out)
        results.append({int(i): None if a is None else IPv4Address(a) for i, a in raw.items()})
    check_outcome(stores, results, capacity=241)


def test_a_race_lost_inside_a_burst_costs_that_request_only(stores: Stores) -> None:
    """Server 2's burst holds client X's offer, uncommitted; server 1, mid-burst, is
    asked by X too: that one request is busy (silence), the rest of its burst commits."""
    s1, s2 = stores("10.33.0.1"), stores("10.33.0.2")
    s1.ensure_pool(POOL, ip("10.33.0.10"), ip("10.33.0.50"))
    now = 1_000_000.0
    with s2.batch():
        assert s2.offer(Claim(b"X", "aa", now, now + 30), POOL, None) is not None
        with s1.batch():
            assert s1.bind(Claim(b"c1", "bb", now, now + 60), ip("10.33.0.40")) is not None
            with pytest.raises(StoreBusy):
                s1.offer(Claim(b"X", "aa", now, now + 30), POOL, None)
            assert s1.bind(Claim(b"c2", "cc", now, now + 60), ip("10.33.0.41")) is not None
        assert s1.available
    held = assert_one_lease_each(stores)
    assert held == {b"c1": ip("10.33.0.40"), b"c2": ip("10.33.0.41")}
    offered = stores.sql("SELECT client FROM leases WHERE state = 'offered'")
    assert [bytes(c) for (c,) in offered] == [b"X"]
