"""asyncio DHCPv6 service: the engine on UDP [::]:547 of one interface, plus RAs.

The socket is tied to IFACE with SO_BINDTODEVICE and joins All_DHCP_Relay_Agents_and_
Servers (ff02::1:2) there only, so instances on different interfaces coexist and no
reply leaves on the wrong link. Replies go to the client's link-local address, port
546, scoped to IFACE. A burst of waiting datagrams is handled in one go; bindings are
committed by the engine before its replies are sent, and withheld if the commit fails.

With `leases_url` (PostgreSQL) every store call waits for the network, so the engine
runs off the event loop, in the database lane DHCPv4 uses too (`dhcp.db_lane.DbLane`):
a pool of threads (as many as the store has connections), one packet at a time per
client (`client_key`: its DUID and source address, so a client's messages keep their
order), bounded queues (beyond them a packet is dropped: clients retransmit), group
commit with one savepoint per packet (a failed statement costs its own client's reply
only), the replies and lease events let out in the loop after their group's commit.
A slow or unreachable database then delays only the DHCPv6 clients whose answer
needs it, never the loop (RAs, pxed's TFTP, HTTP and DHCPv4), and a row another
server holds delays its own client only. With PostgreSQL the lease policy keeps no
memory of its own: every decision is one transaction on the rows (`dhcp/pg_store.py`).

Events: the engine's typed events (`ptftpd.events`: messages in and out, bindings
offered, bound, released, declined) go to `events`, through a `LeaseExpiry` that adds
"lease expired" when a binding's end passes; the service arms one loop timer at its
`next_deadline()` after each burst and each expiry (no polling).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ptftpd import datagrams
from ptftpd.closing import close_all
from ptftpd.dhcp import shared_expiry
from ptftpd.dhcp.balance import Balancer
from ptftpd.dhcp.db_lane import DbLane, ToLoop
from ptftpd.dhcp.expiry_timer import ExpiryTimer
from ptftpd.dhcp.lease_store import LeaseStore, MemoryStore
from ptftpd.dhcp.leases import LeaseRows
from ptftpd.dhcp.peers import V6, Heartbeat, SharedBeats
from ptftpd.dhcp.shared_expiry import SharedExpiry
from ptftpd.dhcp.store import SqliteStore, StoreBusy, StoreError, StoreUnavailable
from ptftpd.dhcp6.config import Dhcp6Config
from ptftpd.dhcp6.duid import duid_ll
from ptftpd.dhcp6.engine import Dhcp6Engine, Outgoing
from ptftpd.dhcp6.leases import prefix_policy
from ptftpd.dhcp6.rasender import RaSender
from ptftpd.errors import ROOT_OR_CAPABILITIES, StartError
from ptftpd.events import Event, EventSink, LeaseExpiry, ignore

__all__ = ["ALL_DHCP_SERVERS", "Dhcp6Service", "interface_mac"]

log = logging.getLogger("ptftpd.dhcp6")

_RELAY_DEPTH = 9  # the codec's MAX_RELAYS (8) and the client message
_RELAY_FORW = 12


def client_key(data: bytes, host: str) -> str:
    """Which client a datagram is, for the lane's ordering: the source address and the
    Client Identifier (option 1) found by walking the options, through Relay-forward
    layers (option 9) at most `_RELAY_DEPTH` deep; no full decode (the engine does
    that), linear in the datagram, and a malformed one is keyed by its source."""
    view = memoryview(data)
    for _ in range(_RELAY_DEPTH):
        if not view:
            break
        relay = view[0] == _RELAY_FORW
        offset = 34 if relay else 4  # relay: type, hop count, link and peer address
        inner = None
        while offset + 4 <= len(view):
            code = int.from_bytes(view[offset : offset + 2], "big")
            size = int.from_bytes(view[offset + 2 : offset + 4], "big")
            value = view[offset + 4 : offset + 4 + size]
            if code == 1 and not relay:
                return f"{host} {bytes(value).hex()}"
            if code == 9 and relay:
                inner = value
                break
            offset += 4 + size
        if inner is None:
            break
        view = inner
    return host


# One of the service's sockets (547, or the 4011 boot service), read in bursts.
_Endpoint = datagrams.UdpEndpoint[datagrams.Datagram]


ALL_DHCP_SERVERS = "ff02::1:2"  # All_DHCP_Relay_Agents_and_Servers, link scope


def interface_mac(interface: str) -> bytes | None:
    """IFACE's hardware address from sysfs; None for interfaces without one."""
    try:
        text = Path(f"/sys/class/net/{interface}/address").read_text().strip()
        mac = bytes.fromhex(text.replace(":", ""))
    except (OSError, ValueError):
        return None
    return mac if mac.strip(b"\x00") else None


def _open_socket(
    interface: str, ifindex: int, port: int, multicast: bool = True, shared: bool = False
) -> socket.socket:
    """A socket on IFACE's `port`. Only a proxy shares its port (`shared`): it answers
    beside the site's own DHCPv6 server on the same host, and both must hear every
    multicast Solicit. A full server never takes over a port another process serves."""

    def join(sock: socket.socket) -> None:
        if multicast:
            group = socket.inet_pton(socket.AF_INET6, ALL_DHCP_SERVERS)
            group += struct.pack("@I", ifindex)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group)

    return datagrams.udp_socket(
        socket.AF_INET6,
        ("::", port),
        where=interface,
        hint=ROOT_OR_CAPABILITIES,
        interface=interface,
        shared=shared,
        joined=join,
    )


class Dhcp6Service:
    """DHCPv6 (and optionally RA) on one interface, inside any running asyncio loop.

    `store` defaults to SQLite at `config.leases_path` (memory when None); `clock` is
    wall time, since lease expiry must survive restarts. `events` receives the
    engine's typed events and the expiries (see the module docstring); a subscriber's
    exception is logged, never raised into the service."""

    def __init__(
        self,
        config: Dhcp6Config,
        store: LeaseStore | LeaseRows | None = None,
        clock: Callable[[], float] = time.time,
        events: EventSink = ignore,
    ) -> None:
        self.config = config
        self.events = events
        self._expiry: ExpiryTimer | None = None
        # A shared database: the ends of every binding, read from it (`shared_expiry`).
        self._shared_expiry: SharedExpiry | None = None
        self._lane: DbLane[str, Outgoing] | None = None  # PostgreSQL: off the loop
        # The engine's events, from the loop or a lane thread, reach `_on_loop` in the loop.
        self._emit = ToLoop(self._on_loop)
        self._store = store
        self._clock = clock
        self.engine: Dhcp6Engine | None = None
        self.ra: RaSender | None = None
        self._heartbeat: Heartbeat | None = None  # PostgreSQL: the servers split clients
        self.ifindex = 0
        self._endpoint: _Endpoint | None = None
        self._boot_endpoint: _Endpoint | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Told of each message the boot policy held (`Dhcp6Engine.on_wait`); `feed` it
        # back. Set before `start`.
        self.on_wait: Callable[[bytes, tuple[str, int]], None] | None = None

    async def start(self) -> None:
        """Bind, load the bindings, start RAs. Raises `StartError` (one line)."""
        cfg = self.config
        try:
            self.ifindex = socket.if_nametoindex(cfg.interface)
        except OSError:
            raise StartError(f"no such interface: {cfg.interface}") from None
        mac = interface_mac(cfg.interface)
        duid = cfg.server_duid or (duid_ll(mac) if mac else None)
        if duid is None:
            raise StartError(
                f"{cfg.interface} has no hardware address to build a DUID from: set server_duid"
            )
        try:
            if self._store is None:
                self._store = self._open_store(duid)
            policy = prefix_policy(cfg, self._store)
            self._store = policy.store
        except (StoreError, ValueError) as exc:
            raise StartError(str(exc)) from None
        self.engine = Dhcp6Engine(cfg, duid, policy)
        self.engine.on_wait = self.on_wait
        self._loop = asyncio.get_running_loop()
        if cfg.leases_url and not cfg.proxy:
            # Several servers on one database: RFC 3074 buckets of the clients' DUIDs.
            balancer = Balancer(V6 + duid.hex(), cfg.peer_timeout)
            self.engine.balancer = balancer
            beats = SharedBeats(cfg.leases_url, balancer.server_id)
            self._heartbeat = Heartbeat(beats, balancer, cfg.server_addresses, lambda: ignore)
            self._heartbeat.start(self._loop)
        self._emit.start(self._loop)
        if self.events is not ignore:
            watch = LeaseExpiry(self._deliver)
            self._expiry = ExpiryTimer(watch, self._clock)
            self.engine.events = self._emit
        if getattr(self._store, "blocking", False):
            store: Any = self._store
            self._lane = DbLane(
                self._loop,
                int(getattr(store, "workers", 4)),
                self._answered,
                store=store,
                events=self._on_loop if self.events is not ignore else None,
                log=log,
                threads="dhcp6-db",
            )
            balancer6 = self.engine.balancer
            if balancer6 is not None and self.events is not ignore:
                # Sharing the database: the bindings' ends come from it, whoever bound.
                self._shared_expiry = SharedExpiry(
                    store, balancer6, self._lane, self._emit, self._clock, self._loop,
                    family=shared_expiry.V6,
                )  # fmt: skip
                self._shared_expiry.start()
        sock = _open_socket(cfg.interface, self.ifindex, cfg.server_port, shared=cfg.proxy)
        self._endpoint = self._serve(sock, boot_service=False)
        if cfg.proxy and cfg.boot_service_port is not None:
            try:
                sock = _open_socket(
                    cfg.interface, self.ifindex, cfg.boot_service_port, multicast=False
                )
            except StartError:
                self.close()
                raise
            self._boot_endpoint = self._serve(sock, boot_service=True)
        if cfg.send_ra:
            self.ra = RaSender(cfg, self.ifindex, mac, events=self.events)
            try:
                self.ra.start()
            except StartError:
                self.close()
                raise
        log.info(
            "serving DHCPv6%s on %s port %d (%s, %s)",
            " and router advertisements" if cfg.send_ra else "",
            cfg.interface,
            cfg.server_port,
            (
                f"proxy: boot options only, boot service on port {cfg.boot_service_port}"
                if cfg.proxy
                else f"addresses from {cfg.prefix}"
            ),
            f"server DUID {duid.hex(':')}",
        )

    def _open_store(self, duid: bytes) -> LeaseStore | LeaseRows:
        cfg = self.config
        if cfg.leases_url:
            try:
                from ptftpd.dhcp.pg_store import PgLink, PgStore
            except ImportError:
                raise StoreError(
                    "PostgreSQL leases need psycopg: pip install 'ptftpd[postgresql]'"
                ) from None
            # The owner recorded on this server's rows: its DUID (stable per interface).
            return PgStore(PgLink(cfg.leases_url, duid.hex()))
        if cfg.leases_path:
            return SqliteStore(cfg.leases_path, cfg.lease_sync.upper())
        return MemoryStore()

    def _on_loop(self, event: Event) -> None:
        if self._shared_expiry is not None:
            self._shared_expiry.note(event)
            self._deliver(event)
        elif self._expiry is not None:
            self._expiry.watch.sink(event)
            self._expiry.arm()

    def _deliver(self, event: Event) -> None:
        try:
            self.events(event)
        except Exception:
            log.exception("event subscriber failed")

    def close(self) -> None:
        close_all(
            self._heartbeat, self._expiry, self._shared_expiry, self._lane, self.ra,
            self._endpoint, self._boot_endpoint, self._store,
        )  # fmt: skip
        self._heartbeat = self._shared_expiry = self._lane = self.ra = None
        self._endpoint = self._boot_endpoint = self._store = None

    @property
    def group_commits(self) -> tuple[int, int]:
        """Transactions the database lane committed, and the packets they carried
        (PostgreSQL; (0, 0) otherwise)."""
        lane = self._lane
        return (lane.commits, lane.carried) if lane is not None else (0, 0)

    @property
    def closed(self) -> bool:
        return self._endpoint is None

    def _serve(self, sock: socket.socket, *, boot_service: bool) -> _Endpoint:
        """`sock` read in bursts in the loop (547, or the 4011 boot service)."""
        assert self._loop is not None
        endpoint = datagrams.endpoint(sock, lambda burst: None, log)
        endpoint.on_burst = functools.partial(self._on_burst, endpoint, boot_service)
        endpoint.start(self._loop)
        return endpoint

    def _on_burst(
        self, endpoint: _Endpoint, boot_service: bool, datagram_burst: list[datagrams.Datagram]
    ) -> None:
        """Answer a burst read on `endpoint`: at once, or packet by packet from the
        database lane (PostgreSQL)."""
        engine = self.engine
        if engine is None:
            return
        handle = engine.handle_boot_service if boot_service else engine.handle
        burst = [
            (data, str(addr[0]).split("%", 1)[0], int(addr[1])) for data, addr in datagram_burst
        ]
        lane = self._lane
        if lane is None or boot_service:
            # The boot service never touches bindings: answered in the loop.
            self._send(endpoint, self._answer(handle, burst))
            return
        for data, host, port in burst:
            job = functools.partial(self._handle, handle, data, (host, port))
            lane.submit(client_key(data, host), job)

    def feed(self, data: bytes, source: tuple[str, int]) -> None:
        """A held message (port 547), handled again now as if it had just arrived:
        its boot decision has come."""
        engine, endpoint = self.engine, self._endpoint
        if engine is None or endpoint is None:
            return
        lane = self._lane
        if lane is None:
            self._send(endpoint, self._answer(engine.handle, [(data, source[0], source[1])]))
        else:
            job = functools.partial(self._handle, engine.handle, data, source)
            lane.submit(client_key(data, source[0]), job)

    def _handle(
        self,
        handle: Callable[[bytes, tuple[str, int], float], list[Outgoing]],
        data: bytes,
        source: tuple[str, int],
    ) -> list[Outgoing]:
        """One packet in the database lane, which turns what it raises into silence."""
        return handle(data, source, self._clock())

    def _answer(
        self,
        handle: Callable[[bytes, tuple[str, int], float], list[Outgoing]],
        burst: list[tuple[bytes, str, int]],
    ) -> list[Outgoing]:
        """The engine's replies to a burst; a store failure costs its packet's reply
        only (the store logged the state change), a bug one packet, never the service."""
        outgoing: list[Outgoing] = []
        for data, host, port in burst:
            try:
                outgoing.extend(handle(data, (host, port), self._clock()))
            except (StoreUnavailable, StoreBusy) as exc:
                log.debug("no reply to %s: %s", host, exc)  # the store logged it once
            except StoreError as exc:
                log.error("%s: reply to %s withheld", exc, host)
            except Exception:
                log.exception("internal error handling a packet from %s", host)
        return outgoing

    def _answered(self, outgoing: list[Outgoing]) -> None:
        """The database lane's replies (it serves port 547 only, never the 4011 boot
        service): sent unless the service closed meanwhile."""
        if self._endpoint is not None:
            self._send(self._endpoint, outgoing)

    def _send(self, endpoint: _Endpoint, outgoing: list[Outgoing]) -> None:
        """Replies from the socket the requests came to (nothing once it is closed)."""
        for out in outgoing:
            endpoint.send(out.payload, (out.address[0], out.address[1], 0, self.ifindex))
