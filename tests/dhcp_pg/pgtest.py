"""Helpers for the PostgreSQL lease store tests."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import psycopg

from ptftpd.dhcp.leases import Lease, LeaseState
from ptftpd.dhcp.pg_store import PgLink, PgStore

NOW = 1_000_000.0
HOLD = 30.0
POOL = "lab"


def ip(text: str) -> IPv4Address:
    return IPv4Address(text)


class Stores:
    """Opens stores on one database and closes them all at the end."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.opened: list[PgStore] = []

    def __call__(
        self, server_id: str, *, clock: Callable[[], float] = time.monotonic, **settings: Any
    ) -> PgStore:
        """A store for `server_id`; `settings` are `PgLink` keyword arguments."""
        store = PgStore(PgLink(self.uri, server_id, clock=clock, **settings))
        self.opened.append(store)
        return store

    def close(self) -> None:
        for store in self.opened:
            store.close()

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.uri, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []


def pool_of(store: PgStore, first: str, last: str, pool: str = POOL) -> int:
    return store.ensure_pool(pool, ip(first), ip(last))


def bound_rows(stores: Stores) -> list[tuple[IPv4Address, bytes]]:
    rows = stores.sql("SELECT address, client FROM leases WHERE state = 'bound'")
    return [(a, bytes(c)) for a, c in rows]


def assert_one_lease_each(stores: Stores) -> dict[bytes, IPv4Address]:
    """The database holds no address twice and at most one bound row per client."""
    rows = bound_rows(stores)
    by_addr = Counter(a for a, _ in rows)
    by_client = Counter(c for _, c in rows)
    assert [a for a, n in by_addr.items() if n > 1] == []
    assert [c for c, n in by_client.items() if n > 1] == []
    return {c: a for a, c in rows}


def is_state(lease: Lease | None, state: LeaseState) -> bool:
    return lease is not None and lease.state is state
