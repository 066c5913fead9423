"""Group commit with the SQLite lease file (issue 25 item 4): a lease is committed
before its ACK leaves, and a burst of requests is one commit of many leases.

The commit is made to wait by another connection holding the file's write lock
(BEGIN IMMEDIATE) for a moment; the server's commit waits for it (SQLite's busy
timeout), and so does the ACK. Everything on loopback (SO_BINDTODEVICE lo)."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
import time
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from dhcpmsg import client_message

from ptftpd.dhcp import DhcpConfig, DhcpServer, Message, MessageType, decode, encode
from support import free_udp_port, require_root

SERVER = IPv4Address("127.0.0.1")


def config(port: int, client_port: int, leases: Path) -> DhcpConfig:
    return DhcpConfig(
        server_ip=SERVER,
        network=IPv4Network("127.0.0.0/8"),
        interface="lo",
        port=port,
        client_port=client_port,
        answer_all=True,
        range_start=IPv4Address("127.0.11.100"),
        range_end=IPv4Address("127.0.11.200"),
        leases_path=leases,
    )


class Client:
    def __init__(self, n: int, port: int, client_port: int) -> None:
        self.mac = bytes([2, 0, 0, 0, 0x78, n])
        self.xid = 0x7800 + n
        self.address = IPv4Address(f"127.0.11.{n + 2}")
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((str(self.address), client_port))
        self.sock.setblocking(False)

    def message(self, mtype: MessageType, **options: bytes) -> Message:
        return replace(client_message(mtype, self.xid, self.mac, **options), ciaddr=self.address)

    async def send(self, msg: Message) -> None:
        loop = asyncio.get_running_loop()
        await loop.sock_sendto(self.sock, encode(msg), (str(SERVER), self.port))

    async def receive(self, timeout: float) -> Message:
        loop = asyncio.get_running_loop()
        return decode(await asyncio.wait_for(loop.sock_recv(self.sock, 4096), timeout))

    def selecting(self, offer: Message) -> Message:
        ids = {"server_id": SERVER.packed, "requested_ip": offer.yiaddr.packed}
        return self.message(MessageType.REQUEST, **ids)


def hold_the_file(path: Path, seconds: float) -> threading.Thread:
    """Another writer holds the lease file's write lock for `seconds`."""
    locked = threading.Event()

    def hold() -> None:
        db = sqlite3.connect(str(path), isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        locked.set()
        threading.Event().wait(seconds)
        db.execute("ROLLBACK")
        db.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert locked.wait(5)
    return thread


def bound_in_file(path: Path) -> set[str]:
    db = sqlite3.connect(str(path))
    try:
        return {a for (a,) in db.execute("SELECT address FROM leases WHERE state = 'bound'")}
    finally:
        db.close()


def test_the_ack_follows_the_commit_and_a_burst_is_one_commit(tmp_path: Path) -> None:
    require_root()
    leases = tmp_path / "leases.sqlite"
    port, client_port = free_udp_port(), free_udp_port()

    async def scenario() -> None:
        server = DhcpServer(config(port, client_port, leases))
        await server.start()
        clients = [Client(n, port, client_port) for n in range(40)]
        try:
            for c in clients:
                await c.send(c.message(MessageType.DISCOVER))
            offers = [await c.receive(10) for c in clients]
            assert {o.message_type for o in offers} == {MessageType.OFFER}
            before = server.group_commits
            # The file is locked by another writer while the 40 REQUESTs arrive: the
            # server's commit waits (its event loop with it), and no ACK leaves.
            holder = hold_the_file(leases, 1.0)
            held = time.monotonic()
            for c, offer in zip(clients, offers, strict=True):
                await c.send(c.selecting(offer))
            first = await clients[0].receive(10)
            assert time.monotonic() - held >= 0.9, "an ACK left before its commit"
            acks = [first, *[await c.receive(10) for c in clients[1:]]]
            holder.join(5)
            assert {a.message_type for a in acks} == {MessageType.ACK}
            # Every ACK left after the lock was released, and after its commit.
            assert bound_in_file(leases) == {str(a.yiaddr) for a in acks}
            commits, carried = (a - b for a, b in zip(server.group_commits, before, strict=True))
            assert carried == 40
            assert commits <= 4, (commits, carried)  # a burst or two, not 40
        finally:
            for c in clients:
                c.sock.close()
            server.close()

    asyncio.run(scenario())
