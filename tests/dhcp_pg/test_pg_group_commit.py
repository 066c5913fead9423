"""Group commit on PostgreSQL (issue 25 item 4, dhcp/server.py `DbLane`): a lease is
committed before its ACK leaves, and under load one commit carries many leases.

The commit is made to wait by a deferred constraint trigger on `leases` (it runs at
COMMIT) that sleeps while the test's `hold_commits` table has a row, bounded to 10 s.
Everything on loopback (SO_BINDTODEVICE lo), with the throw-away cluster."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from test_pg_off_loop import SERVER, Client, config

from ptftpd.dhcp import DhcpServer, Message, MessageType, encode
from ptftpd.events import Event, LeaseEvent, LeaseKind
from support import free_udp_port, require_root
from support.postgres import PgCluster

HOLD = """
CREATE TABLE hold_commits (held boolean);
CREATE FUNCTION hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..500 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM hold_commits);
        PERFORM pg_sleep(0.02);
    END LOOP;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER hold_commit AFTER UPDATE ON leases
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.state = 'bound')
    EXECUTE FUNCTION hold_commit();
"""


@contextmanager
def commits_held(url: str) -> Iterator[None]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO hold_commits VALUES (true)")
        try:
            yield
        finally:
            conn.execute("DELETE FROM hold_commits")


def state_of(url: str, address: object) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT state FROM leases WHERE address = %s", (address,)).fetchone()
    assert row is not None
    return str(row[0])


def selecting(client: Client, offer: Message) -> Message:
    return client.message(
        MessageType.REQUEST, server_id=SERVER.packed, requested_ip=offer.yiaddr.packed
    )


def test_the_ack_waits_for_the_commit_of_its_lease(pg_cluster: PgCluster) -> None:
    require_root()
    url = pg_cluster.uri(pg_cluster.create_database())
    port, client_port = free_udp_port(), free_udp_port()

    async def scenario() -> None:
        server = DhcpServer(config(port, client_port, "127.0.9.100", "127.0.9.140", url))
        await server.start()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(HOLD)
        client = Client(1, "127.0.9.2", port, client_port)
        loop = asyncio.get_running_loop()
        try:
            offer = await client.ask(client.message(MessageType.DISCOVER), 5)
            assert offer.message_type is MessageType.OFFER
            with commits_held(url):
                request = encode(selecting(client, offer))
                await loop.sock_sendto(client.sock, request, (str(SERVER), port))
                reply = asyncio.ensure_future(loop.sock_recv(client.sock, 4096))
                await asyncio.sleep(1.5)
                assert not reply.done(), "an ACK left before its lease was committed"
                # The bind is made, its commit waits: nobody else sees it yet.
                assert state_of(url, offer.yiaddr) == "offered"
            data = await asyncio.wait_for(reply, 10)
            # The ACK came after the commit: the lease is in the database.
            assert state_of(url, offer.yiaddr) == "bound"
            assert data  # an ACK (decoded by the next test's clients)
        finally:
            client.close()
            server.close()

    asyncio.run(scenario())


def test_one_commit_carries_many_leases_under_load(pg_cluster: PgCluster) -> None:
    """60 REQUESTs arrive while commits are slow (held): they are granted in a few
    groups of many, each one commit, and every client gets its ACK afterwards."""
    require_root()
    url = pg_cluster.uri(pg_cluster.create_database())
    port, client_port = free_udp_port(), free_udp_port()

    async def scenario() -> None:
        server = DhcpServer(config(port, client_port, "127.0.10.100", "127.0.10.200", url))
        await server.start()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(HOLD)
        clients = [Client(n, f"127.0.10.{n + 2}", port, client_port) for n in range(60)]
        loop = asyncio.get_running_loop()
        try:
            offers = await asyncio.gather(
                *(c.ask(c.message(MessageType.DISCOVER), 10) for c in clients)
            )
            before = server.group_commits
            with commits_held(url):
                for client, offer in zip(clients, offers, strict=True):
                    request = encode(selecting(client, offer))
                    await loop.sock_sendto(client.sock, request, (str(SERVER), port))
                replies = [asyncio.ensure_future(loop.sock_recv(c.sock, 4096)) for c in clients]
                await asyncio.sleep(1.0)
                assert not any(r.done() for r in replies)
            done = await asyncio.wait_for(asyncio.gather(*replies), 20)
            assert len(done) == 60
            commits, carried = (a - b for a, b in zip(server.group_commits, before, strict=True))
            assert carried == 60
            # A few groups (one per database worker, then the rest), not 60 commits.
            assert commits <= 8, (commits, carried)
            with psycopg.connect(url, autocommit=True) as conn:
                bound = conn.execute("SELECT count(*) FROM leases WHERE state = 'bound'")
                assert bound.fetchone() == (60,)
        finally:
            for client in clients:
                client.close()
            server.close()

    asyncio.run(scenario())


BOUND = LeaseKind.BOUND
REFUSE = """
CREATE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'refused at commit';
END $$;
CREATE CONSTRAINT TRIGGER refuse_commit AFTER UPDATE ON leases
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.state = 'bound' AND NEW.hostname = 'refused')
    EXECUTE FUNCTION refuse_commit();
"""


def test_a_failed_commit_costs_only_its_grants(
    pg_cluster: PgCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A group whose COMMIT fails sends none of its replies (its lease is not in the
    database, so no ACK may claim it); the server goes on: the next client is served."""
    require_root()
    url = pg_cluster.uri(pg_cluster.create_database())
    port, client_port = free_udp_port(), free_udp_port()

    seen: list[Event] = []

    async def scenario() -> None:
        server = DhcpServer(config(port, client_port, "127.0.12.100", "127.0.12.140", url))
        server.events = seen.append
        await server.start()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(REFUSE)
        bad, good = (Client(n, f"127.0.12.{n + 2}", port, client_port) for n in range(2))
        loop = asyncio.get_running_loop()
        try:
            offer = await bad.ask(bad.message(MessageType.DISCOVER), 5)
            request = bad.message(
                MessageType.REQUEST,
                server_id=SERVER.packed,
                requested_ip=offer.yiaddr.packed,
                hostname=b"refused",
            )
            await loop.sock_sendto(bad.sock, encode(request), (str(SERVER), port))
            reply = asyncio.ensure_future(loop.sock_recv(bad.sock, 4096))
            await asyncio.sleep(1.5)
            assert not reply.done(), "a reply left although its commit failed"
            reply.cancel()
            assert state_of(url, offer.yiaddr) == "offered"
            ack = await good.dora()
            assert state_of(url, ack.yiaddr) == "bound"
            # The refused grant is not announced to the metrics or the boot timeline.
            bound = [e.address for e in seen if isinstance(e, LeaseEvent) and e.kind is BOUND]
            assert bound == [ack.yiaddr], bound
        finally:
            bad.close()
            good.close()
            server.close()

    caplog.set_level(logging.INFO, "ptftpd")
    asyncio.run(scenario())
    text = caplog.text
    assert "1 replies withheld: commit refused" in text, text
    assert "lost" not in text, text
