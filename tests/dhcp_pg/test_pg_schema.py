"""Schema creation, migration and start-up errors against a real PostgreSQL."""

from __future__ import annotations

import threading

import psycopg
import pytest
from pgtest import HOLD, NOW, POOL, Stores, ip

from ptftpd.dhcp.lease_store import Claim
from ptftpd.dhcp.leases import LeaseState
from ptftpd.dhcp.pg_schema import LATEST_VERSION, migrate, schema_version
from ptftpd.dhcp.pg_store import (
    PgLink,
    PgStore,
    PgStoreError,
    PoolMismatch,
    init_schema,
)
from support.postgres import PgCluster


def tables(stores: Stores) -> list[tuple[str, str]]:
    return [
        (t, c)
        for t, c in stores.sql(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY table_name, column_name"
        )
    ]


def test_init_schema_creates_then_is_idempotent(stores: Stores) -> None:
    assert init_schema(stores.uri) == LATEST_VERSION
    first = tables(stores)
    indexes = stores.sql("SELECT indexname FROM pg_indexes WHERE tablename = 'leases'")
    assert init_schema(stores.uri) == LATEST_VERSION
    stores("a")  # a server starting on the migrated database changes nothing either
    assert tables(stores) == first
    assert ("leases", "owner") in first and ("leases", "free_at") in first
    assert {i for (i,) in indexes} >= {"leases_pkey", "leases_free", "leases_live_client"}
    assert stores.sql("SELECT version FROM schema_version") == [(LATEST_VERSION,)]


def test_servers_starting_together_migrate_once(stores: Stores) -> None:
    results: list[object] = []

    def start() -> None:
        try:
            results.append(init_schema(stores.uri))
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [LATEST_VERSION] * 4
    assert stores.sql("SELECT version FROM schema_version") == [(LATEST_VERSION,)]


def test_migrates_a_previous_version_keeping_its_leases(stores: Stores) -> None:
    with psycopg.connect(stores.uri, autocommit=True) as conn:
        assert migrate(conn, LATEST_VERSION - 1) == LATEST_VERSION - 1
        assert schema_version(conn) == LATEST_VERSION - 1
        conn.execute(
            "INSERT INTO pools VALUES (%s, %s, %s, '{}')", (POOL, ip("10.1.0.1"), ip("10.1.0.2"))
        )
        conn.execute(
            "INSERT INTO leases (address, pool, state, client, mac, expires, since, free_at) "
            "VALUES ('10.1.0.1', %s, 'bound', %s, 'aa', %s, %s, %s), "
            "('10.1.0.2', %s, 'free', NULL, NULL, NULL, NULL, '-infinity')",
            (POOL, b"old", NOW + 100, NOW, NOW + 100, POOL),
        )
    store = stores("a")
    assert stores.sql("SELECT version FROM schema_version") == [(LATEST_VERSION,)]
    lease = store.lookup(b"old", POOL, NOW)
    assert lease is not None and lease.address == ip("10.1.0.1")
    assert lease.state is LeaseState.BOUND
    # The new rule is in force: the old client cannot be given a second live address.
    with pytest.raises(psycopg.errors.UniqueViolation):
        stores.sql(
            "UPDATE leases SET state = 'offered', client = %s WHERE address = '10.1.0.2'", (b"old",)
        )
    assert store.ensure_pool(POOL, ip("10.1.0.1"), ip("10.1.0.2")) == 2
    assert store.offer(Claim(b"new", "bb", NOW, NOW + 30), POOL, None) is not None


def test_newer_schema_is_refused_in_one_line(stores: Stores) -> None:
    init_schema(stores.uri)
    stores.sql("UPDATE schema_version SET version = %s", (LATEST_VERSION + 1,))
    with pytest.raises(PgStoreError) as info:
        PgStore(PgLink(stores.uri, "a"))
    message = str(info.value)
    assert "newer" in message and "\n" not in message


@pytest.mark.parametrize("opener", ["store", "init_schema"])
def test_unreachable_database_is_one_line_without_the_password(opener: str) -> None:
    uri = "postgresql://ptftpd:s3cret@/nowhere?host=/nonexistent-ptftpd-socket-dir&port=5432"
    with pytest.raises(PgStoreError) as info:
        if opener == "store":
            PgStore(PgLink(uri, "a", connect_timeout=2))
        else:
            init_schema(uri, connect_timeout=2)
    message = str(info.value)
    assert message.startswith("cannot reach postgresql ptftpd@/nonexistent-ptftpd-socket-dir")
    assert "\n" not in message and "s3cret" not in message


def test_servers_starting_together_define_a_big_pool_once(stores: Stores) -> None:
    first, last = ip("10.3.0.0"), ip("10.3.127.255")
    servers = [stores(f"s{n}") for n in range(3)]
    results: list[object] = []

    def start(store: PgStore) -> None:
        try:
            results.append(store.ensure_pool(POOL, first, last, [first]))
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == [32767] * 3
    assert stores.sql("SELECT count(*) FROM leases") == [(32767,)]


def test_a_server_with_another_pool_definition_is_refused(stores: Stores) -> None:
    a, b = stores("a"), stores("b")
    assert a.ensure_pool(POOL, ip("10.2.0.10"), ip("10.2.0.20"), [ip("10.2.0.15")]) == 10
    assert b.ensure_pool(POOL, ip("10.2.0.10"), ip("10.2.0.20"), [ip("10.2.0.15")]) == 10
    with pytest.raises(PoolMismatch, match=r"excluded only in the database: 10\.2\.0\.15 "):
        b.ensure_pool(POOL, ip("10.2.0.10"), ip("10.2.0.20"))  # a static host missing
    with pytest.raises(PoolMismatch, match=r"range 10.2.0.10-10.2.0.20 in the database, "
                       r"10.2.0.10-10.2.0.19 here; excluded only here: 10.2.0.11 \("):
        b.ensure_pool(POOL, ip("10.2.0.10"), ip("10.2.0.19"), [ip("10.2.0.11"), ip("10.2.0.15")])
    with pytest.raises(PoolMismatch, match="overlaps"):
        b.ensure_pool("other", ip("10.2.0.20"), ip("10.2.0.30"))
    assert stores.sql("SELECT count(*) FROM leases") == [(10,)]
    with pytest.raises(PgStoreError, match="must hold 1 to"):
        b.ensure_pool("huge", ip("10.0.0.0"), ip("10.255.255.255"))  # a /8: 16 M rows


def test_each_servers_own_address_is_reserved_for_all_and_not_compared(stores: Stores) -> None:
    """Issue 25 item 1: two servers' own addresses differ, their pools do not: each
    own address is a 'server' row nobody is offered or may bind."""
    a, b = stores("10.3.0.1"), stores("10.3.0.2")
    first, last = ip("10.3.0.1"), ip("10.3.0.6")
    assert a.ensure_pool(POOL, first, last, [ip("10.3.0.5")], [ip("10.3.0.1")]) == 4
    assert b.ensure_pool(POOL, first, last, [ip("10.3.0.5")], [ip("10.3.0.2")]) == 4
    rows = stores.sql("SELECT host(address), owner FROM leases WHERE state = 'server' ORDER BY 1")
    assert rows == [("10.3.0.1", "10.3.0.1"), ("10.3.0.2", "10.3.0.2")]
    offered = [
        a.offer(Claim(b"c%d" % n, "aa", NOW, NOW + HOLD), POOL, ip("10.3.0.2")) for n in range(5)
    ]
    got = sorted(str(o.address) for o in offered if o is not None)
    assert got == ["10.3.0.3", "10.3.0.4", "10.3.0.6"]
    assert b.bind(Claim(b"x", "bb", NOW, NOW + 60), ip("10.3.0.1")) is None
    assert b.lookup(b"x", POOL, NOW) is None and a.leases(POOL)[0].address == ip("10.3.0.3")


def test_the_cluster_serves_its_socket_and_loopback_only(
    pg_cluster: PgCluster, pg_database: str
) -> None:
    dbname = pg_database.split("/")[-1].split("?")[0]
    store = PgStore(PgLink(pg_cluster.tcp_uri(dbname), "tcp"))
    try:
        assert store.ensure_pool(POOL, ip("10.4.0.1"), ip("10.4.0.9")) == 9
    finally:
        store.close()
    assert pg_cluster.psql("SHOW listen_addresses") == "127.0.0.1"
    assert pg_cluster.psql("SHOW unix_socket_directories") == str(pg_cluster.socket_dir)
