"""asyncio DHCP/BOOTP server: a thin I/O shell around `DhcpEngine`.

One UDP socket on port 67 bound to IFACE with SO_BINDTODEVICE, so instances on
different interfaces coexist and a server never answers on the wrong link. Replies to
clients without an address are unicast after adding a neighbour (ARP) entry for the
client's MAC, as RFC 2131 4.1 asks; when the kernel refuses that, they are broadcast.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import socket
import struct
import time
from collections.abc import Callable
from ipaddress import IPv4Address

from ptftpd.dhcp.engine import BootPolicy, DhcpConfig, DhcpEngine, Outgoing
from ptftpd.dhcp.leases import LeasePolicy, LeaseStore, MemoryStore, PoolConfig, build_pool
from ptftpd.dhcp.store import SqliteStore

__all__ = ["DhcpServer", "ServerStartError", "open_dhcp_socket"]

log = logging.getLogger("ptftpd.dhcp")

SIOCSARP = 0x8955
ATF_COM = 0x02
ARPHRD_ETHER = 1


class ServerStartError(Exception):
    """A start-up problem that the CLI reports as one line (exit 1)."""


def open_dhcp_socket(interface: str | None, port: int, address: str = "0.0.0.0") -> socket.socket:
    """A non-blocking broadcast-capable UDP socket on `port`, tied to `interface`.

    Shared with pxed (port 4011). Permission problems become one clear line."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        if interface:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.bind((address, port))
    except PermissionError:
        sock.close()
        raise ServerStartError(
            f"permission denied binding UDP port {port} on {interface or address}: "
            "run as root (or with CAP_NET_BIND_SERVICE and CAP_NET_RAW)"
        ) from None
    except OSError as exc:
        sock.close()
        if exc.errno == errno.ENODEV:
            raise ServerStartError(f"no such interface: {interface}") from None
        raise ServerStartError(
            f"cannot bind UDP port {port} on {interface}: {exc.strerror}"
        ) from None
    sock.setblocking(False)
    return sock


def _set_arp(sock: socket.socket, interface: str, mac: bytes, ip: IPv4Address) -> bool:
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


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server: DhcpServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.server._received(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.debug("socket error: %s", exc)


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
        self._clock = clock
        self._boot_policy = boot_policy
        self.engine: DhcpEngine | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._sock: socket.socket | None = None
        self._arp_ok = True

    @property
    def boot_policy(self) -> BootPolicy | None:
        return self._boot_policy

    @boot_policy.setter
    def boot_policy(self, value: BootPolicy | None) -> None:
        self._boot_policy = value
        if self.engine is not None:
            self.engine.boot_policy = value

    def build_engine(self) -> DhcpEngine:
        """The sans-IO engine with its lease policy; `start` calls it, tests may too."""
        cfg = self.config
        if self._store is None:
            self._store = SqliteStore(cfg.leases_path) if cfg.leases_path else MemoryStore()
        exclude = [cfg.server_ip, *cfg.router_list, *(h.address for h in cfg.static_hosts)]
        pool = PoolConfig(
            network=cfg.network,
            addresses=build_pool(cfg.network, exclude, cfg.range_start, cfg.range_end),
            lease_time=cfg.lease_time,
            offer_time=cfg.offer_time,
            decline_time=cfg.decline_time,
            static_hosts=cfg.static_hosts,
        )
        policy = LeasePolicy(pool, self._store, self._clock)
        return DhcpEngine(cfg, policy, self._boot_policy)

    async def start(self) -> None:
        if self.engine is None:
            self.engine = self.build_engine()
        self._sock = open_dhcp_socket(self.config.interface, self.config.port)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=self._sock)
        self._transport = transport
        size = len(self.engine.policy.config.addresses)
        log.info(
            "serving %s on %s port %d (%s, pool of %d addresses)",
            "BOOTP" if not self.config.dhcp else "DHCP",
            self.config.interface or self.config.server_ip,
            self.config.port,
            "all clients" if self.config.answer_all else "PXE clients only",
            size,
        )

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._store is not None:
            self._store.close()

    @property
    def closed(self) -> bool:
        return self._transport is None

    def _received(self, data: bytes, source: tuple[str, int]) -> None:
        engine = self.engine
        if engine is None:
            return
        try:
            replies = engine.handle(data, source)
        except Exception:
            # A bug must cost one packet, never the service.
            log.exception("internal error handling a packet from %s", source[0])
            return
        delay = self.config.reply_delay
        for out in replies:
            if delay > 0:
                asyncio.get_running_loop().call_later(delay, self._send, out)
            else:
                self._send(out)

    def _send(self, out: Outgoing) -> None:
        transport, sock = self._transport, self._sock
        if transport is None or sock is None:
            return
        address = out.address
        if out.arp is not None:
            mac, ip = out.arp
            if not (
                self._arp_ok
                and self.config.interface
                and _set_arp(sock, self.config.interface, mac, ip)
            ):
                if self._arp_ok:
                    log.debug("cannot add a neighbour entry: broadcasting replies instead")
                self._arp_ok = False
                address = ("255.255.255.255", self.config.client_port)
        transport.sendto(out.payload, address)
