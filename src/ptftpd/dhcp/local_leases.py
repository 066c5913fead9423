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

import heapq
import math
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any, TypeVar

from ptftpd.dhcp.free_index import NoIndex, address_of, key_of, probe_start, probes
from ptftpd.dhcp.lease_store import (
    NOT_OFFERED,
    Caps,
    Claim,
    FreeIndex,
    IPAddress,
    IPs,
    Lease,
    LeaseState,
    LeaseStore,
    NotOffered,
)

__all__ = ["NOT_OFFERED", "LocalLeases", "NotOffered"]

_MINUS_INF = -math.inf
_SWEEP_EVERY = 1.0
_HELD = ("bound", "declined")
K = TypeVar("K", bytes, str)


@dataclass
class _Row:
    address: IPAddress
    pool: str
    state: str = "free"  # free, offered, bound, released, declined
    client: bytes | None = None
    mac: str | None = None
    expires: float = 0.0
    hostname: str | None = None
    since: float = 0.0
    free_at: float = _MINUS_INF

    def lease(self, now: float | None = None) -> Lease[Any]:
        assert self.client is not None
        lease = Lease(
            self.address,
            self.client,
            self.mac or "",
            # A free row saved (a sparse pool's withdrawn offer) reads back as released.
            LeaseState.RELEASED if self.state == "free" else LeaseState(self.state),
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
    # Sparse (IPv6) pools: rows are made as addresses are used and forgotten once
    # free (`_sweep`); the live rows per `mac` (the DUID) for the per-client cap.
    sparse: bool = False
    keys: set[int] = field(default_factory=set)
    by_mac: dict[str, set[int]] = field(default_factory=dict)
    offers: dict[int, None] = field(default_factory=dict)  # offered, whatever their end
    held: int = 0  # bound or declined, whatever their end
    swept: float = _MINUS_INF
    # (end, key) of offers and of bound or declined rows, oldest end first (stale
    # entries skipped): rows past their end leave first, the oldest offer is pushed out.
    offer_ends: list[tuple[float, int]] = field(default_factory=list)
    held_ends: list[tuple[float, int]] = field(default_factory=list)

    def __contains__(self, key: int) -> bool:
        return self.first <= key <= self.last and key not in self.excluded


class LocalLeases:
    """Every pool's rows in memory, saved to `persist` (see the module docstring)."""

    def __len__(self) -> int:
        """Rows kept in memory (a sparse pool's are bounded by its caps)."""
        return len(self._rows)

    def __init__(self, persist: LeaseStore) -> None:
        self.persist = persist
        self._rows: dict[int, _Row] = {}
        self._pools: dict[str, _Pool] = {}
        self._gone: list[IPAddress] = []  # forgotten rows, for the persistence store
        # Saved rows, waiting for the pool that holds them (`ensure_pool`).
        self._loaded: dict[int, Lease[Any]] = {
            key_of(lease.address): lease for lease in persist.load()
        }

    # -- pools ---------------------------------------------------------------------

    def ensure_pool(
        self, pool: str, first: IPAddress, last: IPAddress, excluded: IPs = (), own: IPs = ()
    ) -> int:
        """Rows for the pool; `own` (this server's addresses) are excluded like the rest
        (one server is the only writer here). An IPv6 pool is sparse: no cursor, no
        free index; its search probes from the client's hash (`probes`)."""
        lo, hi = key_of(first), key_of(last)
        skip = frozenset(k for a in (*excluded, *own) if lo <= (k := key_of(a)) <= hi)
        size = hi - lo + 1 - len(skip)
        known = self._pools.get(pool)
        if known is not None and (known.first, known.last, known.excluded) == (lo, hi, skip):
            return size  # a reload: the same pool, its rows and indexes kept
        sparse = first.version == 6
        index: FreeIndex = NoIndex() if sparse else self.persist.free_index()
        entry = _Pool(pool, lo, hi, skip, index, hi + 1 if sparse else lo, sparse=sparse)
        self._pools[pool] = entry
        for row in self._rows.values():  # a pool redefined by a reload keeps its rows
            if key_of(row.address) in entry:
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
        key = key_of(row.address)
        self._rows[key] = row
        if row.client is not None:
            pool.clients.setdefault(row.client, set()).add(key)
        pool.free.note(row.address, row.free_at)
        if pool.sparse:
            self._link(row, pool, key)

    def _row(self, pool: _Pool, key: int) -> _Row | None:
        """The row of pool address `key`; a never used address's row is made here and
        kept once `_set` writes it (until then the address stays never used)."""
        if key not in pool:
            return None
        row = self._rows.get(key)
        return _Row(address_of(key), pool.name) if row is None else row

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
        sparse = pool.sparse
        if sparse:
            key = key_of(row.address)
            self._unlink(row, pool, key)
        else:
            key = int(row.address)
        self._rows[key] = row
        if row.client is not None and row.client != client:
            _discard(pool.clients, row.client, key)
        if client is not None:
            pool.clients.setdefault(client, set()).add(key)
        row.state, row.client, row.mac = state, client, mac
        row.expires, row.since, row.free_at, row.hostname = expires, since, free_at, hostname
        pool.free.note(row.address, free_at)
        if sparse:
            self._link(row, pool, key)

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

    def offer(self, claim: Claim, pool: str, requested: IPAddress | None) -> Lease[Any] | None:
        client_key, now = claim.client_key, claim.now
        entry = self._pools[pool]
        target: _Row | None = None
        own = self._own(entry, client_key)
        if own is not None:
            if own.state == "bound" and own.expires > now:
                return own.lease()
            if own.state in ("offered", "bound") or own.since <= now:
                target = own
        if target is None and requested is not None:
            row = self._row(
                entry, int(requested) if type(requested) is IPv4Address else key_of(requested)
            )
            if row is not None and row.free_at <= now:
                target = row
        if target is None:
            target = self._free_row(entry, now)
        if target is None:
            return None
        until = claim.until
        hostname = target.hostname if target.client == client_key else None
        self._set(target, entry, "offered", client_key, claim.mac, until, now, until, hostname)
        return target.lease()

    def bind(
        self, claim: Claim, address: IPAddress, name: str | None = None, *, selecting: bool = False
    ) -> Lease[Any] | NotOffered | None:
        """None when the address is in no pool or another client holds it."""
        client_key, now, expires = claim.client_key, claim.now, claim.until
        key = int(address) if type(address) is IPv4Address else key_of(address)
        entry = self._pool_of(key)
        row = None if entry is None else self._row(entry, key)
        if entry is None or row is None:
            return None
        own = row.client == client_key and row.state != "declined"
        if selecting and not own:
            return NOT_OFFERED
        if not own and row.free_at > now:
            return None
        changed = self._let_go(entry, client_key, key, now)
        name = name or (row.hostname if row.client == client_key else None)
        self._set(row, entry, "bound", client_key, claim.mac, expires, now, expires, name)
        changed.append(row)
        self.persist.save(r.lease() for r in changed)
        return row.lease()

    def _let_go(self, entry: _Pool, client_key: bytes, key: int, now: float) -> list[_Row]:
        """One lease per client (per IA): its other live rows go back, bound ones as
        released (returned, to be saved), offered ones free."""
        changed: list[_Row] = []
        for other_key in list(entry.clients.get(client_key, ())):
            other = self._rows[other_key]
            if other_key == key or other.state not in ("offered", "bound"):
                continue
            if other.state == "bound":
                self._set(other, entry, "released", client_key, other.mac, now, now, now,
                          other.hostname)  # fmt: skip
                changed.append(other)
            elif entry.sparse:  # saved (a sparse pool's offers are rows), still its own
                self._set(other, entry, "free", client_key, other.mac, now, now, now, None)
                changed.append(other)
            else:
                self._set(other, entry, "free", None, None, now, now, now, other.hostname)
        return changed

    # -- sparse (IPv6) pools: rows made on use, probing search, caps ---------------

    def assign(
        self, claim: Claim, pool: str, requested: IPAddress | None, *, bind: bool, caps: Caps
    ) -> Lease[Any] | None:
        """A sparse pool's offer (`bind` false: held until `until`) or binding (until
        `until`): the client's live row, else `requested` if free, else the first free
        of its probes; None when none is free or a cap is reached (`caps`: open offers,
        live rows per `mac`, bound or declined rows). An offer
        of a client already bound returns the binding as it is. The client's other
        offered or bound rows (past their end) go back first: one live row per IA.
        Every row written is saved (offers too: they are rows other servers see in
        PostgreSQL, and a restart must not forget them here either)."""
        client_key, mac, now, until = claim.client_key, claim.mac, claim.now, claim.until
        entry = self._pools[pool]
        try:
            self._sweep(entry, now)
            own = self._live_own(entry, client_key, now)
            if own is not None and own.state == "bound" and not bind:
                return own.lease()
            if not self._room(entry, own, mac, now, caps, bind):
                return None
            changed = self._let_go(
                entry, client_key, -1 if own is None else key_of(own.address), now
            )
            target = own or self._sparse_row(entry, client_key, requested, now)
            if target is None:
                if changed:
                    self.persist.save(r.lease() for r in changed)
                return None
            state = "bound" if bind else "offered"
            self._set(target, entry, state, client_key, mac, until, now, until, None)
            changed.append(target)
            self.persist.save(r.lease() for r in changed)
            return target.lease()
        finally:
            if self._gone:
                # A forgotten row made anew in this call (its address taken again)
                # was saved above: only the rows still gone leave the store.
                gone = [a for a in self._gone if key_of(a) not in self._rows]
                self._gone = []
                self.persist.forget(gone)

    def _sparse_row(
        self, entry: _Pool, client_key: bytes, requested: IPAddress | None, now: float
    ) -> _Row | None:
        """A sparse pool's free row for the client: `requested` if free, else the first
        free of its probes (a never used address's row is made here, as in `_row`)."""
        if requested is not None:
            key = key_of(requested)
            if key in entry:
                row = self._rows.get(key)
                if row is None:
                    return _Row(address_of(key), entry.name)
                if row.free_at <= now:
                    return row
        start = probe_start(client_key, entry.last - entry.first + 1)
        for key in probes(entry.first, entry.last, start):
            if key in entry.excluded:
                continue
            row = self._rows.get(key)
            if row is None:
                return _Row(address_of(key), entry.name)
            if row.free_at <= now:
                return row
        return None

    def _live_own(self, entry: _Pool, client_key: bytes, now: float) -> _Row | None:
        """The client's live row (offered or bound, before its end) of a sparse pool."""
        for key in entry.clients.get(client_key, ()):
            row = self._rows[key]
            if row.state in ("offered", "bound") and row.free_at > now:
                return row
        return None

    def _room(
        self,
        entry: _Pool,
        own: _Row | None,
        mac: str,
        now: float,
        caps: Caps,
        bind: bool,
    ) -> bool:
        """The caps, counted as of `now` (the same in every store): a client
        with a live row keeps it; an offer that becomes a binding needs a binding
        slot; a new row needs the client under its cap, then a binding slot, or for
        an offer room made by pushing out the oldest offer (the earliest end)."""
        if own is not None and (own.state == "bound" or not bind):
            return True
        max_offers, max_per_client, max_bindings = caps
        self._drain(entry, now)
        if own is None:
            mine = entry.by_mac.get(mac, ())
            live = sum(1 for k in mine if self._rows[k].free_at > now)
            if live >= max_per_client:
                return False
        if bind:
            return entry.held < max_bindings
        while len(entry.offers) >= max_offers:
            key = self._first(entry, entry.offer_ends, ("offered",))
            if key is None:
                break
            self._forget(entry, key)
        return True

    def _first(
        self, entry: _Pool, ends: list[tuple[float, int]], states: tuple[str, ...]
    ) -> int | None:
        """The key of the row with the earliest end in `ends` (stale entries popped)."""
        while ends:
            end, key = ends[0]
            row = self._rows.get(key)
            if row is not None and row.free_at == end and row.state in states:
                return key
            heapq.heappop(ends)
        return None

    def _drain(self, entry: _Pool, now: float) -> None:
        """Forget the offers and bindings past their end, so the counts are exact."""
        for ends, states in ((entry.offer_ends, ("offered",)), (entry.held_ends, _HELD)):
            while (key := self._first(entry, ends, states)) is not None:
                if self._rows[key].free_at > now:
                    break
                heapq.heappop(ends)
                self._forget(entry, key)

    def _unlink(self, row: _Row, entry: _Pool, key: int) -> None:
        """A sparse pool's counts without `row` (before it changes or goes)."""
        if key not in entry.keys:
            return
        if row.state == "offered":
            entry.offers.pop(key, None)
        elif row.state in _HELD:
            entry.held -= 1
        if row.mac:
            _discard(entry.by_mac, row.mac, key)

    def _link(self, row: _Row, entry: _Pool, key: int) -> None:
        entry.keys.add(key)
        if row.state == "offered":
            entry.offers[key] = None
            heapq.heappush(entry.offer_ends, (row.free_at, key))
        elif row.state in _HELD:
            entry.held += 1
            heapq.heappush(entry.held_ends, (row.free_at, key))
        if len(entry.offer_ends) + len(entry.held_ends) > 4 * len(entry.keys) + 64:
            entry.offer_ends = [(self._rows[k].free_at, k) for k in entry.offers]
            heapq.heapify(entry.offer_ends)
            entry.held_ends = [
                (r.free_at, k) for k in entry.keys if (r := self._rows[k]).state in _HELD
            ]
            heapq.heapify(entry.held_ends)
        if row.mac and row.state in ("offered", "bound"):
            entry.by_mac.setdefault(row.mac, set()).add(key)

    def _sweep(self, entry: _Pool, now: float, *, force: bool = False) -> None:
        """Forget a sparse pool's rows past their end (their addresses are free for
        anyone and nothing reads a dead row there): at most once a second of `now`
        unless a cap is reached, linear in the rows the caps bound."""
        if not force and now - entry.swept < _SWEEP_EVERY:
            return
        entry.swept = now
        for key in [k for k in entry.keys if self._rows[k].free_at <= now]:
            self._forget(entry, key)

    def _forget(self, entry: _Pool, key: int) -> None:
        """A sparse pool's row leaves memory and the saved rows (its address is free
        for anyone; `assign` tells the persistence store)."""
        row = self._rows.pop(key)
        self._gone.append(row.address)
        self._unlink(row, entry, key)
        entry.keys.discard(key)
        if row.client is not None:
            _discard(entry.clients, row.client, key)

    def held(self, client_key: bytes, address: IPAddress, now: float) -> bool:
        """Does another client hold `address` (a live or quarantined row)?"""
        row = self._rows.get(int(address) if type(address) is IPv4Address else key_of(address))
        if row is None or (row.client == client_key and row.state != "declined"):
            return False
        return row.free_at > now

    def lookup(self, client_key: bytes, pool: str, now: float) -> Lease[Any] | None:
        entry = self._pools[pool]
        if entry.sparse:
            live = self._live_own(entry, client_key, now)
            return None if live is None else live.lease(now)
        own = self._own(entry, client_key)
        if own is None or own.state == "free":  # a withdrawn offer is no lease
            return None
        return own.lease(now)

    def release(self, client_key: bytes, address: IPAddress, now: float) -> Lease[Any] | None:
        key = int(address) if type(address) is IPv4Address else key_of(address)
        row = self._rows.get(key)
        entry = self._pool_of(key)
        if row is None or entry is None or row.client != client_key or row.state != "bound":
            return None
        self._set(row, entry, "released", client_key, row.mac, now, now, now, row.hostname)
        self.persist.save([row.lease()])
        return row.lease()

    def decline(self, claim: Claim, address: IPAddress) -> Lease[Any] | None:
        key = int(address) if type(address) is IPv4Address else key_of(address)
        row = self._rows.get(key)
        entry = self._pool_of(key)
        if row is None or entry is None or row.client != claim.client_key:
            return None
        if row.state not in ("offered", "bound"):
            return None
        client, mac, now, until = claim.client_key, claim.mac, claim.now, claim.until
        self._set(row, entry, "declined", client, mac, until, now, until, None)
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

    def leases(self, pool: str | None = None) -> list[Lease[Any]]:
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


def _discard(index: dict[K, set[int]], name: K, key: int) -> None:
    """`key` out of `name`'s keys in `index` (a client's or a DUID's rows); a name
    left with none leaves the index."""
    keys = index.get(name)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del index[name]


def _free_at(row: _Row) -> float:
    """When a saved row's address may go to another client (as `free_at` in SQL)."""
    if row.state == "released":
        return row.since
    return row.expires
