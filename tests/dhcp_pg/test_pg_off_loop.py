"""The lease database off the event loop (dhcp/server.py `DbLane`): a PostgreSQL server
that stops answering delays only the clients waiting for it.

One asyncio loop holds what pxed holds: a DHCP server with its leases in PostgreSQL,
another DHCP server (another scope) with its leases in memory, and a TFTP server. The
PostgreSQL processes this test started are stopped (SIGSTOP) while a client waits for
its lease: the TFTP download (tftp-hpa) and the other scope's exchanges complete
meanwhile, and the waiting client is answered once the database runs again. A burst
with one statement that fails (a hostname PostgreSQL cannot store) still answers
every other client of the burst. Everything on loopback (SO_BINDTODEVICE lo).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from dhcpmsg import client_message

from ptftpd.dhcp import DhcpConfig, DhcpServer, Message, MessageType, decode, encode
from ptftpd.tftp.server import ServerConfig, TftpServer
from support import free_udp_port, require_root, require_tool
from support.postgres import PgCluster

SERVER = IPv4Address("127.0.0.1")
BIG = 4 * 1024 * 1024


def config(port: int, client_port: int, first: str, last: str, url: str | None) -> DhcpConfig:
    return DhcpConfig(
        server_ip=SERVER,
        network=IPv4Network("127.0.0.0/8"),
        interface="lo",
        port=port,
        client_port=client_port,
        answer_all=True,
        range_start=IPv4Address(first),
        range_end=IPv4Address(last),
        leases_url=url,
    )


def postgres_pids(cluster: PgCluster) -> list[int]:
    """The postmaster this test's cluster runs and every process it forked."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
            pids.append(int(entry))
    return pids


@contextmanager
def stopped(cluster: PgCluster, at_most: float = 20.0) -> Iterator[None]:
    """PostgreSQL stopped for the block, and never longer than `at_most` seconds: a
    thread resumes it even when the event loop under test is frozen (the failure this
    test looks for), so a failing run ends instead of hanging."""
    pids = postgres_pids(cluster)

    def resume() -> None:
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    watchdog = threading.Timer(at_most, resume)
    watchdog.start()
    try:
        yield
    finally:
        watchdog.cancel()
        resume()


class Client:
    """A DHCP client on loopback: its address (ciaddr) is where replies come back."""

    def __init__(self, n: int, address: str, server_port: int, client_port: int) -> None:
        self.mac = bytes([2, 0, 0, 0, 0x77, n])
        self.xid = 0x7700 + n
        self.address = IPv4Address(address)
        self.server_port = server_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, client_port))
        self.sock.setblocking(False)

    def message(self, mtype: MessageType, **options: bytes) -> Message:
        msg = client_message(mtype, self.xid, self.mac, **options)
        msg.ciaddr = self.address
        return msg

    async def ask(self, msg: Message, timeout: float) -> Message:
        loop = asyncio.get_running_loop()
        await loop.sock_sendto(self.sock, encode(msg), (str(SERVER), self.server_port))
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), timeout)
        return decode(data)

    async def dora(self, timeout: float = 5.0) -> Message:
        offer = await self.ask(self.message(MessageType.DISCOVER), timeout)
        assert offer.message_type is MessageType.OFFER, offer
        request = self.message(
            MessageType.REQUEST, server_id=SERVER.packed, requested_ip=offer.yiaddr.packed
        )
        ack = await self.ask(request, timeout)
        assert ack.message_type is MessageType.ACK, ack
        return ack

    def close(self) -> None:
        self.sock.close()


def test_a_stopped_database_delays_only_its_own_clients(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    require_root()  # SO_BINDTODEVICE on lo
    tftp = require_tool("tftp")
    url = pg_cluster.uri(pg_cluster.create_database())
    (tmp_path / "big.bin").write_bytes(os.urandom(BIG))
    pg_port, pg_client = free_udp_port(), free_udp_port()
    mem_port, mem_client = free_udp_port(), free_udp_port()
    tftp_port = free_udp_port()

    async def scenario() -> None:
        shared = DhcpServer(config(pg_port, pg_client, "127.0.5.1", "127.0.5.40", url))
        local = DhcpServer(config(mem_port, mem_client, "127.0.6.1", "127.0.6.40", None))
        files = TftpServer(ServerConfig(root=tmp_path, read_only=True))
        await shared.start()
        await local.start()
        await files.start([str(SERVER)], tftp_port)
        waiting = Client(1, "127.0.5.201", pg_port, pg_client)
        before = Client(2, "127.0.5.202", pg_port, pg_client)
        others = [Client(10 + n, f"127.0.6.{201 + n}", mem_port, mem_client) for n in range(3)]
        try:
            await before.dora()  # the database works; its connection is pooled
            with stopped(pg_cluster):
                asked = asyncio.create_task(waiting.dora(timeout=60))
                started = time.monotonic()
                download = await asyncio.create_subprocess_exec(
                    tftp, str(SERVER), str(tftp_port), "-m", "octet", "-c", "get",
                    "big.bin", str(tmp_path / "got.bin"),
                )  # fmt: skip
                for other in others:  # the other scope: answered at once
                    ack = await other.dora(timeout=2)
                    assert ack.yiaddr in IPv4Network("127.0.6.0/24")
                assert await asyncio.wait_for(download.wait(), 30) == 0
                assert (tmp_path / "got.bin").read_bytes() == (tmp_path / "big.bin").read_bytes()
                busy = time.monotonic() - started
                await asyncio.sleep(max(0.0, 2.0 - busy))
                assert not asked.done(), "answered while the database was stopped"
            # Running again: the client that waited gets its lease.
            ack = await asyncio.wait_for(asked, 30)
            assert ack.yiaddr in IPv4Network("127.0.5.0/24")
        finally:
            for client in (waiting, before, *others):
                client.close()
            files.close()
            local.close()
            shared.close()

    asyncio.run(scenario())


def test_one_failing_statement_costs_only_its_own_reply(pg_cluster: PgCluster) -> None:
    """A burst of RENEWING requests, one of which carries a hostname PostgreSQL
    refuses (a NUL byte inside): every other client of the burst gets its ACK."""
    require_root()
    url = pg_cluster.uri(pg_cluster.create_database())
    port, client_port = free_udp_port(), free_udp_port()

    async def scenario() -> dict[int, Message | None]:
        server = DhcpServer(config(port, client_port, "127.0.7.1", "127.0.7.40", url))
        await server.start()
        clients = [Client(n, f"127.0.7.{n + 1}", port, client_port) for n in range(6)]
        loop = asyncio.get_running_loop()
        try:
            for n, client in enumerate(clients):  # sent back to back: one burst
                name = b"bad\x00name" if n == 3 else b"pc%d" % n
                msg = client.message(MessageType.REQUEST, hostname=name)
                await loop.sock_sendto(client.sock, encode(msg), (str(SERVER), port))
            answers: dict[int, Message | None] = {}
            for n, client in enumerate(clients):
                try:
                    data = await asyncio.wait_for(loop.sock_recv(client.sock, 4096), 3)
                    answers[n] = decode(data)
                except TimeoutError:
                    answers[n] = None
            return answers
        finally:
            for client in clients:
                client.close()
            server.close()

    answers = asyncio.run(scenario())
    assert answers[3] is None
    for n in (0, 1, 2, 4, 5):
        reply = answers[n]
        assert reply is not None and reply.message_type is MessageType.ACK, (n, reply)
        assert reply.yiaddr == IPv4Address(f"127.0.7.{n + 1}")
