"""PostgreSQL lease store: several DHCP servers, one database, the database is the truth.

Every address of every pool is one row (`leases`, primary key `address`), so the
database itself refuses to hold an address twice, and a partial unique index allows one
live (offered or bound) row per client key per pool. Each row carries `free_at`, the
moment another client may have it: `-infinity` for a never-used address, the offer's end
for an offer, the expiry for a bound lease, the release time, the end of a decline's
quarantine. One index on `(pool, free_at, address)` then answers "a free address, never
used first, else free the longest" without reading the other leases, and `FOR UPDATE
SKIP LOCKED` lets concurrent servers take different rows instead of waiting or racing.
Expiry needs no sweeper: it is only a comparison with `now`, the same on every server
(so the servers' clocks must agree, as they must for any DHCP failover).

Offer and bind, the per-packet operations, are server-side functions (pg_schema.py): one
round trip each, their own transaction, and inside `batch()` part of the burst's one
transaction (a group commit like the SQLite store's) without a savepoint, since each
function catches the races it can lose and reports them as 'busy'. The rarer operations
are plain statements in a transaction (a savepoint inside a burst). psycopg prepares a
statement server-side once it has run `prepare_threshold` times on a connection (1 here),
so every statement is parsed and planned once per pooled connection.

Faults (pg_link.py): an unreachable database at start raises `PgStoreError` with one
line. Lost while running, every operation raises `StoreUnavailable` (the server answers
nothing rather than guess), a reconnection is tried with bounded exponential backoff,
and one line is logged when the database goes and one when it comes back. `StoreBusy`
means another server holds the rows a request needs: stay silent, the client retries.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

import psycopg

from ptftpd.dhcp.lease_store import Lease, LeaseState
from ptftpd.dhcp.local_leases import NOT_OFFERED, NotOffered
from ptftpd.dhcp.peers import beat
from ptftpd.dhcp.pg_link import (
    PgLink,
    PgSettings,
    PgStoreError,
    RowsBusy,
    StoreBusy,
    StoreUnavailable,
    describe,
    init_schema,
)
from ptftpd.dhcp.pg_schema import LATEST_VERSION

__all__ = [
    "LATEST_VERSION",
    "PgSettings",
    "PgStore",
    "PgStoreError",
    "PoolMismatch",
    "StoreBusy",
    "StoreUnavailable",
    "describe",
    "init_schema",
]

MAX_POOL_SIZE = 1 << 20  # one row per address: a /12 is the most one pool may hold
_COLUMNS = "address, client, mac, state, expires, hostname, since"


class PoolMismatch(PgStoreError):
    """The database defines this pool differently: the servers' configurations differ."""


@dataclass
class _Row:
    address: IPv4Address
    client: bytes | None
    mac: str | None
    state: str
    expires: float | None
    hostname: str | None
    since: float | None

    def lease(self, now: float | None = None) -> Lease | None:
        if self.state == "free" or self.client is None:
            return None
        lease = Lease(
            self.address,
            bytes(self.client),
            self.mac or "",
            LeaseState(self.state),
            math.inf if self.expires is None else self.expires,
            self.hostname,
            self.since or 0.0,
        )
        if now is not None:
            lease.state = lease.effective_state(now)
        return lease


def _addresses(addrs: Iterable[IPv4Address], most: int = 8) -> str:
    shown = [str(a) for a in sorted(addrs)]
    if len(shown) > most:
        return ", ".join(shown[:most]) + f" and {len(shown) - most} more"
    return ", ".join(shown)


def pool_difference(
    pool: str,
    where: str,
    theirs: tuple[IPv4Address, IPv4Address, list[IPv4Address]],
    ours: tuple[IPv4Address, IPv4Address, list[IPv4Address]],
) -> str:
    """What differs between the database's definition of `pool` and this server's:
    the range, then the addresses excluded by only one of them (gateways, static
    hosts, excluded addresses)."""
    parts = []
    if theirs[:2] != ours[:2]:
        parts.append(
            f"range {theirs[0]}-{theirs[1]} in the database, {ours[0]}-{ours[1]} here"
        )
    only_there = set(theirs[2]) - set(ours[2])
    only_here = set(ours[2]) - set(theirs[2])
    if only_there:
        parts.append(f"excluded only in the database: {_addresses(only_there)}")
    if only_here:
        parts.append(f"excluded only here: {_addresses(only_here)}")
    return (
        f"pool {pool} differs from its definition in {where}: {'; '.join(parts)} "
        "(servers sharing a lease database need the same range, gateway, excluded "
        "addresses and static hosts)"
    )


def _row(values: tuple[Any, ...] | None) -> _Row | None:
    return None if values is None else _Row(*values)


_CLIENT_ROW = (
    f"SELECT {_COLUMNS} FROM leases WHERE pool = %s AND client = %s AND state <> 'declined' "
    "ORDER BY state IN ('offered', 'bound') DESC, since DESC NULLS LAST LIMIT 1"
)

_OFFER = "SELECT * FROM ptftpd_offer(%s, %s, %s, %s, %s, %s, %s)"
_BIND = "SELECT * FROM ptftpd_bind(%s, %s, %s, %s, %s, %s, %s, %s)"


def _granted(values: tuple[Any, ...] | None) -> _Row | NotOffered | None:
    """A row from ptftpd_offer/ptftpd_bind: None for no grant, `NOT_OFFERED` for a
    SELECTING client's address that is not its own, RowsBusy for a lost race."""
    if values is None:
        return None
    if values[0] == "busy":
        raise RowsBusy("another server holds the rows this request needs")
    if values[0] == "unoffered":
        return NOT_OFFERED
    return _Row(*values[1:])


class PgStore:
    """Leases in PostgreSQL, shared by every server that names the same database.

    `server_id` (the server identifier address, or any stable name) is recorded as the
    owner of the offers and leases this server makes, for operators and for `withdraw`.
    `settings` (pool size, timeouts, backoff) go to the connection as they are.
    `clock` is only for the reconnection backoff (monotonic seconds); lease times are
    the `now` each call is given, as in the sans-IO lease policy.
    """

    def __init__(
        self,
        conninfo: str,
        server_id: str,
        settings: PgSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server_id = server_id
        # Every operation waits for the network: the server runs them off its event
        # loop, in as many threads as the pool has connections.
        self.blocking = True
        self.workers = (settings or PgSettings()).max_connections
        self._link = PgLink(conninfo, server_id, settings, clock=clock)
        self._run = self._link.run
        self.name = self._link.name

    @property
    def available(self) -> bool:
        """False from a lost database until an operation succeeds again."""
        return self._link.available

    def batch(self) -> AbstractContextManager[None]:
        """Run the operations of one burst in one transaction: one commit for all.

        Each operation is a savepoint, so one that loses a race is undone alone. The
        caller sends the replies after the block: if the commit fails this raises
        `StoreUnavailable` and none of the burst's grants may be announced."""
        return self._link.batch()

    def savepoint(self) -> AbstractContextManager[None]:
        """Inside `batch`: one packet's operations, undone alone when one fails."""
        return self._link.savepoint()

    # -- pools -----------------------------------------------------------------------

    def ensure_pool(
        self,
        pool: str,
        first: IPv4Address,
        last: IPv4Address,
        excluded: Iterable[IPv4Address] = (),
        own: Iterable[IPv4Address] = (),
    ) -> int:
        """Create the pool's address rows, or check that the database defines it as we do.

        Every server sharing the database must define each pool id with the same range
        and exclusions (gateways, static hosts, excluded addresses): a different
        definition raises `PoolMismatch`, naming the difference, rather than letting two
        servers disagree on the free list. This server's `own` addresses are not part
        of the definition (each server has its own): they are reserved in the rows
        (state 'server', never free), so no server offers them."""
        size = int(last) - int(first) + 1
        if size <= 0 or size > MAX_POOL_SIZE:
            raise PgStoreError(
                f"pool {pool}: {first}-{last} must hold 1 to {MAX_POOL_SIZE} addresses"
            )
        skip = sorted({a for a in excluded if first <= a <= last})
        mine = sorted({a for a in own if first <= a <= last and a not in skip})

        def op(conn: psycopg.Connection[Any]) -> int:
            # A server starting beside another waits for its pool rows, not 0.2 s.
            conn.execute("SET LOCAL lock_timeout = '60s'")
            conn.execute(
                "INSERT INTO pools (id, first, last, excluded) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (id) DO NOTHING",
                (pool, first, last, skip),
            )
            row = conn.execute(
                "SELECT first, last, excluded FROM pools WHERE id = %s FOR UPDATE", (pool,)
            ).fetchone()
            assert row is not None
            theirs = (row[0], row[1], sorted(row[2]))
            if theirs != (first, last, skip):
                raise PoolMismatch(
                    pool_difference(pool, self.name, theirs, (first, last, skip))
                )
            other = conn.execute(
                "SELECT pool FROM leases WHERE address BETWEEN %s AND %s AND pool <> %s LIMIT 1",
                (first, last, pool),
            ).fetchone()
            if other is not None:
                raise PoolMismatch(f"pool {pool} overlaps pool {other[0]} in {self.name}")
            conn.execute(
                "INSERT INTO leases (address, pool, state, free_at) "
                "SELECT a, %s, 'free', '-infinity' FROM "
                "(SELECT %s::inet + n AS a FROM generate_series(0, %s) AS n) AS s "
                "WHERE a <> ALL(%s::inet[]) ON CONFLICT (address) DO NOTHING",
                (pool, first, size - 1, skip),
            )
            if mine:
                conn.execute(
                    "UPDATE leases SET state = 'server', client = NULL, mac = NULL, "
                    "expires = NULL, hostname = NULL, since = NULL, free_at = 'infinity', "
                    "owner = %s WHERE address = ANY(%s::inet[]) AND pool = %s",
                    (self.server_id, mine, pool),
                )
            return size - len(skip) - len(mine)

        return self._run(op, attempts=1)

    # -- queries -----------------------------------------------------------------------

    def lookup(self, client_key: bytes, pool: str, now: float) -> Lease | None:
        """The client's live lease or offer in `pool`, else its last one; None if none.

        This is how a client that renews or rebinds at another server is recognised."""

        def op(conn: psycopg.Connection[Any]) -> _Row | None:
            return _row(conn.execute(_CLIENT_ROW, (pool, client_key)).fetchone())

        row = self._run(op, atomic=True)
        return None if row is None else row.lease(now)

    def held(self, client_key: bytes, address: IPv4Address, now: float) -> bool:
        """Does another client hold `address` (a live or quarantined row)?"""
        sql = (
            "SELECT 1 FROM leases WHERE address = %s AND free_at > %s AND NOT "
            "COALESCE(client = %s AND state <> 'declined', false)"
        )

        def op(conn: psycopg.Connection[Any]) -> bool:
            return conn.execute(sql, (address, now, client_key)).fetchone() is not None

        return self._run(op, atomic=True)

    def get(self, address: IPv4Address, now: float) -> Lease | None:
        """Who holds (or last held) `address`; None when free or in no pool."""

        def op(conn: psycopg.Connection[Any]) -> _Row | None:
            sql = f"SELECT {_COLUMNS} FROM leases WHERE address = %s"
            return _row(conn.execute(sql, (address,)).fetchone())

        row = self._run(op, atomic=True)
        return None if row is None else row.lease(now)

    def leases(self, pool: str | None = None) -> list[Lease]:
        """Every address that is or was leased, offered or declined (for listings)."""

        def op(conn: psycopg.Connection[Any]) -> list[_Row]:
            sql = f"SELECT {_COLUMNS} FROM leases WHERE state <> 'free'"
            if pool is None:
                return [_Row(*r) for r in conn.execute(sql + " ORDER BY address").fetchall()]
            sql += " AND pool = %s ORDER BY address"
            return [_Row(*r) for r in conn.execute(sql, (pool,)).fetchall()]

        return [lease for row in self._run(op, atomic=True) if (lease := row.lease()) is not None]

    # -- events ------------------------------------------------------------------------

    def offer(
        self,
        client_key: bytes,
        mac: str,
        pool: str,
        requested: IPv4Address | None,
        now: float,
        hold: float,
    ) -> Lease | None:
        """Reserve an address for a DISCOVER until `now + hold`; None when the pool is full.

        The client's own lease or offer comes first (a bound lease is returned as it
        is), then its last address if still free, then `requested`, then a free address.
        The reservation is a row other servers see, so they do not offer it meanwhile."""
        args = (client_key, mac, pool, requested, now, now + hold, self.server_id)

        def op(conn: psycopg.Connection[Any]) -> _Row | NotOffered | None:
            return _granted(conn.execute(_OFFER, args).fetchone())

        row = self._run(op, atomic=True)
        return row.lease() if isinstance(row, _Row) else None

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
        """Bind `address` to the client until `expires` (math.inf: BOOTP, for ever).

        Serves SELECTING, INIT-REBOOT, RENEWING and REBINDING alike; with `selecting`
        only the client's own row (what it was offered, or its lease) may be bound
        (else `NOT_OFFERED`). None when the address is in no pool or another client
        holds it (the caller NAKs or stays silent). The client's
        other live row in that pool is released in the same transaction: one lease
        per client, whichever server it asks."""
        args = (client_key, mac, address, now, expires, hostname, self.server_id, selecting)

        def op(conn: psycopg.Connection[Any]) -> _Row | NotOffered | None:
            return _granted(conn.execute(_BIND, args).fetchone())

        row = self._run(op, atomic=True)
        return row.lease() if isinstance(row, _Row) else row

    def release(self, client_key: bytes, address: IPv4Address, now: float) -> Lease | None:
        """DHCPRELEASE: the address is free for everyone at once. None if not the client's."""
        sql = (
            "UPDATE leases SET state = 'released', expires = %(now)s, since = %(now)s, "
            "free_at = %(now)s, owner = %(owner)s WHERE address = %(address)s "
            "AND client = %(client)s AND state = 'bound' RETURNING " + _COLUMNS
        )
        args = {"now": now, "owner": self.server_id, "address": address, "client": client_key}
        row = self._run(lambda conn: _row(conn.execute(sql, args).fetchone()))
        return None if row is None else row.lease()

    def decline(
        self, client_key: bytes, mac: str, address: IPv4Address, now: float, until: float
    ) -> Lease | None:
        """DHCPDECLINE: quarantine the address until `until`. None if not the client's."""
        sql = (
            "UPDATE leases SET state = 'declined', mac = %(mac)s, expires = %(until)s, "
            "since = %(now)s, free_at = %(until)s, owner = %(owner)s, hostname = NULL "
            "WHERE address = %(address)s AND client = %(client)s "
            "AND state IN ('offered', 'bound') RETURNING " + _COLUMNS
        )
        args = {"now": now, "until": until, "owner": self.server_id, "mac": mac}
        args |= {"address": address, "client": client_key}
        row = self._run(lambda conn: _row(conn.execute(sql, args).fetchone()))
        return None if row is None else row.lease()

    def withdraw(self, client_key: bytes, pool: str, now: float) -> None:
        """The client chose another server: free the offer this server made, at once.
        The row stays the client's own (free for everyone): when the server it chose
        binds it after this, even with a clock a little behind ours, that is no NAK.

        A row another server has locked is being bound or re-offered by it: skip it
        rather than wait (a wait would stall this server's whole burst)."""
        sql = (
            "UPDATE leases SET state = 'free', free_at = %s, "
            "since = %s WHERE address IN (SELECT address FROM leases WHERE pool = %s "
            "AND client = %s AND state = 'offered' AND owner = %s FOR UPDATE SKIP LOCKED)"
        )
        args = (now, now, pool, client_key, self.server_id)

        def op(conn: psycopg.Connection[Any]) -> None:
            conn.execute(sql, args)

        self._run(op)

    # -- the servers sharing the database (RFC 3074 balancing, dhcp/balance.py) --------

    def heartbeat(self, addresses: Iterable[IPv4Address] = ()) -> list[tuple[str, float]]:
        """Record that this server is alive and return every server's row as (id,
        seconds since its last heartbeat), this one's included (`peers.beat`)."""
        return self._run(lambda conn: beat(conn, self.server_id, addresses))

    def leave(self) -> None:
        """This server stops: its row goes, so the others take its buckets at once."""
        sql = "DELETE FROM servers WHERE id = %s"
        self._run(lambda conn: conn.execute(sql, (self.server_id,)), attempts=1)

    def close(self) -> None:
        self._link.close()
