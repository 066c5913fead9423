"""asyncio DHCP/BOOTP server: a thin I/O shell around `DhcpEngine`.

Leases in memory or a SQLite file are answered in the event loop, a burst of packets
at a time with one commit. Leases in PostgreSQL are never waited for in the loop: each
packet goes to the database lane (`db_lane.DbLane`, shared with DHCPv6: bounded
threads, one packet at a time per client, group commit with a savepoint per packet),
so a slow or unreachable database delays only the clients whose answer needs it, never
TFTP, HTTP, DHCPv6 or another server in the same loop; a statement that fails costs
its own client's reply only.

One UDP socket on port 67 bound to IFACE with SO_BINDTODEVICE, so instances on
different interfaces coexist and a server never answers on the wrong link. Replies to
clients without an address are unicast after adding a neighbour (ARP) entry for the
client's MAC, as RFC 2131 4.1 asks; when the kernel refuses that, they are broadcast.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import logging
import socket
import struct
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

from ptftpd import datagrams
from ptftpd.closing import close_all
from ptftpd.dhcp.balance import Balancer
from ptftpd.dhcp.db_lane import DbLane, ToLoop
from ptftpd.dhcp.engine import BootPolicy, DhcpConfig, DhcpEngine, Held, Outgoing
from ptftpd.dhcp.expiry_timer import ExpiryTimer
from ptftpd.dhcp.lease_store import LeaseStore, MemoryStore
from ptftpd.dhcp.leases import LeasePolicy, LeaseRows
from ptftpd.dhcp.local_leases import LocalLeases
from ptftpd.dhcp.packet import BOOTREQUEST, ZERO_IP, PacketError, decode
from ptftpd.dhcp.peers import Heartbeat, heartbeat_for, read_burst_to, want_destination
from ptftpd.dhcp.scope import Scope, SubnetConfig, network_options
from ptftpd.dhcp.shared_expiry import SharedExpiry
from ptftpd.dhcp.store import SqliteStore, StoreBusy, StoreError, StoreUnavailable
from ptftpd.errors import ROOT_OR_CAPABILITIES
from ptftpd.events import Event, EventSink, LeaseEvent, LeaseExpiry, ignore

__all__ = ["DhcpServer", "add_neighbour", "open_dhcp_socket"]

log = logging.getLogger("ptftpd.dhcp")

SIOCSARP = 0x8955
_SOCKET_BUFFER = 4 * 1024 * 1024
_SO_SNDBUFFORCE = 32  # Linux: root may exceed net.core.[rw]mem_max
_SO_RCVBUFFORCE = 33
ATF_COM = 0x02
ARPHRD_ETHER = 1


def open_dhcp_socket(interface: str | None, port: int, address: str = "0.0.0.0") -> socket.socket:
    """A non-blocking broadcast-capable UDP socket on `port`, tied to `interface`.

    Shared with pxed (port 4011). Permission problems become one clear line."""
    return datagrams.udp_socket(
        socket.AF_INET,
        (address, port),
        where=interface or address,
        hint=ROOT_OR_CAPABILITIES,
        interface=interface,
        broadcast=True,
    )


def add_neighbour(sock: socket.socket, interface: str, mac: bytes, ip: IPv4Address) -> bool:
    """Add an ARP entry so a reply can be unicast to a client that has no address yet
    (RFC 2131 4.1); False when the kernel refuses (then broadcast instead). Needs root.
    `Outgoing.arp` says when to call it: `add_neighbour(sock, iface, *out.arp)`."""
    if len(mac) != 6:
        return False
    pa = struct.pack("!HH4s8x", socket.AF_INET, 0, ip.packed)
    pa = struct.pack("=H", socket.AF_INET) + pa[2:]
    ha = struct.pack("=H", ARPHRD_ETHER) + mac + b"\x00" * 8
    req = (
        pa
        + ha
        + struct.pack("=i", ATF_COM)
        + b"\x00" * 16
        + interface.encode()[:15].ljust(16, b"\x00")
    )
    try:
        fcntl.ioctl(sock.fileno(), SIOCSARP, req)
    except OSError:
        return False
    return True


def open_shared_store(url: str, server_id: str) -> LeaseRows:
    """Connect to the PostgreSQL lease database (schema created or migrated); one-line
    `StoreError` when psycopg is missing or the database is unreachable."""
    try:
        from ptftpd.dhcp.pg_store import PgLink, PgStore
    except ImportError:
        raise StoreError(
            "PostgreSQL leases need psycopg: pip install 'ptftpd[postgresql]'"
        ) from None
    return PgStore(PgLink(url, server_id))


# A client is its hardware address; a packet too short to have one queues under b"".
def _client_of(data: bytes) -> bytes:
    hlen = min(data[2], 16) if len(data) > 2 else 0
    return data[28 : 28 + hlen]


def _wanted(balancer: Balancer, data: bytes, unicast: bool) -> bool:
    """In the loop, before the database lane: is this datagram this server's to answer
    (`Balancer.answers`)? Leaving another server's client here spares the lane a
    transaction per datagram. Anything odd goes on to the engine, which judges it."""
    try:
        msg = decode(data)
    except PacketError:
        return True
    return msg.op != BOOTREQUEST or balancer.answers(msg, unicast and msg.giaddr == ZERO_IP)


class DhcpServer:
    """A DHCP (and/or BOOTP) server for one interface, usable in any asyncio loop.

    `store` defaults to SQLite at `config.leases_path` (memory when None); `clock` is
    wall time because lease expiry must survive restarts.
    """

    def __init__(
        self,
        config: DhcpConfig,
        boot_policy: BootPolicy | None = None,
        store: LeaseStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._store = store
        # The lease rows every scope's policy shares, kept across reloads: local rows
        # in front of `store` (memory, SQLite), or the PostgreSQL store.
        self._rows: LeaseRows | None = None
        self._clock = clock
        self._boot_policy = boot_policy
        self._on_wait: Callable[[Held], None] | None = None
        self.engine: DhcpEngine | None = None
        self._events: EventSink = ignore
        self._expiry: ExpiryTimer | None = None
        # A shared database: the ends of every lease, read from it (`shared_expiry`).
        self._shared_expiry: SharedExpiry | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._endpoint: datagrams.UdpEndpoint[Any] | None = None
        self._arp_ok = True
        self._lane: DbLane[bytes, Outgoing] | None = None  # PostgreSQL: off the loop
        # The engine's events, from the loop or a lane thread, reach `_deliver` in the loop.
        self._emit = ToLoop(self._deliver)
        # PostgreSQL: the servers sharing the database split the clients (balance.py).
        self._balancer: Balancer | None = None
        self._heartbeat: Heartbeat | None = None
        self._own = frozenset(a.packed for a in config.own_addresses)

    @property
    def group_commits(self) -> tuple[int, int]:
        """Commits made, and what they carried: packets (PostgreSQL, the database
        lane's groups) or lease rows (SQLite, one commit per burst)."""
        if self._lane is not None:
            return self._lane.commits, self._lane.carried
        store = self._store
        if isinstance(store, SqliteStore):
            return store.commits, store.carried
        return 0, 0

    @property
    def boot_policy(self) -> BootPolicy | None:
        return self._boot_policy

    @boot_policy.setter
    def boot_policy(self, value: BootPolicy | None) -> None:
        self._boot_policy = value
        if self.engine is not None:
            self.engine.boot_policy = value

    @property
    def on_wait(self) -> Callable[[Held], None] | None:
        """Told of each request the boot policy made wait (`DhcpEngine.on_wait`), by
        this engine and every engine `build_engine` makes later; `feed` it back."""
        return self._on_wait

    @on_wait.setter
    def on_wait(self, value: Callable[[Held], None] | None) -> None:
        self._on_wait = value
        if self.engine is not None:
            self.engine.on_wait = value

    def feed(self, held: Held) -> None:
        """A held request, handled again now as if it had just arrived (the database
        lane or the batch, then the reply): its boot decision has come."""
        if self._lane is not None and self._heartbeat is not None:
            self._shared_burst([(held.data, held.source, held.unicast)])
        else:
            self._on_burst([(held.data, held.source)])

    @property
    def events(self) -> EventSink:
        """Where the engine's typed events go (`ptftpd.events`), this engine's and
        those of every engine `build_engine` makes later (a reload)."""
        return self._events

    @events.setter
    def events(self, sink: EventSink) -> None:
        self._events = sink
        if self._expiry is not None:
            self._expiry.close()
        # "Lease expired" (v4): the bound leases pass through the core's watch on the
        # loop, which arms one timer at the next lease's end (`expiry_timer`).
        watch = LeaseExpiry(sink) if sink is not ignore else None
        self._expiry = ExpiryTimer(watch, self._clock) if watch is not None else None
        if self.engine is not None:
            self.engine.events = self._emit if sink is not ignore else ignore
        self._watch_shared()

    def _watch_shared(self) -> None:
        """Sharing a database (started, with its lane and balancer) and with events
        wanted: "lease expired" comes from the database's sweeps instead of the watch,
        for every lease whoever granted it (`shared_expiry`)."""
        lane, balancer, loop = self._lane, self._balancer, self._loop
        if self._shared_expiry is not None or self._events is ignore:
            return
        if lane is None or balancer is None or loop is None:
            return
        rows: Any = self._rows
        self._shared_expiry = SharedExpiry(rows, balancer, lane, self._emit, self._clock, loop)
        self._shared_expiry.start()

    def build_engine(self) -> DhcpEngine:
        """The sans-IO engine with its lease policies; `start` calls it, tests may too.

        Every subnet gets its own pool and policy on the one store (rows are keyed by
        address, so subnets never collide)."""
        cfg = self.config
        if self._rows is None:
            if cfg.leases_url is not None:
                self._rows = open_shared_store(cfg.leases_url, str(cfg.server_ip))
            else:
                if self._store is None:
                    self._store = (
                        SqliteStore(cfg.leases_path, synchronous=cfg.lease_sync.upper())
                        if cfg.leases_path
                        else MemoryStore()
                    )
                self._rows = LocalLeases(self._store)
        # The server's own addresses (and the default gateway, this host) are its own,
        # the rest defines the pool, the same on every server sharing a database.
        policy = self._policy(cfg.local)
        subnets = [self._scope(sub) for sub in cfg.subnets]
        engine = DhcpEngine(cfg, policy, self._boot_policy, subnets)
        engine.on_wait = self._on_wait
        engine.events = self._emit if self._events is not ignore else ignore
        if self._balancer is None and hasattr(self._rows, "heartbeat"):
            self._balancer = Balancer(str(cfg.server_ip), cfg.peer_timeout)
        engine.balancer = self._balancer
        return engine

    def _deliver(self, event: Event) -> None:
        shared = self._shared_expiry
        if shared is not None:
            shared.note(event)
            self._events(event)
            return
        expiry = self._expiry
        if expiry is None:
            self._events(event)
            return
        expiry.watch.sink(event)
        if isinstance(event, LeaseEvent):
            expiry.arm()

    def _policy(self, subnet: SubnetConfig) -> LeasePolicy:
        """One lease policy per subnet, over the server's rows (whichever store)."""
        assert self._rows is not None
        return LeasePolicy(self.config.served(subnet), self._rows)

    def _scope(self, sub: SubnetConfig) -> Scope:
        options = network_options(
            sub.network, sub.routers, sub.dns, sub.domain_name, sub.extra_options
        )
        return Scope(self._policy(sub), options)

    async def start(self) -> None:
        if self.engine is None:
            self.engine = self.build_engine()
        sock = open_dhcp_socket(self.config.interface, self.config.port)
        for opt, force in (
            (socket.SO_RCVBUF, _SO_RCVBUFFORCE),
            (socket.SO_SNDBUF, _SO_SNDBUFFORCE),
        ):
            # A burst of clients booting at once must queue, not be dropped by the kernel.
            try:
                sock.setsockopt(socket.SOL_SOCKET, force, _SOCKET_BUFFER)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, opt, _SOCKET_BUFFER)
        self._loop = asyncio.get_running_loop()
        self._emit.start(self._loop)
        if getattr(self._rows, "blocking", False):
            rows: Any = self._rows
            self._lane = DbLane(
                self._loop,
                getattr(rows, "workers", 4),
                self._reply,
                store=rows,
                events=self._deliver,
                log=log,
                name=lambda mac: mac.hex(":"),
            )
        lane = self._lane
        self._watch_shared()
        if self._balancer is not None and self._heartbeat is None:
            want_destination(sock)
            self._heartbeat = heartbeat_for(
                self._rows, self._balancer, self.config.own_addresses, lambda: self._events
            )
            if self._heartbeat is not None:
                self._heartbeat.start(self._loop)
        if lane is not None and self._heartbeat is not None:
            # Shared database: a broadcast for another server's bucket is left to it,
            # a datagram sent to this server's address is always answered.
            own = self._own
            endpoint: datagrams.UdpEndpoint[Any] = datagrams.UdpEndpoint(
                sock, lambda s: read_burst_to(s, own), self._shared_burst, log
            )
        else:
            endpoint = datagrams.endpoint(sock, self._on_burst, log)
        self._endpoint = endpoint
        endpoint.start(self._loop)
        size = len(self.engine.policy.config.addresses)
        log.info(
            "serving %s on %s port %d (%s, pool of %d addresses%s)",
            "BOOTP" if not self.config.dhcp else "DHCP",
            self.config.interface or self.config.server_ip,
            self.config.port,
            "all clients" if self.config.answer_all else "PXE clients only",
            size,
            "".join(
                f", relayed {s.network}: {len(s.policy.config.addresses)}"
                for s in self.engine.scopes[1:]
            ),
        )

    def close(self) -> None:
        # The local rows close their store too.
        rows = self._rows if self._rows is not None else self._store
        close_all(
            self._heartbeat, self._expiry, self._shared_expiry, self._lane, self._endpoint, rows
        )
        self._heartbeat = self._shared_expiry = self._lane = self._endpoint = None
        self._store = self._rows = None

    @property
    def closed(self) -> bool:
        return self._endpoint is None

    def _shared_burst(self, burst: list[tuple[bytes, tuple[str, int], bool]]) -> None:
        """A burst on a shared database: each packet to the lane, with whether it was
        sent to this server's own address."""
        engine, lane = self.engine, self._lane
        if engine is None or lane is None:
            return
        balancer = self._balancer
        shared = balancer is not None and len(balancer.split.servers) > 1
        for data, source, unicast in burst:
            if shared and balancer is not None and not _wanted(balancer, data, unicast):
                continue  # another server's client: no database work at all here
            now = self._clock()
            job = functools.partial(engine.handle, data, source, now, unicast=unicast)
            lane.submit(_client_of(data), job)

    def _on_burst(self, burst: list[datagrams.Datagram]) -> None:
        """Commit the burst's grants once, then reply. The endpoint read the burst
        first: a store that refuses to open a transaction (a lost database) must not
        leave the datagrams queued, or the loop would spin."""
        engine = self.engine
        if engine is None:
            return
        packets = [(data, (addr[0], addr[1])) for data, addr in burst]
        lane = self._lane
        if lane is not None:
            for data, source in packets:
                now = self._clock()
                job = functools.partial(engine.handle, data, source, now)
                lane.submit(_client_of(data), job)
            return
        outgoing: list[Outgoing] = []
        try:
            with engine.policy.store.batch():
                for data, source in packets:
                    try:
                        outgoing.extend(engine.handle(data, source, self._clock()))
                    except StoreBusy as exc:
                        # Another server holds the rows: this client alone gets no
                        # answer now and retransmits.
                        log.debug("no reply to %s: %s", source[0], exc)
                    except StoreError:
                        raise
                    except Exception:
                        # A bug must cost one packet, never the service.
                        log.exception("internal error handling a packet from %s", source[0])
        except (StoreUnavailable, StoreBusy) as exc:
            # The store logged the state change once; nothing per burst beyond debug.
            log.debug("%s: %d packets unanswered", exc, len(packets))
            return
        except StoreError as exc:
            log.error("%s: %d replies withheld", exc, len(outgoing))
            return
        self._reply(outgoing)

    def _reply(self, outgoing: list[Outgoing]) -> None:
        for out in outgoing:
            datagrams.after(self.config.reply_delay, self._loop, self._send, out)

    def _send(self, out: Outgoing) -> None:
        endpoint = self._endpoint
        if endpoint is None:
            return
        sock = endpoint.sock
        address = out.address
        if out.arp is not None:
            mac, ip = out.arp
            # Only a refusal by the kernel (no CAP_NET_ADMIN) turns unicast off for
            # good; one odd client (not a 6-byte MAC) is broadcast to on its own.
            if not (self._arp_ok and self.config.interface and len(mac) == 6):
                address = ("255.255.255.255", self.config.client_port)
            elif not add_neighbour(sock, self.config.interface, mac, ip):
                log.debug("cannot add a neighbour entry: broadcasting replies instead")
                self._arp_ok = False
                address = ("255.255.255.255", self.config.client_port)
        endpoint.send(out.payload, address)
