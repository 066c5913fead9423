"""DHCPv6 bindings in PostgreSQL, shared by every server that names the same database.

The same store interface as the local stores (`leases.LeaseStore6`), so the one
binding policy (`leases.Bindings`) decides the same way over memory, a SQLite file or
PostgreSQL (tests/dhcp_pg/test_lease_core.py drives all three with the same random
DHCPv6 conversations). What sharing adds is in `claim` and `find`:

- `claim` binds an address in one transaction only when no other client holds it
  (bound, offered by a commit, or declined, and not past its end): the client's other
  bound row of the same IA is released first, and a unique index on (pool, DUID, IAID)
  for bound rows makes "one address per binding" the database's rule, whichever
  server writes; a refused claim returns the holder, and the policy tries its next
  candidate;
- `find` returns a live binding another server made, so a Renew, Rebind, Release or
  Decline reaches any server, and a Solicit gets its address back anywhere.

Every call waits for the network: `blocking` tells the service to run the engine off
its event loop, in `workers` threads (one per pooled connection). The connection
(pool, fault detection, one line when the database goes and comes back) is
`dhcp.pg_link.PgLink`, the schema (version 7: `leases6`) is `dhcp.pg_schema`'s,
migrated when the store opens.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

import psycopg

from ptftpd.dhcp.pg_link import PgLink, PgSettings, RowsBusy
from ptftpd.dhcp6.leases import Lease6, lease_from_row

__all__ = ["PgStore6"]

_COLUMNS = "address, duid, iaid, state, expires, since"
_UPSERT = """
INSERT INTO leases6 (address, pool, duid, iaid, state, expires, since, owner)
VALUES (%(address)s, %(pool)s, %(duid)s, %(iaid)s, %(state)s, %(expires)s, %(since)s, %(owner)s)
ON CONFLICT (address) DO UPDATE SET
    pool = EXCLUDED.pool, duid = EXCLUDED.duid, iaid = EXCLUDED.iaid,
    state = EXCLUDED.state, expires = EXCLUDED.expires, since = EXCLUDED.since,
    owner = EXCLUDED.owner
"""
# The address is free for this client: its own (not declined), released, or past its end.
_FREE_FOR_CLIENT = """
WHERE (leases6.duid = EXCLUDED.duid AND leases6.iaid = EXCLUDED.iaid
       AND leases6.state <> 'declined')
   OR leases6.state = 'released' OR leases6.expires <= %(now)s
RETURNING address
"""


class PgStore6:
    """The bindings of pool `pool` (the prefix, the same on every server serving it)."""

    def __init__(
        self, conninfo: str, server_id: str, pool: str, settings: PgSettings | None = None
    ) -> None:
        self.pool = pool
        self.owner = server_id
        self.blocking = True
        self.workers = (settings or PgSettings()).max_connections  # the service's threads
        self._link = PgLink(conninfo, server_id, settings)
        self.name = self._link.name

    def batch(self) -> AbstractContextManager[None]:
        """One transaction for a group of packets (the service's database lane)."""
        return self._link.batch()

    def savepoint(self) -> AbstractContextManager[None]:
        """Inside `batch`: one packet's calls, undone alone when one fails."""
        return self._link.savepoint()

    def _params(self, lease: Lease6) -> dict[str, Any]:
        return {
            "address": str(lease.address),
            "pool": self.pool,
            "duid": lease.duid,
            "iaid": lease.iaid,
            "state": lease.state.value,
            "expires": lease.expires,
            "since": lease.since,
            "owner": self.owner,
        }

    def load(self) -> list[Lease6]:
        def op(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            sql = f"SELECT {_COLUMNS} FROM leases6 WHERE pool = %s ORDER BY since, address"
            return conn.execute(sql, (self.pool,)).fetchall()

        rows = self._link.run(op, atomic=True)
        return [lease for row in rows if (lease := lease_from_row(row)) is not None]

    def save(self, leases: Iterable[Lease6]) -> None:
        params = [self._params(lease) for lease in leases]

        def op(conn: psycopg.Connection[Any]) -> None:
            with conn.cursor() as cur:
                cur.executemany(_UPSERT, params)

        if params:
            self._link.run(op)

    def claim(self, lease: Lease6, now: float, moved: Iterable[Lease6] = ()) -> Lease6 | None:
        """`moved` needs no write of its own: every other bound row of the client's IA
        is released here, whichever server bound it."""
        params = {**self._params(lease), "now": now}
        # The client's other bound address of this IA goes back (whoever bound it).
        release = """
            UPDATE leases6 SET state = 'released', expires = %(now)s, owner = %(owner)s
             WHERE pool = %(pool)s AND duid = %(duid)s AND iaid = %(iaid)s
               AND address <> %(address)s AND state = 'bound'"""

        def op(conn: psycopg.Connection[Any]) -> Lease6 | None:
            conn.execute(release, params)
            if conn.execute(_UPSERT + _FREE_FOR_CLIENT, params).fetchone() is not None:
                return None
            sql = f"SELECT {_COLUMNS} FROM leases6 WHERE address = %s"
            row = conn.execute(sql, (str(lease.address),)).fetchone()
            holder = lease_from_row(row) if row is not None else None
            if holder is None:
                raise RowsBusy("the row changed between two statements")  # the link retries
            return holder

        return self._link.run(op)

    def find(self, duid: bytes, iaid: int, now: float) -> Lease6 | None:
        def op(conn: psycopg.Connection[Any]) -> tuple[Any, ...] | None:
            sql = (
                f"SELECT {_COLUMNS} FROM leases6 WHERE pool = %s AND duid = %s AND iaid = %s"
                " AND state = 'bound' AND expires > %s ORDER BY expires DESC LIMIT 1"
            )
            return conn.execute(sql, (self.pool, duid, iaid, now)).fetchone()

        row = self._link.run(op, atomic=True)
        return lease_from_row(row) if row is not None else None

    def close(self) -> None:
        self._link.close()
