"""The lease database's schema, versioned: created or migrated when a server starts.

`schema_version` holds one row. Each migration runs in one transaction under an advisory
lock, so servers starting together migrate once and never see half a schema; a database
newer than this code is refused rather than written with the wrong assumptions.

Version 1: pools and one row per pool address, with the free-address index.
Version 2: the server that made each offer or lease (`owner`), and the database-enforced
rule of one live (offered or bound) row per client key per pool.
"""

from __future__ import annotations

from typing import Any

import psycopg

__all__ = ["LATEST_VERSION", "MIGRATIONS", "SchemaTooNew", "migrate", "schema_version"]

_LOCK_KEY = 0x7074667470640D  # "ptftpd" + issue 13: one advisory lock for migrations

MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE pools (
            id        text PRIMARY KEY,
            first     inet NOT NULL,
            last      inet NOT NULL,
            excluded  inet[] NOT NULL DEFAULT '{}'
        )""",
        """CREATE TABLE leases (
            address   inet PRIMARY KEY,
            pool      text NOT NULL REFERENCES pools (id),
            state     text NOT NULL CHECK (state IN
                          ('free', 'offered', 'bound', 'released', 'expired', 'declined')),
            client    bytea,
            mac       text,
            expires   double precision,
            hostname  text,
            since     double precision,
            free_at   double precision NOT NULL
        )""",
        # Free-address search: never used (-infinity) first, then free the longest.
        "CREATE INDEX leases_free ON leases (pool, free_at, address)",
        "CREATE INDEX leases_client ON leases (client, pool)",
    ),
    2: (
        "ALTER TABLE leases ADD COLUMN owner text",
        "CREATE UNIQUE INDEX leases_live_client ON leases (pool, client) "
        "WHERE state IN ('offered', 'bound')",
    ),
}
LATEST_VERSION = max(MIGRATIONS)


class SchemaTooNew(psycopg.Error):
    """The database was migrated by a newer ptftpd."""


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """0 for an empty database."""
    exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return 0 if row is None else int(row[0])


def migrate(conn: psycopg.Connection[Any], target: int = LATEST_VERSION) -> int:
    """Bring the schema up to `target` (idempotent); return the version now in place."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        current = schema_version(conn)
        if current > LATEST_VERSION:
            raise SchemaTooNew(
                f"the lease schema is version {current}, newer than this server's "
                f"{LATEST_VERSION}: upgrade ptftpd"
            )
        if current == 0:
            conn.execute("INSERT INTO schema_version VALUES (0)")
        for version in range(current + 1, target + 1):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = %s", (version,))
        return max(current, target)
