"""Two DHCP servers on one PostgreSQL split the clients (RFC 3074 buckets); the one a
broadcast client's bucket does not belong to does no database work for it: no
transaction, no commit, per datagram (issue 25; dhcp/server.py checks the bucket in the
event loop, before the database lane).

Both servers run in this process on loopback (SO_BINDTODEVICE lo), A as 127.0.0.1, B as
127.0.0.2, each on its own port, with the throw-away cluster. The clients send to
127.0.0.3, an address neither server owns: to them, a broadcast. B's lane commit counter
(`DhcpServer.group_commits`: the transactions its database lane committed) stays put
while 20 of A's clients ask B; B's own clients move it."""

from __future__ import annotations

import asyncio
import dataclasses
from ipaddress import IPv4Address

from test_pg_off_loop import Client, config

from ptftpd.dhcp import DhcpServer, MessageType, decode, encode
from ptftpd.dhcp.balance import owners, pearson
from support import free_udp_port, require_root
from support.postgres import PgCluster

A, B = IPv4Address("127.0.0.1"), IPv4Address("127.0.0.2")
NOBODY = "127.0.0.3"  # neither server's address: the datagram counts as broadcast
SPLIT = owners([str(A), str(B)])


def owner_of(mac: bytes) -> IPv4Address:
    bucket = pearson(mac)
    return next(IPv4Address(s) for s, buckets in SPLIT.items() if bucket in buckets)


def clients_of(owner: IPv4Address, count: int, first: int) -> list[int]:
    found = [n for n in range(first, 250) if owner_of(bytes([2, 0, 0, 0, 0x77, n])) == owner]
    assert len(found) >= count
    return found[:count]


async def discover(clients: list[Client], port: int, wait: float) -> list[object]:
    """One DISCOVER from each client to NOBODY:port; the first reply each gets within
    `wait` s."""
    loop = asyncio.get_running_loop()
    for client in clients:
        msg = encode(client.message(MessageType.DISCOVER))
        await loop.sock_sendto(client.sock, msg, (NOBODY, port))

    async def reply(client: Client) -> object:
        try:
            data = await asyncio.wait_for(loop.sock_recv(client.sock, 4096), wait)
        except TimeoutError:
            return None
        return decode(data).message_type

    got = await asyncio.gather(*(reply(client) for client in clients))
    return [r for r in got if r is not None]


def test_the_non_owner_does_no_database_work_for_another_servers_client(
    pg_cluster: PgCluster,
) -> None:
    require_root()  # SO_BINDTODEVICE on lo
    url = pg_cluster.uri(pg_cluster.create_database())
    port_a, client_a, port_b, client_b = (free_udp_port() for _ in range(4))

    async def scenario() -> None:
        a = DhcpServer(config(port_a, client_a, "127.0.9.100", "127.0.9.140", url))
        cfg_b = dataclasses.replace(
            config(port_b, client_b, "127.0.9.100", "127.0.9.140", url), server_ip=B
        )
        b = DhcpServer(cfg_b)
        await a.start()
        await b.start()
        loop = asyncio.get_running_loop()
        others = [Client(n, f"127.0.8.{n}", port_b, client_b) for n in clients_of(A, 20, 1)]
        mine = [Client(n, f"127.0.8.{n}", port_b, client_b) for n in clients_of(B, 3, 1)]
        try:
            deadline = loop.time() + 10
            while b._balancer is None or len(b._balancer.split.servers) < 2:
                assert loop.time() < deadline, "B never saw A live"
                await asyncio.sleep(0.1)
            before = b.group_commits
            replies = await discover(others, port_b, 1.5)
            assert replies == [], replies  # A's clients: B stays quiet...
            assert b.group_commits == before, (before, b.group_commits)  # ...and idle
            replies = await discover(mine, port_b, 5)
            assert replies == [MessageType.OFFER] * len(mine), replies
            assert b.group_commits[0] > before[0], (before, b.group_commits)
        finally:
            for client in others + mine:
                client.close()
            b.close()
            a.close()

    asyncio.run(scenario())
