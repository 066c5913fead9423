"""DHCPv6 in the one database lane DHCPv4 uses (dhcp/db_lane.py `DbLane`): group commit,
replies and binding events after their group's COMMIT, one savepoint per packet.

A Dhcp6Service with its bindings in a throw-away PostgreSQL cluster, one database
worker, clients on ::1 (SO_BINDTODEVICE lo). A deferred constraint trigger on
`leases` (the DHCPv6 rows: client key = DUID + IAID) makes each COMMIT that binds
wait while the test's `hold_commits` table has a row (bounded to 10 s) and records
the transaction that bound each row; another trigger refuses the second IA of one
client (a statement that fails half-way through that client's packet). While a first
client's commit is held, a burst of six clients (two IA_NAs each, one of them the
refused one) queues behind it; when the hold ends: the burst is one transaction, five
clients get their Reply, the refused one gets none and nothing of its packet is left
in the database (its first IA's bind undone with the rest of its packet), and no
binding event was announced before its commit
nor for the refused packet."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from test_pg_dhcp6 import Replies, address_in, duid, lo_config

from ptftpd.dhcp.leases import ia_key
from ptftpd.dhcp.pg_store import PgLink, PgStore
from ptftpd.dhcp6 import Dhcp6Service
from ptftpd.dhcp6.codec import IaNa, Message, MsgType, RapidCommit
from ptftpd.events import Event, Lease6Event, LeaseKind
from support import free_udp_port, require_root
from support.postgres import PgCluster

BAD = duid(33)
DUID_OF = "substring(NEW.client from 1 for length(NEW.client) - 4)"
TRIGGERS = f"""
CREATE TABLE hold_commits (held boolean);
CREATE TABLE committed_in (xact bigint, duid bytea);
CREATE FUNCTION hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO committed_in VALUES (txid_current(), {DUID_OF});
    FOR i IN 1..500 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM hold_commits);
        PERFORM pg_sleep(0.02);
    END LOOP;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER hold_commit AFTER INSERT OR UPDATE ON leases
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.state = 'bound' AND family(NEW.address) = 6)
    EXECUTE FUNCTION hold_commit();
CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'refused for this IA';
END $$;
CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON leases FOR EACH ROW
    WHEN (NEW.client = '\\x{ia_key(BAD, 2).hex()}'::bytea AND NEW.state = 'bound')
    EXECUTE FUNCTION refuse();
"""


BOUND6 = "SELECT client FROM leases WHERE state = 'bound' AND family(address) = 6"


@contextmanager
def commits_held(url: str) -> Iterator[None]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO hold_commits VALUES (true)")
        try:
            yield
        finally:
            conn.execute("DELETE FROM hold_commits")


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.timeout(90)
def test_dhcpv6_group_commit_with_a_savepoint_per_packet(pg_cluster: PgCluster) -> None:
    require_root()  # SO_BINDTODEVICE on lo
    url = pg_cluster.uri(pg_cluster.create_database())
    server_port, client_port = free_udp_port(), free_udp_port()
    seen: list[Event] = []

    def bound() -> list[bytes]:
        return [e.duid for e in seen if isinstance(e, Lease6Event) and e.kind is LeaseKind.BOUND]

    async def scenario() -> None:
        config = lo_config(url, server_port, client_port)
        store = PgStore(PgLink(url, "lane6", max_connections=1))
        service = Dhcp6Service(config, store=store, events=seen.append)
        await service.start()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(TRIGGERS)
        replies = Replies(client_port, server_port)
        opener, burst = duid(20), [duid(n) for n in range(30, 36)]
        assert BAD in burst
        try:
            before = service.group_commits
            with commits_held(url):

                def rapid(client: bytes, xid: int) -> asyncio.Task[Message]:
                    ias = (IaNa(1, 0, 0), IaNa(2, 0, 0))
                    return asyncio.ensure_future(
                        replies.ask(MsgType.SOLICIT, client, xid, *ias, RapidCommit())
                    )

                first = rapid(opener, 0x700)
                await asyncio.sleep(0.5)  # the only worker waits for its commit
                waiting = {client: rapid(client, 0x710 + n) for n, client in enumerate(burst)}
                await asyncio.sleep(1.0)
                assert not first.done() and not any(t.done() for t in waiting.values())
                # Granted, not committed: nothing seen by others, nothing announced.
                assert query(url, BOUND6) == []
                assert bound() == []
            assert address_in(await asyncio.wait_for(first, 15))
            for client, task in waiting.items():
                if client != BAD:
                    assert address_in(await asyncio.wait_for(task, 15))
            await asyncio.sleep(1.0)
            assert not waiting[BAD].done(), "the refused packet was answered"
            # The opener's transaction, then the whole burst in one.
            commits, carried = (a - b for a, b in zip(service.group_commits, before, strict=True))
            assert (commits, carried) == (2, 7)
            xacts = query(url, "SELECT DISTINCT xact FROM committed_in WHERE duid <> "
                          f"'\\x{opener.hex()}'::bytea")  # fmt: skip
            assert len(xacts) == 1, xacts
            # The refused packet left nothing: its first IA's bind was undone with it.
            rows = query(url, BOUND6)
            held = sorted((bytes(c)[:-4], int.from_bytes(bytes(c)[-4:], "big")) for (c,) in rows)  # type: ignore[arg-type]
            good = [opener] + [c for c in burst if c != BAD]
            assert held == sorted((c, i) for c in good for i in (1, 2)), held
            # Announced after their commit, never for the refused packet.
            assert sorted(bound()) == sorted(c for c in good for _ in (1, 2))
        finally:
            replies.close()
            service.close()

    asyncio.run(scenario())
