""" "Lease expired" with a shared PostgreSQL database (dhcp/shared_expiry.py): each end
is announced once among the servers, by the owner of the client's RFC 3074 bucket, as
the database has it, whoever granted or renewed the lease.

Two servers in this process on loopback (SO_BINDTODEVICE lo), A as 127.0.0.1 and B as
127.0.0.2, one database, 3 s leases, each with its own event list. Client x (A's
bucket) and client y (B's bucket) are both bound by A (sent to A's address: always
answered); x renews through B a second later. A must not announce x's end at A's own
deadline (B moved it), and announces it at the new one; B announces y's end, a lease it
never granted nor heard of; neither announces the other's. A DHCPv6 binding in the same
rows (the one lease core's `leases` table), ending meanwhile, is no DHCPv4 lease: neither
announces it."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from ipaddress import IPv4Address, IPv6Address, IPv6Network

from test_pg_non_owner import A, B, clients_of
from test_pg_off_loop import Client, config

from ptftpd.dhcp import DhcpServer, Message, MessageType, decode, encode
from ptftpd.dhcp.pg_store import PgLink, PgStore
from ptftpd.dhcp6.config import Dhcp6Config
from ptftpd.dhcp6.leases import prefix_policy
from ptftpd.events import Event, LeaseEvent, LeaseKind
from support import free_udp_port, require_root
from support.postgres import PgCluster

LEASE = 3


async def ask(client: Client, msg: Message, server: IPv4Address, port: int) -> Message:
    loop = asyncio.get_running_loop()
    await loop.sock_sendto(client.sock, encode(msg), (str(server), port))
    reply = decode(await asyncio.wait_for(loop.sock_recv(client.sock, 4096), 5))
    assert reply.message_type in (MessageType.OFFER, MessageType.ACK), reply
    return reply


async def dora(client: Client, server: IPv4Address, port: int) -> IPv4Address:
    offer = await ask(client, client.message(MessageType.DISCOVER), server, port)
    request = client.message(
        MessageType.REQUEST, server_id=server.packed, requested_ip=offer.yiaddr.packed
    )
    ack = await ask(client, request, server, port)
    assert ack.message_type is MessageType.ACK
    return ack.yiaddr


def expired(events: list[Event]) -> list[IPv4Address]:
    return [e.address for e in events if isinstance(e, LeaseEvent) and e.kind is LeaseKind.EXPIRED]


def test_each_shared_lease_end_is_announced_once_by_its_buckets_owner(
    pg_cluster: PgCluster,
) -> None:
    require_root()  # SO_BINDTODEVICE on lo
    url = pg_cluster.uri(pg_cluster.create_database())
    port_a, port_b, client_port = (free_udp_port() for _ in range(3))

    def server(ip: IPv4Address, port: int) -> DhcpServer:
        cfg = config(port, client_port, "127.0.14.100", "127.0.14.140", url)
        return DhcpServer(
            dataclasses.replace(cfg, server_ip=ip, lease_time=LEASE, peer_timeout=1.0)
        )

    seen_a: list[Event] = []
    seen_b: list[Event] = []

    async def scenario() -> None:
        a, b = server(A, port_a), server(B, port_b)
        a.events, b.events = seen_a.append, seen_b.append
        await a.start()
        await b.start()
        loop = asyncio.get_running_loop()
        [nx], [ny] = clients_of(A, 1, 1), clients_of(B, 1, 1)
        x, y = (
            Client(nx, f"127.0.15.{nx}", port_a, client_port),
            Client(ny, f"127.0.15.{ny}", port_a, client_port),
        )
        try:
            deadline = loop.time() + 10
            for s in (a, b):
                while s._balancer is None or len(s._balancer.split.servers) < 2:
                    assert loop.time() < deadline, "the servers never saw each other"
                    await asyncio.sleep(0.1)
            x_addr = await dora(x, A, port_a)
            y_addr = await dora(y, A, port_a)
            # A DHCPv6 server's binding in the same database, ending with the others.
            prefix = IPv6Network("fd00:1818::/64")
            cfg6 = Dhcp6Config(
                interface="lo",
                prefix=prefix,
                server_addresses=(IPv6Address("fd00:1818::1"),),
                preferred_lifetime=LEASE,
                valid_lifetime=LEASE,
                send_ra=False,
            )
            store6 = PgStore(PgLink(url, "dhcp6-server"))
            try:
                v6 = prefix_policy(cfg6, store6).commit(b"\x00\x03v6", 1, None, now=time.time())
                assert v6 is not None
            finally:
                store6.close()
            await asyncio.sleep(1.0)
            # x renews through B (INIT-REBOOT sent to B's address): its end moves.
            renew = x.message(MessageType.REQUEST, requested_ip=x_addr.packed)
            assert (await ask(x, renew, B, port_b)).yiaddr == x_addr
            # A's own deadline for x (and y's end) pass: nothing from A yet for x.
            await asyncio.sleep(LEASE - 1.0 + 0.5)
            assert expired(seen_a) == [], seen_a
            # Past x's new end and the sweeps after it.
            await asyncio.sleep(2.5)
            assert expired(seen_a) == [x_addr], seen_a
            assert expired(seen_b) == [y_addr], seen_b
        finally:
            x.close()
            y.close()
            b.close()
            a.close()

    asyncio.run(scenario())
