"""The database stopped under running servers, then started again."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from pgtest import HOLD, NOW, POOL, Stores, assert_one_lease_each, ip

from ptftpd.dhcp import pg_store
from ptftpd.dhcp.lease_store import Claim
from ptftpd.dhcp.pg_store import PgStore, StoreUnavailable
from support.postgres import PgCluster


class Clock:
    """The backoff's monotonic clock, moved by the test (no sleeping, no wall time)."""

    def __init__(self) -> None:
        self.t = 500.0

    def __call__(self) -> float:
        return self.t


class Probes:
    """Counts the reconnection probes (fresh connections) a store makes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real: Callable[..., Any] = psycopg.connect

        def counting(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(pg_store.psycopg, "connect", counting)


def dora(store: PgStore, n: int, now: float) -> None:
    key = b"k%d" % n
    offer = store.offer(Claim(key, "aa", now, now + HOLD), POOL, None)
    assert offer is not None
    assert store.bind(Claim(key, "aa", now, now + 3600), offer.address) is not None


def records(caplog: pytest.LogCaptureFixture, server: str, word: str) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if r.name == "ptftpd.dhcp"]
    return [line for line in lines if f"server {server}:" in line and word in line]


def test_database_lost_then_back_resumes_by_itself_without_duplicates(
    pg_cluster: PgCluster,
    stores: Stores,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="ptftpd.dhcp")
    clock = Clock()
    s1 = stores("s1", clock=clock, backoff=(0.5, 4.0))
    s2 = stores("s2", clock=Clock(), backoff=(0.5, 4.0))
    s1.ensure_pool(POOL, ip("10.50.0.1"), ip("10.50.0.100"))
    for n in range(20):
        dora((s1, s2)[n % 2], n, NOW)

    pg_cluster.stop()
    probes = Probes(monkeypatch)
    with pytest.raises(StoreUnavailable) as info:
        s1.offer(Claim(b"new", "bb", NOW, NOW + HOLD), POOL, None)
    assert "\n" not in str(info.value) and not s1.available
    for _ in range(50):  # every packet while down: refused at once, no reconnection
        with pytest.raises(StoreUnavailable):
            s1.lookup(b"k1", POOL, NOW)
    with pytest.raises(StoreUnavailable):
        s1.bind(Claim(b"k1", "aa", NOW, NOW + 10), ip("10.50.0.1"))
    assert probes.count == 1  # the one made when the first failure was seen

    # Attempts back off exponentially up to the bound: 0.5, 1, 2, 4, 4 s.
    waits = []
    for _ in range(5):
        before, waited = probes.count, 0.0
        while probes.count == before:
            assert waited < 10, "no reconnection attempt within the bound"
            clock.t += 0.25
            waited += 0.25
            with pytest.raises(StoreUnavailable):
                s1.lookup(b"k1", POOL, NOW)
        waits.append(waited)
    assert waits == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert len(records(caplog, "s1", "lost")) == 1

    pg_cluster.start()
    clock.t += 4.0
    assert s1.lookup(b"k3", POOL, NOW) is not None  # resumed by itself
    assert s1.available
    assert len(records(caplog, "s1", "back")) == 1
    # s2 never noticed the outage: its dead pooled connections are replaced silently.
    assert s2.lookup(b"k4", POOL, NOW) is not None
    assert records(caplog, "s2", "lost") == []
    for n in range(20, 40):
        dora((s1, s2)[n % 2], n, NOW + 10)
    held = assert_one_lease_each(stores)
    assert len(held) == 40 and len(set(held.values())) == 40
    assert len(records(caplog, "s1", "lost")) == 1


def test_a_burst_cut_by_the_outage_commits_nothing(pg_cluster: PgCluster, stores: Stores) -> None:
    clock = Clock()
    s1 = stores("s1", clock=clock)
    s1.ensure_pool(POOL, ip("10.51.0.1"), ip("10.51.0.50"))
    with pytest.raises(StoreUnavailable), s1.batch():
        dora(s1, 1, NOW)
        pg_cluster.stop()
        dora(s1, 2, NOW)
    pg_cluster.start()
    clock.t += 60
    assert s1.lookup(b"k1", POOL, NOW) is None  # the burst's replies were never sent
    assert s1.leases() == []
    dora(s1, 1, NOW)
    assert len(s1.leases()) == 1


def test_a_restart_between_bursts_goes_unnoticed(
    pg_cluster: PgCluster, stores: Stores, caplog: pytest.LogCaptureFixture
) -> None:
    """The pooled connections died with the old server: replaced, no outage reported."""
    caplog.set_level(logging.INFO, logger="ptftpd.dhcp")
    s1 = stores("s1", clock=Clock(), min_connections=2)
    s1.ensure_pool(POOL, ip("10.52.0.1"), ip("10.52.0.50"))
    with s1.batch():
        dora(s1, 1, NOW)
    pg_cluster.stop()
    pg_cluster.start()
    with s1.batch():
        dora(s1, 2, NOW)
    dora(s1, 3, NOW)
    assert len(s1.leases()) == 3
    assert records(caplog, "s1", "lost") == []
