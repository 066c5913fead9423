"""asyncio DHCPv6 service: the engine on UDP [::]:547 of one interface, plus RAs.

The socket is tied to IFACE with SO_BINDTODEVICE and joins All_DHCP_Relay_Agents_and_
Servers (ff02::1:2) there only, so instances on different interfaces coexist and no
reply leaves on the wrong link. Replies go to the client's link-local address, port
546, scoped to IFACE. A burst of waiting datagrams is handled in one go; bindings are
committed by the engine before its replies are sent, and withheld if the commit fails.

Events: the engine's typed events (`ptftpd.events`: messages in and out, bindings
offered, bound, released, declined) go to `events`, through a `LeaseExpiry` that adds
"lease expired" when a binding's end passes; the service arms one loop timer at its
`next_deadline()` after each burst and each expiry (no polling).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

from ptftpd import datagrams
from ptftpd.datagrams import read_burst
from ptftpd.dhcp.expiry_timer import ExpiryTimer
from ptftpd.dhcp6.codec import duid_ll
from ptftpd.dhcp6.config import Dhcp6Config
from ptftpd.dhcp6.engine import Dhcp6Engine, Outgoing
from ptftpd.dhcp6.leases import Bindings, LeaseStore6, MemoryStore6, Pool6
from ptftpd.dhcp6.rasender import RaSender
from ptftpd.dhcp6.store import Lease6StoreError, SqliteStore6
from ptftpd.errors import ROOT_OR_CAPABILITIES, StartError
from ptftpd.events import Event, EventSink, LeaseExpiry, ignore

__all__ = ["ALL_DHCP_SERVERS", "Dhcp6Service", "interface_mac"]

log = logging.getLogger("ptftpd.dhcp6")

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
        store: LeaseStore6 | None = None,
        clock: Callable[[], float] = time.time,
        events: EventSink = ignore,
    ) -> None:
        self.config = config
        self.events = events
        self._expiry: ExpiryTimer | None = None
        self._store = store
        self._clock = clock
        self.engine: Dhcp6Engine | None = None
        self.ra: RaSender | None = None
        self.ifindex = 0
        self._sock: socket.socket | None = None
        self._boot_sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

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
            pool = Pool6.from_prefix(
                cfg.prefix, cfg.server_addresses, cfg.range_start, cfg.range_end
            )
        except ValueError as exc:
            raise StartError(str(exc)) from None
        try:
            if self._store is None:
                self._store = (
                    SqliteStore6(cfg.leases_path, cfg.lease_sync.upper())
                    if cfg.leases_path
                    else MemoryStore6()
                )
            bindings = Bindings(pool, self._store, cfg.offer_time, cfg.decline_time, cfg.limits)
        except Lease6StoreError as exc:
            raise StartError(str(exc)) from None
        self.engine = Dhcp6Engine(cfg, duid, bindings)
        if self.events is not ignore:
            watch = LeaseExpiry(self._deliver)
            self._expiry = ExpiryTimer(watch, self._clock)
            self.engine.events = watch.sink
        self._sock = _open_socket(cfg.interface, self.ifindex, cfg.server_port, shared=cfg.proxy)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._on_readable, self._sock, False)
        if cfg.proxy and cfg.boot_service_port is not None:
            try:
                self._boot_sock = _open_socket(
                    cfg.interface, self.ifindex, cfg.boot_service_port, multicast=False
                )
            except StartError:
                self.close()
                raise
            self._loop.add_reader(
                self._boot_sock.fileno(), self._on_readable, self._boot_sock, True
            )
        if cfg.send_ra:
            self.ra = RaSender(cfg.interface, self.ifindex, cfg.prefix, cfg.ra, mac)
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

    def _deliver(self, event: Event) -> None:
        try:
            self.events(event)
        except Exception:
            log.exception("event subscriber failed")

    def close(self) -> None:
        if self._expiry is not None:
            self._expiry.close()
        if self.ra is not None:
            self.ra.close()
            self.ra = None
        for sock in (self._sock, self._boot_sock):
            if sock is not None:
                if self._loop is not None and not self._loop.is_closed():
                    self._loop.remove_reader(sock.fileno())
                sock.close()
        self._sock = self._boot_sock = None
        if self._store is not None:
            self._store.close()
            self._store = None

    @property
    def closed(self) -> bool:
        return self._sock is None

    def _on_readable(self, sock: socket.socket, boot_service: bool) -> None:
        """Drain a burst from one socket (547, or the 4011 boot service), then reply."""
        engine = self.engine
        if engine is None or sock.fileno() < 0:
            return
        handle = engine.handle_boot_service if boot_service else engine.handle
        outgoing: list[Outgoing] = []
        for data, addr in read_burst(sock, log):
            host = str(addr[0]).split("%", 1)[0]
            try:
                outgoing.extend(handle(data, (host, int(addr[1])), self._clock()))
            except Lease6StoreError as exc:
                log.error("%s: reply to %s withheld", exc, host)
            except Exception:
                # A bug must cost one packet, never the service.
                log.exception("internal error handling a packet from %s", host)
        if self._expiry is not None:
            self._expiry.arm()
        for out in outgoing:
            address = (out.address[0], out.address[1], 0, self.ifindex)
            datagrams.send(sock, out.payload, address, log)
