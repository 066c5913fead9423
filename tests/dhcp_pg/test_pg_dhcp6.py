"""DHCPv6 bindings in PostgreSQL, answered off the event loop (dhcp6/service.py with
`leases_url`, the lease core's `dhcp/pg_store.py` rows).

One asyncio loop runs a Dhcp6Service whose bindings live in a throw-away PostgreSQL
cluster, on loopback (SO_BINDTODEVICE lo, clients on ::1). A client's binding is a
row in `leases` before its Reply, and a Request naming another address keeps it
(one bound address per binding). Then the PostgreSQL processes
are stopped (SIGSTOP) while a second client waits: the loop keeps running (a ticker
never waits more than a fraction of a second) and the client is answered once the
database runs again. And the command line: `python -m ptftpd.dhcp6 --leases
postgresql://...` serving dhclient -6 in a namespace, killed with SIGKILL and started
again, gives the client its binding back from the database; the same again with
`pxed --ipv6 --leases postgresql://...`.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import Callable
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import psycopg
from test_pg_off_loop import stopped

from ptftpd.dhcp.pg_store import PgLink, PgStore
from ptftpd.dhcp6 import Dhcp6Config, Dhcp6Service
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
from support import VENV_BIN, Process, free_udp_port, require_root, script, wait_udp_bound
from support.postgres import PgCluster

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "dhcp6"))
from test_dhcp6_clients import PREFIX as PREFIX6
from test_dhcp6_clients import bound_event, lab6, run_dhclient

PREFIX = IPv6Network("fd00:99::/64")
SERVER_DUID = bytes.fromhex("00030001525400aabbcc")


def lo_config(url: str, server_port: int, client_port: int) -> Dhcp6Config:
    """DHCPv6 on loopback (clients on ::1), bindings in PostgreSQL at `url`."""
    return Dhcp6Config(
        interface="lo",
        prefix=PREFIX,
        server_duid=SERVER_DUID,
        leases_url=url,
        server_port=server_port,
        client_port=client_port,
        send_ra=False,
        rapid_commit=True,
    )


def duid(n: int) -> bytes:
    return bytes.fromhex("00030001") + bytes([2, 0, 0, 0, 0x99, n])


class Client6:
    def __init__(self, n: int, server_port: int, client_port: int) -> None:
        self.duid = duid(n)
        self.server_port = server_port
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("::1", client_port))
        self.sock.setblocking(False)
        self.xid = 0x990000 + n

    async def ask(self, mtype: MsgType, *options: object, timeout: float) -> Message:
        loop = asyncio.get_running_loop()
        self.xid += 1
        msg = Message(mtype, self.xid, (ClientId(self.duid), ElapsedTime(0), *options))  # type: ignore[arg-type]
        await loop.sock_sendto(self.sock, encode(msg), ("::1", self.server_port))
        while True:
            data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), timeout)
            reply = decode(data)
            if reply.transaction_id == self.xid:
                return reply

    async def rapid(self, iaid: int = 1, timeout: float = 5.0) -> IPv6Address:
        reply = await self.ask(MsgType.SOLICIT, IaNa(iaid, 0, 0), RapidCommit(), timeout=timeout)
        assert reply.msg_type == MsgType.REPLY, reply
        ia = reply.first(IaNa)
        assert ia is not None and ia.addresses, reply
        return ia.addresses[0].address

    def close(self) -> None:
        self.sock.close()


def rows(url: str) -> dict[IPv6Address, tuple[bytes, str]]:
    with psycopg.connect(url) as conn:
        found = conn.execute(
            "SELECT address, client, state FROM leases WHERE family(address) = 6 "
            "AND state NOT IN ('server', 'free')"
        ).fetchall()
    # The client key is the DUID and the IAID's 4 bytes (`ptftpd.dhcp.leases.ia_key`).
    return {IPv6Address(str(a)): (bytes(c)[:-4], s) for a, c, s in found}


def test_dhcpv6_bindings_in_postgresql_off_the_loop(pg_cluster: PgCluster) -> None:
    require_root()  # SO_BINDTODEVICE on lo
    url = pg_cluster.uri(pg_cluster.create_database())
    server_port = free_udp_port()
    client_ports = [free_udp_port() for _ in range(2)]
    gaps: list[float] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        # Both clients share one reply port: the engine answers to the configured one.
        service = Dhcp6Service(lo_config(url, server_port, client_ports[0]))
        await service.start()
        first = Client6(1, server_port, client_ports[0])
        try:
            address = await first.rapid()
            assert rows(url) == {address: (first.duid, "bound")}, "committed before the Reply"
            # A Request naming another address keeps the binding where it is: one
            # bound address per binding, also in the database.
            other = address + 1
            ia = IaNa(1, 0, 0, (IaAddress(other, 0, 0),))
            reply = await first.ask(MsgType.REQUEST, ServerId(SERVER_DUID), ia, timeout=5)
            got = reply.first(IaNa)
            assert got is not None and [a.address for a in got.addresses] == [address]
            assert rows(url) == {address: (first.duid, "bound")}

            # The database stops while a second client (a new DUID) waits.
            second = Client6(2, server_port, client_ports[0])
            second.sock.close()
            second.sock = first.sock  # the reply port: one socket reads both
            second.xid = 0x99AA00

            async def ticker() -> None:
                last = loop.time()
                while True:
                    await asyncio.sleep(0.05)
                    now = loop.time()
                    gaps.append(now - last)
                    last = now

            tick = asyncio.create_task(ticker())
            with stopped(pg_cluster):
                waiting = asyncio.create_task(second.rapid(timeout=30))
                await asyncio.sleep(2.0)
                assert not waiting.done(), "answered without its database?"
                assert max(gaps) < 0.5, f"the loop stood still for {max(gaps):.2f} s"
            answered = await asyncio.wait_for(waiting, 20)
            tick.cancel()
            assert rows(url)[answered] == (second.duid, "bound")
        finally:
            first.close()
            service.close()

    asyncio.run(scenario())


def test_dhclient6_with_bindings_in_postgresql_survives_kill_9(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    """`python -m ptftpd.dhcp6 IFACE --leases postgresql://...` in a namespace, ISC
    dhclient -6 on the other end of a veth pair: the address is a bound row before the
    client has it; after `kill -9` of the server and a restart, the same client (its
    DUID and IAID) rebinding gets its binding back from the database."""
    python = str(VENV_BIN / "python")
    survives_kill_9(
        pg_cluster, tmp_path, lambda sif, url: [python, "-m", "ptftpd.dhcp6", sif, "--leases", url]
    )


def test_pxed_ipv6_with_bindings_in_postgresql_survives_kill_9(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    """The same through `pxed --ipv6 --leases postgresql://...` (DHCPv4 and DHCPv6 on
    one interface, both in the one database): dhclient -6's binding is a bound row in
    leases6, and after `kill -9` and a restart of pxed its Rebind gets the address."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "ipxe.efi").write_bytes(b"x")
    pxed = script("pxed")

    def argv(sif: str, url: str) -> list[str]:
        return [pxed, "--ipv6", "--leases", url, sif, str(root), "ipxe.efi"]

    survives_kill_9(pg_cluster, tmp_path, argv, ipv4="10.99.0.1/24")


def survives_kill_9(
    pg_cluster: PgCluster,
    tmp_path: Path,
    server_argv: Callable[[str, str], list[str]],
    ipv4: str | None = None,
) -> None:
    """A DHCPv6 server (`server_argv(interface, url)`, with --no-ra -D added) with its
    bindings in a fresh database serves dhclient -6; killed with SIGKILL and restarted,
    it answers the client's Rebind with the same address."""
    url = pg_cluster.uri(pg_cluster.create_database())
    with lab6(tmp_path) as lab:
        if ipv4 is not None:
            lab.server.run("ip", "addr", "add", ipv4, "dev", lab.sif)

        def start() -> Process:
            argv = lab.server.popen_argv([*server_argv(lab.sif, url), "--no-ra", "-D"])
            proc = Process(argv, tmp_path / "server.log")
            lab.procs.append(proc)
            wait_udp_bound(547, timeout=15, proc=proc.proc, netns=lab.server.name)
            return proc

        server = start()
        client, events = run_dhclient(lab)
        address = IPv6Address(bound_event(events)["new_ip6_address"])
        assert address in PREFIX6
        bound = {a: s for a, (_, s) in rows(url).items()}
        assert bound == {address: "bound"}, bound
        client.stop()
        server.stop(signal.SIGKILL)
        events.unlink()
        start()
        # A Rebind from the client (its DUID and IAID as the database holds them): the
        # restarted server, whose memory was lost with the process, knows the binding.
        with psycopg.connect(url) as conn:
            found = conn.execute(
                "SELECT client FROM leases WHERE family(address) = 6 AND state = 'bound'"
            ).fetchone()
        assert found is not None
        duid6, iaid = bytes(found[0])[:-4], int.from_bytes(bytes(found[0])[-4:], "big")
        ia = IaNa(iaid, 0, 0, (IaAddress(address, 0, 0),))
        rebind = encode(Message(MsgType.REBIND, 0x6161, (ClientId(duid6), ElapsedTime(0), ia)))
        replies = lab.probe(rebind, wait=2.0)
        assert [r["ia_na"] for r in replies] == [[[str(address)]]], replies


class Replies:
    """One reply socket read by one task: replies handed out by transaction id."""

    def __init__(self, port: int, server_port: int) -> None:
        self.server_port = server_port
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.sock.bind(("::1", port))
        self.sock.setblocking(False)
        self.waiting: dict[int, asyncio.Future[Message]] = {}
        self.task: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            reply = decode(await loop.sock_recv(self.sock, 4096))
            future = self.waiting.pop(reply.transaction_id, None)
            if future is not None and not future.done():
                future.set_result(reply)

    async def ask(self, mtype: MsgType, client: bytes, xid: int, *options: Option) -> Message:
        loop = asyncio.get_running_loop()
        if self.task is None:
            self.task = asyncio.create_task(self._read())
        future: asyncio.Future[Message] = loop.create_future()
        self.waiting[xid] = future
        msg = Message(mtype, xid, (ClientId(client), ElapsedTime(0), *options))
        await loop.sock_sendto(self.sock, encode(msg), ("::1", self.server_port))
        return await future

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.sock.close()


def address_in(reply: Message) -> IPv6Address:
    ia = reply.first(IaNa)
    assert ia is not None and ia.addresses, reply
    return ia.addresses[0].address


def test_a_row_another_server_holds_delays_only_its_own_client(pg_cluster: PgCluster) -> None:
    """The DHCPv6 database lane is a pool with per-client order: while another
    connection holds the row a client's Request needs (its claim waits on the row
    lock), a second client is answered at once; the first gets its Reply when the row
    is let go."""
    require_root()  # SO_BINDTODEVICE on lo
    url = pg_cluster.uri(pg_cluster.create_database())
    server_port, client_port = free_udp_port(), free_udp_port()

    async def scenario() -> None:
        config = lo_config(url, server_port, client_port)
        # Rows held by another server are waited for up to 5 s per attempt here.
        store = PgStore(PgLink(url, "lane-test", lock_timeout=5.0))
        service = Dhcp6Service(config, store=store)
        await service.start()
        replies = Replies(client_port, server_port)
        blocker = await psycopg.AsyncConnection.connect(url)
        try:
            first, second = duid(11), duid(12)
            advertised = address_in(
                await asyncio.wait_for(replies.ask(MsgType.SOLICIT, first, 1, IaNa(1, 0, 0)), 5)
            )
            # Another server's transaction holds the row of that address (the
            # offer's row: offers are rows every server sees).
            await blocker.execute(
                "SELECT 1 FROM leases WHERE address = %s FOR UPDATE", (str(advertised),)
            )
            ia = IaNa(1, 0, 0, (IaAddress(advertised, 0, 0),))
            waiting = asyncio.create_task(
                replies.ask(MsgType.REQUEST, first, 2, ServerId(SERVER_DUID), ia)
            )
            await asyncio.sleep(0.5)
            loop = asyncio.get_running_loop()
            started = loop.time()
            rapid = replies.ask(MsgType.SOLICIT, second, 3, IaNa(1, 0, 0), RapidCommit())
            other = address_in(await asyncio.wait_for(rapid, 10))
            took = loop.time() - started
            assert took < 2.0, f"the second client waited {took:.1f} s behind the first"
            assert not waiting.done(), "the held row did not hold the first client?"
            await blocker.rollback()  # the other server lets go
            got = address_in(await asyncio.wait_for(waiting, 20))
            assert got == advertised and other != advertised
            bound = {a: d for a, (d, s) in rows(url).items() if s == "bound"}
            assert bound == {advertised: first, other: second}, bound
        finally:
            await blocker.close()
            replies.close()
            service.close()

    asyncio.run(scenario())
