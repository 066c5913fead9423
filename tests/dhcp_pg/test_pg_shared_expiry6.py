""" "Binding expired" for DHCPv6 with a shared PostgreSQL database (dhcp/shared_expiry.py,
family V6): each binding's end is announced once among the DHCPv6 servers, by the owner
of the client DUID's RFC 3074 bucket, as the database has it, whoever bound or renewed.

Two Dhcp6Services in this process on loopback (SO_BINDTODEVICE lo, clients on ::1),
one database, 3 s valid lifetimes, each with its own event list. Client x (A's bucket)
and client y (B's bucket, answered by A through RFC 3074's secs rule: it says it has
waited 5 s) are both bound by A with rapid commit; x renews through B a second later.
A must not announce x's end at its own deadline (B moved it) and announces it at the
new one; B announces y's end, a binding it never made nor heard of; neither announces
the other's. A DHCPv4 server on the same database, with a lease of its own ending
meanwhile, announces that lease's end and none of the DHCPv6 ones."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from ipaddress import IPv4Address, IPv6Address

from test_pg_dhcp6 import duid, lo_config
from test_pg_off_loop import Client as Client4
from test_pg_off_loop import config as config4

from ptftpd.dhcp import DhcpServer
from ptftpd.dhcp.balance import owners, pearson
from ptftpd.dhcp.peers import V6
from ptftpd.dhcp6 import Dhcp6Service
from ptftpd.dhcp6.codec import (
    ClientId,
    ElapsedTime,
    IaAddress,
    IaNa,
    Message,
    MsgType,
    Option,
    RapidCommit,
    ServerId,
    decode,
    encode,
)
from ptftpd.events import Event, Lease6Event, LeaseEvent, LeaseKind
from support import free_udp_port, require_root
from support.postgres import PgCluster

VALID = 3
SA, SB = bytes.fromhex("00030001525400aa0a01"), bytes.fromhex("00030001525400aa0b02")
SPLIT = owners([V6 + SA.hex(), V6 + SB.hex()])


def client_of(server: bytes, first: int) -> bytes:
    mine = SPLIT[V6 + server.hex()]
    return next(duid(n) for n in range(first, 250) if pearson(duid(n)) in mine)


class Clients:
    """One client socket on ::1; a request to either server's port, its reply."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.sock.bind(("::1", port))
        self.sock.setblocking(False)

    async def ask(
        self, port: int, mtype: MsgType, client: bytes, xid: int, *opts: Option
    ) -> Message:
        loop = asyncio.get_running_loop()
        msg = Message(mtype, xid, (ClientId(client), *opts))
        await loop.sock_sendto(self.sock, encode(msg), ("::1", port))
        while True:
            reply = decode(await asyncio.wait_for(loop.sock_recv(self.sock, 4096), 5))
            if reply.transaction_id == xid:
                assert reply.msg_type == MsgType.REPLY, reply
                return reply

    def close(self) -> None:
        self.sock.close()


def address_of(reply: Message) -> IPv6Address:
    ia = reply.first(IaNa)
    assert ia is not None and ia.addresses, reply
    return ia.addresses[0].address


def expired(events: list[Event]) -> list[object]:
    return [
        e.address
        for e in events
        if isinstance(e, Lease6Event | LeaseEvent) and e.kind is LeaseKind.EXPIRED
    ]


def test_each_shared_binding_end_is_announced_once_by_its_buckets_owner(
    pg_cluster: PgCluster,
) -> None:
    require_root()  # SO_BINDTODEVICE on lo
    url = pg_cluster.uri(pg_cluster.create_database())
    port_a, port_b, port4, client_port, client4 = (free_udp_port() for _ in range(5))
    seen_a: list[Event] = []
    seen_b: list[Event] = []
    seen4: list[Event] = []

    def service(server_duid: bytes, port: int, seen: list[Event]) -> Dhcp6Service:
        cfg = dataclasses.replace(
            lo_config(url, port, client_port),
            server_duid=server_duid,
            valid_lifetime=VALID,
            preferred_lifetime=VALID - 1,
            peer_timeout=1.0,
        )
        return Dhcp6Service(cfg, events=seen.append)

    async def scenario() -> None:
        a, b = service(SA, port_a, seen_a), service(SB, port_b, seen_b)
        # A DHCPv4 server on the same database, sweeping the same rows.
        dhcp4 = DhcpServer(
            dataclasses.replace(
                config4(port4, client4, "127.0.16.100", "127.0.16.140", url),
                server_ip=IPv4Address("127.0.0.1"),
                lease_time=VALID,
            )
        )
        dhcp4.events = seen4.append
        await a.start()
        await b.start()
        await dhcp4.start()
        loop = asyncio.get_running_loop()
        clients = Clients(client_port)
        x, y = client_of(SA, 1), client_of(SB, 1)
        v4 = Client4(1, "127.0.17.1", port4, client4)
        try:
            deadline = loop.time() + 10
            for s in (a, b):
                while True:
                    balancer = s.engine.balancer if s.engine is not None else None
                    if balancer is not None and len(balancer.split.servers) == 2:
                        break
                    assert loop.time() < deadline, "the servers never saw each other"
                    await asyncio.sleep(0.1)
            # A DHCPv4 lease too, ending with y's: the DHCPv4 server sweeps the shared
            # rows then and after, and announces its own family's ends only.
            v4_addr = (await v4.dora()).yiaddr
            rapid = (IaNa(1, 0, 0), RapidCommit())
            x_addr = address_of(
                await clients.ask(port_a, MsgType.SOLICIT, x, 1, ElapsedTime(0), *rapid)
            )
            # y's bucket is B's: A answers it only because it has waited 5 s.
            y_addr = address_of(
                await clients.ask(port_a, MsgType.SOLICIT, y, 2, ElapsedTime(500), *rapid)
            )
            await asyncio.sleep(1.0)
            ia = IaNa(1, 0, 0, (IaAddress(x_addr, 0, 0),))
            renewed = await clients.ask(
                port_b, MsgType.RENEW, x, 3, ServerId(SB), ElapsedTime(0), ia
            )
            assert address_of(renewed) == x_addr
            # A's own deadline for x (and y's end) pass: nothing from A yet.
            await asyncio.sleep(VALID - 1.0 + 0.5)
            assert expired(seen_a) == [], seen_a
            # Past x's new end and the sweeps after it.
            await asyncio.sleep(2.5)
            assert expired(seen_a) == [x_addr], seen_a
            assert expired(seen_b) == [y_addr], seen_b
            assert expired(seen4) == [v4_addr], seen4
        finally:
            clients.close()
            v4.close()
            dhcp4.close()
            b.close()
            a.close()

    asyncio.run(scenario())
