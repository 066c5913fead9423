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
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import psycopg

from ptftpd.dhcp.free_index import address_of, key_of, probe_start, probes
from ptftpd.dhcp.lease_store import (
    NOT_OFFERED,
    Caps,
    Claim,
    IPAddress,
    IPs,
    Lease,
    LeaseState,
    NotOffered,
)
from ptftpd.dhcp.peers import beat
from ptftpd.dhcp.pg_link import (
    PgLink,
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
    "PgLink",
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
    address: IPAddress
    client: bytes | None
    mac: str | None
    state: str
    expires: float | None
    hostname: str | None
    since: float | None

    def lease(self, now: float | None = None) -> Lease[Any] | None:
        if self.state == "free" or self.client is None:
            return None
        lease: Lease[Any] = Lease(
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


def _addresses(addrs: Iterable[IPAddress], most: int = 8) -> str:
    shown = [str(a) for a in sorted(addrs)]
    if len(shown) > most:
        return ", ".join(shown[:most]) + f" and {len(shown) - most} more"
    return ", ".join(shown)


def pool_difference(
    pool: str,
    where: str,
    theirs: tuple[IPAddress, IPAddress, list[IPAddress]],
    ours: tuple[IPAddress, IPAddress, list[IPAddress]],
) -> str:
    """What differs between the database's definition of `pool` and this server's:
    the range, then the addresses excluded by only one of them (gateways, static
    hosts, excluded addresses)."""
    parts = []
    if theirs[:2] != ours[:2]:
        parts.append(f"range {theirs[0]}-{theirs[1]} in the database, {ours[0]}-{ours[1]} here")
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

# Sparse (IPv6) pools: the client's live row (one per IA: leases_live_client).
_LIVE_ROW = (
    f"SELECT {_COLUMNS} FROM leases WHERE pool = %s AND client = %s "
    "AND state IN ('offered', 'bound') AND free_at > %s LIMIT 1"
)
_SERVER_ROWS = (
    "INSERT INTO leases (address, pool, state, free_at, owner) "
    "SELECT a, %s, 'server', 'infinity', %s FROM unnest(%s::inet[]) AS a "
    "ON CONFLICT (address) DO UPDATE SET state = 'server', client = NULL, mac = NULL, "
    "expires = NULL, hostname = NULL, since = NULL, free_at = 'infinity', "
    "owner = EXCLUDED.owner"
)
# Schema 7's DHCPv6 table, moved into `leases` when its pool is opened: the key is
# the DUID and the IAID's 4 bytes, `mac` the DUID in hex (the per-client limit).
_FROM_LEASES6 = (
    "INSERT INTO leases (address, pool, state, client, mac, expires, since, free_at, owner) "
    "SELECT address, pool, state, duid || decode(lpad(to_hex(iaid), 8, '0'), 'hex'), "
    "encode(duid, 'hex'), expires, since, "
    "CASE state WHEN 'released' THEN since ELSE expires END, owner "
    "FROM leases6 WHERE pool = %s ON CONFLICT (address) DO NOTHING"
)
_COUNT = (
    "SELECT count(*) FILTER (WHERE mac = %(mac)s AND state IN ('offered', 'bound')), "
    "count(*) FILTER (WHERE state = 'offered'), "
    "count(*) FILTER (WHERE state IN ('bound', 'declined')) "
    "FROM leases WHERE pool = %(pool)s AND free_at > %(now)s"
)
_PUSH_OUT = (
    "UPDATE leases SET state = 'free', expires = %(now)s, since = %(now)s, "
    "free_at = %(now)s, hostname = NULL WHERE address = (SELECT address FROM leases "
    "WHERE pool = %(pool)s AND state = 'offered' AND free_at > %(now)s "
    "ORDER BY free_at, address LIMIT 1 FOR UPDATE)"
)
_LET_GO = (
    "UPDATE leases SET state = CASE state WHEN 'bound' THEN 'released' ELSE 'free' END, "
    "hostname = CASE state WHEN 'bound' THEN hostname END, "
    "expires = %(now)s, since = %(now)s, free_at = %(now)s "
    "WHERE pool = %(pool)s AND client = %(client)s AND state IN ('offered', 'bound') "
    "AND address IS DISTINCT FROM %(own)s"
)
# Take `address` for the client when it is free (no row, or past its end) or the
# client's own live row; nothing returned when another holds it or its row is locked.
_TAKE = (
    "INSERT INTO leases (address, pool, state, client, mac, expires, hostname, since, "
    "free_at, owner) VALUES (%(address)s, %(pool)s, %(state)s, %(client)s, %(mac)s, "
    "%(until)s, NULL, %(now)s, %(until)s, %(owner)s) "
    "ON CONFLICT (address) DO UPDATE SET state = EXCLUDED.state, client = EXCLUDED.client, "
    "mac = EXCLUDED.mac, expires = EXCLUDED.expires, hostname = NULL, "
    "since = EXCLUDED.since, free_at = EXCLUDED.free_at, owner = EXCLUDED.owner "
    "WHERE leases.pool = EXCLUDED.pool AND (leases.free_at <= %(now)s OR "
    "(leases.client = EXCLUDED.client AND leases.state IN ('offered', 'bound'))) "
    f"RETURNING {_COLUMNS}"
)
_PROBE_BATCH = 64

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
    """Leases in PostgreSQL, shared by every server that names the same database,
    over `link` (pg_link.PgLink: the connections, faults and reconnection).

    The link's owner (the server identifier address, or any stable name) is recorded
    as the owner of the offers and leases this server makes, for operators and for
    `withdraw`. Lease times are the `now` each call is given, as in the sans-IO lease
    policy; the link's clock is only for its reconnection backoff.
    """

    def __init__(self, link: PgLink) -> None:
        self.server_id = link.owner
        # Every operation waits for the network: the server runs them off its event
        # loop, in as many threads as the pool has connections.
        self.blocking = True
        self.workers = link.max_connections
        self._link = link
        self._run = link.run
        self.name = link.name
        # Sparse (IPv6) pools: first and last row key, the excluded keys.
        self._sparse: dict[str, tuple[int, int, frozenset[int]]] = {}

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
        self, pool: str, first: IPAddress, last: IPAddress, excluded: IPs = (), own: IPs = ()
    ) -> int:
        """Create the pool's address rows, or check that the database defines it as we do.

        Every server sharing the database must define each pool id with the same range
        and exclusions (gateways, static hosts, excluded addresses): a different
        definition raises `PoolMismatch`, naming the difference, rather than letting two
        servers disagree on the free list. This server's `own` addresses are not part
        of the definition (each server has its own): they are reserved in the rows
        (state 'server', never free), so no server offers them.

        An IPv6 pool (a DHCPv6 prefix) is sparse: a row is made when an address is
        first offered or bound (`assign`), never for the whole range; the bindings an
        older version kept in `leases6` move into `leases` here, once."""
        lo, hi = key_of(first), key_of(last)
        size = hi - lo + 1
        sparse = first.version == 6
        if size <= 0 or (size > MAX_POOL_SIZE and not sparse):
            raise PgStoreError(
                f"pool {pool}: {first}-{last} must hold 1 to {MAX_POOL_SIZE} addresses"
            )
        skip = sorted({a for a in excluded if lo <= key_of(a) <= hi}, key=key_of)
        mine = sorted({a for a in own if lo <= key_of(a) <= hi and a not in skip}, key=key_of)

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
                raise PoolMismatch(pool_difference(pool, self.name, theirs, (first, last, skip)))
            other = conn.execute(
                "SELECT pool FROM leases WHERE address BETWEEN %s AND %s AND pool <> %s LIMIT 1",
                (first, last, pool),
            ).fetchone()
            if other is not None:
                raise PoolMismatch(f"pool {pool} overlaps pool {other[0]} in {self.name}")
            if sparse:
                conn.execute(_SERVER_ROWS, (pool, self.server_id, mine))
                conn.execute(_FROM_LEASES6, (pool,))
                conn.execute("DELETE FROM leases6 WHERE pool = %s", (pool,))
                return size - len(skip) - len(mine)
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

        size = self._run(op, attempts=1)
        if sparse:
            self._sparse[pool] = (lo, hi, frozenset(key_of(a) for a in skip))
        return size

    # -- queries -----------------------------------------------------------------------

    def lookup(self, client_key: bytes, pool: str, now: float) -> Lease[Any] | None:
        """The client's live lease or offer in `pool`, else its last one; None if none.

        This is how a client that renews or rebinds at another server is recognised."""

        def op(conn: psycopg.Connection[Any]) -> _Row | None:
            if pool in self._sparse:
                return _row(conn.execute(_LIVE_ROW, (pool, client_key, now)).fetchone())
            return _row(conn.execute(_CLIENT_ROW, (pool, client_key)).fetchone())

        row = self._run(op, atomic=True)
        return None if row is None else row.lease(now)

    def held(self, client_key: bytes, address: IPAddress, now: float) -> bool:
        """Does another client hold `address` (a live or quarantined row)?"""
        sql = (
            "SELECT 1 FROM leases WHERE address = %s AND free_at > %s AND NOT "
            "COALESCE(client = %s AND state <> 'declined', false)"
        )

        def op(conn: psycopg.Connection[Any]) -> bool:
            return conn.execute(sql, (address, now, client_key)).fetchone() is not None

        return self._run(op, atomic=True)

    def get(self, address: IPAddress, now: float) -> Lease[Any] | None:
        """Who holds (or last held) `address`; None when free or in no pool."""

        def op(conn: psycopg.Connection[Any]) -> _Row | None:
            sql = f"SELECT {_COLUMNS} FROM leases WHERE address = %s"
            return _row(conn.execute(sql, (address,)).fetchone())

        row = self._run(op, atomic=True)
        return None if row is None else row.lease(now)

    def leases(self, pool: str | None = None) -> list[Lease[Any]]:
        """Every address that is or was leased, offered or declined (for listings)."""

        def op(conn: psycopg.Connection[Any]) -> list[_Row]:
            sql = f"SELECT {_COLUMNS} FROM leases WHERE state <> 'free'"
            if pool is None:
                return [_Row(*r) for r in conn.execute(sql + " ORDER BY address").fetchall()]
            sql += " AND pool = %s ORDER BY address"
            return [_Row(*r) for r in conn.execute(sql, (pool,)).fetchall()]

        return [lease for row in self._run(op, atomic=True) if (lease := row.lease()) is not None]

    def ended(self, since: float, now: float) -> tuple[list[Lease[Any]], float | None]:
        """The bound leases whose end is in (since, now], and the next end after `now`
        (None: none): what a sweep of `dhcp/shared_expiry.py` reads, both families."""

        def op(conn: psycopg.Connection[Any]) -> tuple[list[_Row], float | None]:
            sql = f"SELECT {_COLUMNS} FROM leases WHERE state = 'bound' AND expires > %s"
            rows = [_Row(*r) for r in conn.execute(sql + " AND expires <= %s", (since, now))]
            sql = "SELECT min(expires) FROM leases WHERE state = 'bound' AND expires > %s"
            found = conn.execute(sql, (now,)).fetchone()
            return rows, None if found is None else found[0]

        rows, upcoming = self._run(op, atomic=True)
        return [lease for row in rows if (lease := row.lease()) is not None], upcoming

    # -- events ------------------------------------------------------------------------

    def offer(self, claim: Claim, pool: str, requested: IPAddress | None) -> Lease[Any] | None:
        """Reserve an address for a DISCOVER until `claim.until`; None when the pool is full.

        The client's own lease or offer comes first (a bound lease is returned as it
        is), then its last address if still free, then `requested`, then a free address.
        The reservation is a row other servers see, so they do not offer it meanwhile."""
        args = (claim.client_key, claim.mac, pool, requested, claim.now, claim.until)
        row = self._grant(_OFFER, (*args, self.server_id))
        return row.lease() if isinstance(row, _Row) else None

    def bind(
        self, claim: Claim, address: IPAddress, name: str | None = None, *, selecting: bool = False
    ) -> Lease[Any] | NotOffered | None:
        """Bind `address` to the client until `claim.until` (math.inf: BOOTP, for ever),
        with the host name `name` (else the one the row has, if the client's).

        Serves SELECTING, INIT-REBOOT, RENEWING and REBINDING alike; with `selecting`
        only the client's own row (what it was offered, or its lease) may be bound
        (else `NOT_OFFERED`). None when the address is in no pool or another client
        holds it (the caller NAKs or stays silent). The client's
        other live row in that pool is released in the same transaction: one lease
        per client, whichever server it asks."""
        args = (claim.client_key, claim.mac, address, claim.now, claim.until, name)
        row = self._grant(_BIND, (*args, self.server_id, selecting))
        return row.lease() if isinstance(row, _Row) else row

    def _grant(self, function: str, args: tuple[Any, ...]) -> _Row | NotOffered | None:
        """One call of ptftpd_offer or ptftpd_bind (`_granted` reads its row)."""

        def op(conn: psycopg.Connection[Any]) -> _Row | NotOffered | None:
            return _granted(conn.execute(function, args).fetchone())

        return self._run(op, atomic=True)

    def assign(
        self, claim: Claim, pool: str, requested: IPAddress | None, *, bind: bool, caps: Caps
    ) -> Lease[Any] | None:
        """A sparse pool's offer or binding, in one transaction: the twin of
        `LocalLeases.assign` (its docstring says what each step does). The caps are
        counted in the rows, so they hold across the servers sharing them; a row
        another server's transaction holds is skipped, not waited for."""
        client_key, now = claim.client_key, claim.now
        first, last, excluded = self._sparse[pool]
        max_offers, max_per_client, max_bindings = caps
        args: dict[str, Any] = {"pool": pool, "client": client_key, "mac": claim.mac, "now": now}
        args |= {"until": claim.until, "owner": self.server_id}
        args["state"] = "bound" if bind else "offered"

        def op(conn: psycopg.Connection[Any]) -> _Row | None:
            own = _row(conn.execute(_LIVE_ROW + " FOR UPDATE", (pool, client_key, now)).fetchone())
            if own is not None and own.state == "bound" and not bind:
                return own
            if not (own is not None and (own.state == "bound" or not bind)):
                row = conn.execute(_COUNT, args).fetchone()
                assert row is not None
                mine, offers, held = row
                if own is None and mine >= max_per_client:
                    return None
                if bind and held >= max_bindings:
                    return None
                if not bind:
                    for _ in range(offers - max_offers + 1):
                        conn.execute(_PUSH_OUT, args)
            conn.execute(_LET_GO, {**args, "own": None if own is None else own.address})
            if own is not None:
                return _row(conn.execute(_TAKE, {**args, "address": own.address}).fetchone())
            if requested is not None and key_of(requested) not in excluded:
                taken = conn.execute(_TAKE, {**args, "address": requested}).fetchone()
                if taken is not None:
                    return _Row(*taken)
            keys = [k for k in probes(first, last, probe_start(client_key, last - first + 1))]
            for i in range(0, len(keys), _PROBE_BATCH):
                batch = [address_of(k) for k in keys[i : i + _PROBE_BATCH] if k not in excluded]
                rows = conn.execute(
                    "SELECT address, free_at FROM leases WHERE address = ANY(%s::inet[])",
                    (batch,),
                ).fetchall()
                busy = {a for a, free_at in rows if free_at > now}
                for address in batch:
                    if address in busy:
                        continue
                    taken = conn.execute(_TAKE, {**args, "address": address}).fetchone()
                    if taken is not None:
                        return _Row(*taken)
            return None

        row = self._run(op)
        return None if row is None else row.lease()

    def release(self, client_key: bytes, address: IPAddress, now: float) -> Lease[Any] | None:
        """DHCPRELEASE: the address is free for everyone at once. None if not the client's."""
        sql = (
            "UPDATE leases SET state = 'released', expires = %(now)s, since = %(now)s, "
            "free_at = %(now)s, owner = %(owner)s WHERE address = %(address)s "
            "AND client = %(client)s AND state = 'bound' RETURNING " + _COLUMNS
        )
        args = {"now": now, "owner": self.server_id, "address": address, "client": client_key}
        row = self._run(lambda conn: _row(conn.execute(sql, args).fetchone()))
        return None if row is None else row.lease()

    def decline(self, claim: Claim, address: IPAddress) -> Lease[Any] | None:
        """DHCPDECLINE: quarantine the address until `claim.until`. None if not the client's."""
        sql = (
            "UPDATE leases SET state = 'declined', mac = %(mac)s, expires = %(until)s, "
            "since = %(now)s, free_at = %(until)s, owner = %(owner)s, hostname = NULL "
            "WHERE address = %(address)s AND client = %(client)s "
            "AND state IN ('offered', 'bound') RETURNING " + _COLUMNS
        )
        args = {"now": claim.now, "until": claim.until, "owner": self.server_id, "mac": claim.mac}
        args |= {"address": address, "client": claim.client_key}
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

    def heartbeat(self, addresses: Iterable[IPAddress] = ()) -> list[tuple[str, float]]:
        """Record that this server is alive and return every server's row as (id,
        seconds since its last heartbeat), this one's included (`peers.beat`)."""
        return self._run(lambda conn: beat(conn, self.server_id, addresses))

    def leave(self) -> None:
        """This server stops: its row goes, so the others take its buckets at once."""
        sql = "DELETE FROM servers WHERE id = %s"
        self._run(lambda conn: conn.execute(sql, (self.server_id,)), attempts=1)

    def close(self) -> None:
        self._link.close()
