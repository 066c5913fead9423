"""The lease database's schema, versioned: created or migrated when a server starts.

`schema_version` holds one row. Each migration runs in one transaction under an advisory
lock, so servers starting together migrate once and never see half a schema; a database
newer than this code is refused rather than written with the wrong assumptions.

Version 1: pools and one row per pool address, with the free-address index.
Version 2: the server that made each offer or lease (`owner`), and the database-enforced
rule of one live (offered or bound) row per client key per pool.
Version 3: offer and bind as server-side functions (one round trip each).
Version 4: bind for a SELECTING client takes only its own row (what it was offered).
Version 5: the servers sharing the database (`servers`: one row each, its addresses and
its heartbeat), and the 'server' state: a server's own address reserved in the rows
for everyone, so it is not part of the pool definition the servers compare.
Version 6: pxed's boot records (`boot_attempts`, pxe/boot_records.py), a table of their own.
Version 7: DHCPv6 bindings (`leases6`: one row per address, keyed by pool, DUID and
IAID), with the database-enforced rule of one bound address per binding.
Version 8: pxed's machine states (`machine_states`, pxe/machine_state.py): boot local
or install, per MAC, shared by every server of the database.
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
_RESULT = (
    "o_status text, o_address inet, o_client bytea, o_mac text, o_state text, "
    "o_expires double precision, o_hostname text, o_since double precision"
)
_BUSY_RESULT = (
    "RETURN QUERY SELECT 'busy'::text, NULL::inet, NULL::bytea, NULL::text, NULL::text, "
    "NULL::float8, NULL::text, NULL::float8;"
)
# Raced by another server: report 'busy' (the caller retries or stays silent) instead of
# aborting the caller's transaction, which may hold a whole burst of grants.
_ON_RACE = (
    "EXCEPTION WHEN unique_violation OR lock_not_available OR deadlock_detected "
    "OR serialization_failure OR query_canceled THEN " + _BUSY_RESULT
)

# Version 3: offer and bind as functions, one round trip each instead of four or five,
# and no savepoint needed inside a burst (the EXCEPTION block is one).
_OFFER = f"""
CREATE FUNCTION ptftpd_offer(
    p_client bytea, p_mac text, p_pool text, p_requested inet,
    p_now double precision, p_until double precision, p_owner text)
RETURNS TABLE ({_RESULT}) LANGUAGE plpgsql AS $fn$
DECLARE
    own record;
    target inet;
BEGIN
    -- The client's own row first: its lease, its offer (from any server), its last one.
    SELECT l.address, l.state, l.expires, l.since INTO own FROM leases l
     WHERE l.pool = p_pool AND l.client = p_client AND l.state <> 'declined'
     ORDER BY l.state IN ('offered', 'bound') DESC, l.since DESC NULLS LAST
     LIMIT 1 FOR UPDATE;
    IF FOUND THEN
        IF own.state = 'bound' AND COALESCE(own.expires, 'infinity') > p_now THEN
            RETURN QUERY SELECT 'ok'::text, l.address, l.client, l.mac, l.state, l.expires,
                l.hostname, l.since FROM leases l WHERE l.address = own.address;
            RETURN;
        END IF;
        IF own.state IN ('offered', 'bound') OR COALESCE(own.since, 0) <= p_now THEN
            target := own.address;
        END IF;
    END IF;
    IF target IS NULL AND p_requested IS NOT NULL THEN
        SELECT l.address INTO target FROM leases l
         WHERE l.address = p_requested AND l.pool = p_pool AND l.free_at <= p_now
         FOR UPDATE SKIP LOCKED;
    END IF;
    IF target IS NULL THEN
        -- The free-address search: a range scan of leases_free, skipping rows that
        -- other servers' transactions hold.
        SELECT l.address INTO target FROM leases l
         WHERE l.pool = p_pool AND l.free_at <= p_now
         ORDER BY l.free_at, l.address LIMIT 1 FOR UPDATE SKIP LOCKED;
    END IF;
    IF target IS NULL THEN
        RETURN;  -- the pool is full
    END IF;
    RETURN QUERY UPDATE leases l SET state = 'offered', client = p_client, mac = p_mac,
        owner = p_owner, expires = p_until, free_at = p_until, since = p_now,
        hostname = CASE WHEN l.client = p_client THEN l.hostname END
     WHERE l.address = target
     RETURNING 'ok'::text, l.address, l.client, l.mac, l.state, l.expires, l.hostname, l.since;
{_ON_RACE}
END
$fn$"""

_BIND = f"""
CREATE FUNCTION ptftpd_bind(
    p_client bytea, p_mac text, p_address inet, p_now double precision,
    p_expires double precision, p_hostname text, p_owner text)
RETURNS TABLE ({_RESULT}) LANGUAGE plpgsql AS $fn$
DECLARE
    cur record;
BEGIN
    SELECT l.pool, l.client, l.state, l.free_at INTO cur FROM leases l
     WHERE l.address = p_address FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;  -- in no pool
    END IF;
    IF NOT COALESCE(cur.client = p_client AND cur.state <> 'declined', false)
       AND cur.free_at > p_now THEN
        RETURN;  -- another client's
    END IF;
    -- One lease per client per pool: its other live row goes, in the same transaction.
    UPDATE leases l SET state = CASE l.state WHEN 'bound' THEN 'released' ELSE 'free' END,
        client = CASE l.state WHEN 'bound' THEN l.client END,
        mac = CASE l.state WHEN 'bound' THEN l.mac END,
        expires = p_now, since = p_now, free_at = p_now
     WHERE l.pool = cur.pool AND l.client = p_client AND l.state IN ('offered', 'bound')
       AND l.address <> p_address;
    RETURN QUERY UPDATE leases l SET state = 'bound', client = p_client, mac = p_mac,
        owner = p_owner, expires = p_expires, free_at = p_expires, since = p_now,
        hostname = COALESCE(p_hostname, CASE WHEN l.client = p_client THEN l.hostname END)
     WHERE l.address = p_address
     RETURNING 'ok'::text, l.address, l.client, l.mac, l.state, l.expires, l.hostname, l.since;
{_ON_RACE}
END
$fn$"""

MIGRATIONS[3] = (_OFFER, _BIND)

# Version 4: SELECTING asks the bind to confirm the address is the client's own row
# (offered to it, or its lease): a client may not take a free address it was never
# offered by naming this server (the rule the local store always had).
_BIND_SELECTING = f"""
CREATE FUNCTION ptftpd_bind(
    p_client bytea, p_mac text, p_address inet, p_now double precision,
    p_expires double precision, p_hostname text, p_owner text, p_selecting boolean)
RETURNS TABLE ({_RESULT}) LANGUAGE plpgsql AS $fn$
DECLARE
    own boolean;
BEGIN
    SELECT COALESCE(l.client = p_client AND l.state <> 'declined', false) INTO own
      FROM leases l WHERE l.address = p_address FOR UPDATE;
    IF FOUND AND p_selecting AND NOT own THEN
        RETURN QUERY SELECT 'unoffered'::text, p_address, NULL::bytea, NULL::text,
            NULL::text, NULL::float8, NULL::text, NULL::float8;
        RETURN;
    END IF;
    RETURN QUERY SELECT * FROM ptftpd_bind(
        p_client, p_mac, p_address, p_now, p_expires, p_hostname, p_owner);
{_ON_RACE}
END
$fn$"""

MIGRATIONS[4] = (_BIND_SELECTING,)
MIGRATIONS[5] = (
    """CREATE TABLE servers (
        id        text PRIMARY KEY,
        addresses inet[] NOT NULL DEFAULT '{}',
        heartbeat double precision NOT NULL,
        started   double precision NOT NULL
    )""",
    "ALTER TABLE leases DROP CONSTRAINT leases_state_check",
    "ALTER TABLE leases ADD CONSTRAINT leases_state_check CHECK (state IN "
    "('free', 'offered', 'bound', 'released', 'expired', 'declined', 'server'))",
)

# Version 6: one row per boot attempt per server (pxe/boot_records.py), pruned by age.
MIGRATIONS[6] = (
    """CREATE TABLE boot_attempts (
        id       text PRIMARY KEY,
        server   text NOT NULL,
        mac      text NOT NULL,
        state    text NOT NULL,
        started  double precision NOT NULL,
        updated  double precision NOT NULL,
        record   text NOT NULL
    )""",
    "CREATE INDEX boot_attempts_updated ON boot_attempts (updated)",
    "CREATE INDEX boot_attempts_mac ON boot_attempts (mac, started)",
)

# Version 7: DHCPv6 bindings of the time (since then a sparse pool's rows in `leases`:
# pg_store.PgStore moves a prefix's rows when it opens the pool).
MIGRATIONS[7] = (
    """CREATE TABLE leases6 (
        address  inet PRIMARY KEY,
        pool     text NOT NULL,
        duid     bytea NOT NULL,
        iaid     bigint NOT NULL,
        state    text NOT NULL CHECK (state IN ('offered', 'bound', 'released', 'declined')),
        expires  double precision NOT NULL,
        since    double precision NOT NULL,
        owner    text
    )""",
    "CREATE UNIQUE INDEX leases6_one_per_binding ON leases6 (pool, duid, iaid) "
    "WHERE state = 'bound'",
    "CREATE INDEX leases6_pool ON leases6 (pool)",
)

# Version 8: one row per machine marked local or install (pxe/machine_state.py).
MIGRATIONS[8] = (
    """CREATE TABLE machine_states (
        mac      text PRIMARY KEY,
        state    text NOT NULL,
        updated  double precision NOT NULL
    )""",
)
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
