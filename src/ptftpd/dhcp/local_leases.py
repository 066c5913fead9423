"""The lease rows of a server that is their only writer: memory, optionally a SQLite file.

`LocalLeases` is the lease core's store (`leases.LeaseRows`) for one server: the same
operations as the PostgreSQL store (`pg_store.PgStore`) with the same meaning, row for
row, so that one lease policy (`leases.LeasePolicy`) decides the same way over either.
Each address of a pool is a row with `free_at`, the moment another client may have it
(never used: minus infinity; an offer: its end; a bound lease: its expiry; released or
withdrawn: that moment; declined: the end of the quarantine). Every operation below is
the Python twin of a PostgreSQL function or statement (pg_schema.py, pg_store.py), and
the hypothesis test in tests/dhcp_pg drives both with the same messages.

What differs is cost, not meaning: the free-address search is a cursor over the never
used addresses plus a heap of `(free_at, address)` (`free_index.HeapFreeIndex`), so a
pool of millions of addresses costs a logarithmic step per DISCOVER and no start-up
scan. Rows a client may rely on (bound, released, declined) are saved to the
persistence `LeaseStore` (`MemoryStore` or `store.SqliteStore`) before the operation
returns; offers stay in memory (a crash costs a client one retry).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from ptftpd.dhcp.lease_store import FreeIndex, Lease, LeaseState, LeaseStore

__all__ = ["NOT_OFFERED", "LocalLeases", "NotOffered"]

_MINUS_INF = -math.inf


class NotOffered(enum.Enum):
    """`bind`'s answer to a SELECTING client naming an address that is not its own."""

    NOT_OFFERED = "not offered"


NOT_OFFERED = NotOffered.NOT_OFFERED


@dataclass
class _Row:
    address: IPv4Address
    pool: str
    state: str = "free"  # free, offered, bound, released, declined
    client: bytes | None = None
    mac: str | None = None
    expires: float = 0.0
    hostname: str | None = None
    since: float = 0.0
    free_at: float = _MINUS_INF

    def lease(self, now: float | None = None) -> Lease:
        assert self.client is not None
        lease = Lease(
            self.address,
            self.client,
            self.mac or "",
            LeaseState(self.state),
            self.expires,
            self.hostname,
            self.since,
        )
        if now is not None:
            lease.state = lease.effective_state(now)
        return lease


@dataclass
class _Pool:
    name: str
    first: int
    last: int
    excluded: frozenset[int]
    free: FreeIndex
    cursor: int
    clients: dict[bytes, set[int]] = field(default_factory=dict)

    def __contains__(self, key: int) -> bool:
        return self.first <= key <= self.last and key not in self.excluded


class LocalLeases:
    """Every pool's rows in memory, saved to `persist` (see the module docstring)."""

    def __init__(self, persist: LeaseStore) -> None:
        self.persist = persist
        self._rows: dict[int, _Row] = {}
        self._pools: dict[str, _Pool] = {}
        # Saved rows, waiting for the pool that holds them (`ensure_pool`).
        self._loaded: dict[int, Lease] = {int(lease.address): lease for lease in persist.load()}

    # -- pools ---------------------------------------------------------------------

    def ensure_pool(
        self,
        pool: str,
        first: IPv4Address,
        last: IPv4Address,
        excluded: Iterable[IPv4Address] = (),
        own: Iterable[IPv4Address] = (),
    ) -> int:
        """Rows for the pool; `own` (this server's addresses) are excluded like the rest
        (one server is the only writer here)."""
        lo, hi = int(first), int(last)
        skip = frozenset(int(a) for a in (*excluded, *own) if first <= a <= last)
        size = hi - lo + 1 - len(skip)
        known = self._pools.get(pool)
        if known is not None and (known.first, known.last, known.excluded) == (lo, hi, skip):
            return size  # a reload: the same pool, its rows and indexes kept
        entry = _Pool(pool, lo, hi, skip, self.persist.free_index(), lo)
        self._pools[pool] = entry
        for row in self._rows.values():  # a pool redefined by a reload keeps its rows
            if int(row.address) in entry:
                row.pool = pool
                self._put(row, entry)
        for key in [k for k in self._loaded if k in entry]:
            lease = self._loaded.pop(key)
            state = lease.state.value if lease.state is not LeaseState.EXPIRED else "bound"
            row = _Row(
                lease.address,
                pool,
                state,
                lease.client_key,
                lease.mac,
                lease.expires,
                lease.hostname,
                lease.since,
            )
            row.free_at = _free_at(row)
            self._put(row, entry)
        return size

    def _put(self, row: _Row, pool: _Pool) -> None:
        key = int(row.address)
        self._rows[key] = row
        if row.client is not None:
            pool.clients.setdefault(row.client, set()).add(key)
        pool.free.note(row.address, row.free_at)

    def _row(self, pool: _Pool, key: int) -> _Row | None:
        """The row of pool address `key`; a never used address's row is made here and
        kept once `_set` writes it (until then the address stays never used)."""
        if key not in pool:
            return None
        row = self._rows.get(key)
        return _Row(IPv4Address(key), pool.name) if row is None else row

    def _pool_of(self, key: int) -> _Pool | None:
        row = self._rows.get(key)
        if row is not None:
            return self._pools.get(row.pool)
        for pool in self._pools.values():
            if key in pool:
                return pool
        return None

    def _set(
        self,
        row: _Row,
        pool: _Pool,
        state: str,
        client: bytes | None,
        mac: str | None,
        expires: float,
        since: float,
        free_at: float,
        hostname: str | None,
    ) -> None:
        """One row's new values (the UPDATE of the SQL twin), indexes kept."""
        key = int(row.address)
        self._rows[key] = row
        if row.client is not None and row.client != client:
            owned = pool.clients.get(row.client)
            if owned is not None:
                owned.discard(key)
                if not owned:
                    del pool.clients[row.client]
        if client is not None:
            pool.clients.setdefault(client, set()).add(key)
        row.state, row.client, row.mac = state, client, mac
        row.expires, row.since, row.free_at, row.hostname = expires, since, free_at, hostname
        pool.free.note(row.address, free_at)

    def _own(self, pool: _Pool, client: bytes) -> _Row | None:
        """The client's row: live (offered, bound) first, then the latest; never a
        declined one (`_CLIENT_ROW` in pg_store.py)."""
        best: _Row | None = None
        best_key: tuple[bool, float] | None = None
        for key in pool.clients.get(client, ()):
            row = self._rows[key]
            if row.state == "declined":
                continue
            rank = (row.state in ("offered", "bound"), row.since)
            if best_key is None or rank > best_key:
                best, best_key = row, rank
        return best

    def _free_row(self, pool: _Pool, now: float) -> _Row | None:
        """The never used address first (lowest), else the one free the longest."""
        while pool.cursor <= pool.last:
            key = pool.cursor
            pool.cursor += 1
            if key in pool and key not in self._rows:
                return _Row(IPv4Address(key), pool.name)
        for address in pool.free.candidates(now):
            row = self._rows.get(int(address))
            if row is not None and row.free_at <= now:
                return row
        return None

    # -- the operations (twins of pg_schema.ptftpd_offer, ptftpd_bind, pg_store's) --

    def offer(
        self,
        client_key: bytes,
        mac: str,
        pool: str,
        requested: IPv4Address | None,
        now: float,
        hold: float,
    ) -> Lease | None:
        entry = self._pools[pool]
        target: _Row | None = None
        own = self._own(entry, client_key)
        if own is not None:
            if own.state == "bound" and own.expires > now:
                return own.lease()
            if own.state in ("offered", "bound") or own.since <= now:
                target = own
        if target is None and requested is not None:
            row = self._row(entry, int(requested))
            if row is not None and row.free_at <= now:
                target = row
        if target is None:
            target = self._free_row(entry, now)
        if target is None:
            return None
        until = now + hold
        hostname = target.hostname if target.client == client_key else None
        self._set(target, entry, "offered", client_key, mac, until, now, until, hostname)
        return target.lease()

    def bind(
        self,
        client_key: bytes,
        mac: str,
        address: IPv4Address,
        now: float,
        expires: float,
        hostname: str | None = None,
        *,
        selecting: bool = False,
    ) -> Lease | NotOffered | None:
        """None when the address is in no pool or another client holds it."""
        key = int(address)
        entry = self._pool_of(key)
        row = None if entry is None else self._row(entry, key)
        if entry is None or row is None:
            return None
        own = row.client == client_key and row.state != "declined"
        if selecting and not own:
            return NOT_OFFERED
        if not own and row.free_at > now:
            return None
        changed: list[_Row] = []
        for other_key in list(entry.clients.get(client_key, ())):
            other = self._rows[other_key]
            if other_key == key or other.state not in ("offered", "bound"):
                continue
            if other.state == "bound":
                self._set(other, entry, "released", client_key, other.mac, now, now, now,
                          other.hostname)  # fmt: skip
                changed.append(other)
            else:
                self._set(other, entry, "free", None, None, now, now, now, other.hostname)
        name = hostname or (row.hostname if row.client == client_key else None)
        self._set(row, entry, "bound", client_key, mac, expires, now, expires, name)
        changed.append(row)
        self.persist.save(r.lease() for r in changed)
        return row.lease()

    def held(self, client_key: bytes, address: IPv4Address, now: float) -> bool:
        """Does another client hold `address` (a live or quarantined row)?"""
        row = self._rows.get(int(address))
        if row is None or (row.client == client_key and row.state != "declined"):
            return False
        return row.free_at > now

    def lookup(self, client_key: bytes, pool: str, now: float) -> Lease | None:
        own = self._own(self._pools[pool], client_key)
        if own is None or own.state == "free":  # a withdrawn offer is no lease
            return None
        return own.lease(now)

    def release(self, client_key: bytes, address: IPv4Address, now: float) -> Lease | None:
        key = int(address)
        row = self._rows.get(key)
        entry = self._pool_of(key)
        if row is None or entry is None or row.client != client_key or row.state != "bound":
            return None
        self._set(row, entry, "released", client_key, row.mac, now, now, now, row.hostname)
        self.persist.save([row.lease()])
        return row.lease()

    def decline(
        self, client_key: bytes, mac: str, address: IPv4Address, now: float, until: float
    ) -> Lease | None:
        key = int(address)
        row = self._rows.get(key)
        entry = self._pool_of(key)
        if row is None or entry is None or row.client != client_key:
            return None
        if row.state not in ("offered", "bound"):
            return None
        self._set(row, entry, "declined", client_key, mac, until, now, until, None)
        self.persist.save([row.lease()])
        return row.lease()

    def withdraw(self, client_key: bytes, pool: str, now: float) -> None:
        entry = self._pools[pool]
        for key in list(entry.clients.get(client_key, ())):
            row = self._rows[key]
            if row.state == "offered":
                # Free for everyone, still the client's own: a SELECTING REQUEST that
                # another server's withdraw overtakes binds it (no NAK).
                self._set(row, entry, "free", client_key, row.mac, now, now, now, row.hostname)

    def leases(self, pool: str | None = None) -> list[Lease]:
        rows = sorted(self._rows.values(), key=lambda r: int(r.address))
        return [
            r.lease()
            for r in rows
            if r.client is not None and r.state != "free" and (pool is None or r.pool == pool)
        ]

    def batch(self) -> AbstractContextManager[None]:
        return self.persist.batch()

    def close(self) -> None:
        self.persist.close()


def _free_at(row: _Row) -> float:
    """When a saved row's address may go to another client (as `free_at` in SQL)."""
    if row.state == "released":
        return row.since
    return row.expires
