"""asyncio router-advertisement sender: a raw ICMPv6 socket tied to one interface.

Sends the RA built by `ra.build_ra` to ff02::1 with hop limit 255 (hosts drop RAs
with any other, RFC 4861 6.1.2) on the schedule of `ra.RaSchedule`, and brings the
next one forward when a router solicitation with hop limit 255 arrives. The kernel
picks our link-local address as the source and computes the checksum.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from ipaddress import IPv6Address

from ptftpd.dhcp6.codec import PacketError
from ptftpd.dhcp6.config import Dhcp6Config
from ptftpd.dhcp6.ra import ICMP6_RS, RaSchedule, build_ra, decode_rs
from ptftpd.errors import StartError
from ptftpd.events import EventSink, RouterAdvertised, RouterSolicited, ignore

__all__ = ["RaSender"]

log = logging.getLogger("ptftpd.dhcp6")

ALL_NODES = "ff02::1"
ALL_ROUTERS = "ff02::2"
_ICMP6_FILTER = 1  # <netinet/icmp6.h>: a bitmap of ICMPv6 types to block


def _only_rs_filter() -> bytes:
    words = [0xFFFFFFFF] * 8
    words[ICMP6_RS >> 5] &= ~(1 << (ICMP6_RS & 31))
    return struct.pack("=8I", *words)


def open_icmp6_socket(interface: str, ifindex: int) -> socket.socket:
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    except PermissionError:
        raise StartError(
            "permission denied opening a raw ICMPv6 socket for router advertisements: "
            "run as root (or with CAP_NET_RAW), or turn RAs off"
        ) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        sock.setsockopt(socket.IPPROTO_ICMPV6, _ICMP6_FILTER, _only_rs_filter())
        group = socket.inet_pton(socket.AF_INET6, ALL_ROUTERS) + struct.pack("@I", ifindex)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group)
    except OSError as exc:
        sock.close()
        raise StartError(f"cannot set up router advertisements on {interface}: {exc}") from None
    sock.setblocking(False)
    return sock


class RaSender:
    def __init__(
        self,
        config: Dhcp6Config,
        ifindex: int,
        mac: bytes | None,
        events: EventSink = ignore,
    ) -> None:
        """Advertises `config.prefix` on `config.interface` (index `ifindex`)."""
        self.interface = config.interface
        # Told of each solicitation heard (`RouterSolicited`) and each advertisement
        # sent (`RouterAdvertised`, with the MACs it answers: at most 64 wait).
        self.events = events
        self._answering: dict[str, None] = {}
        self.ifindex = ifindex
        self.config = config
        self.packet = build_ra(config, mac)
        self.sent = 0
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._schedule: RaSchedule | None = None

    def start(self) -> None:
        """Open the socket and send the first RA now (call inside the running loop)."""
        self._loop = asyncio.get_running_loop()
        self._sock = open_icmp6_socket(self.interface, self.ifindex)
        self._schedule = RaSchedule(self.config, self._loop.time())
        self._loop.add_reader(self._sock.fileno(), self._on_readable)
        self._arm()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def _arm(self) -> None:
        if self._loop is None or self._schedule is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(self._schedule.due, self._fire)

    def _fire(self) -> None:
        sock, loop, schedule = self._sock, self._loop, self._schedule
        if sock is None or loop is None or schedule is None:
            return
        try:
            sock.sendto(self.packet, (ALL_NODES, 0, 0, self.ifindex))
            self.sent += 1
            answers, self._answering = tuple(self._answering), {}
            self.events(RouterAdvertised(answers))
            log.debug("router advertisement sent on %s", self.interface)
        except OSError as exc:
            # E.g. our link-local address is still tentative: the next one will do.
            log.debug("cannot send a router advertisement on %s: %s", self.interface, exc)
        schedule.sent(loop.time())
        self._arm()

    def _on_readable(self) -> None:
        sock, loop, schedule = self._sock, self._loop, self._schedule
        if sock is None or loop is None or schedule is None:
            return
        for _ in range(64):
            try:
                data, ancillary, _flags, addr = sock.recvmsg(2048, socket.CMSG_SPACE(4))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.debug("ICMPv6 receive error: %s", exc)
                break
            hops = [
                struct.unpack("@i", cdata[:4])[0]
                for level, kind, cdata in ancillary
                if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_HOPLIMIT and len(cdata) >= 4
            ]
            if hops and hops[0] != 255:
                log.debug("ignored a router solicitation with hop limit %d", hops[0])
                continue
            try:
                rs = decode_rs(data)
            except PacketError as exc:
                log.debug("ignored a bad router solicitation from %s: %s", addr[0], exc)
                continue
            lla = rs.source_lla
            mac = lla.hex(":") if lla is not None and len(lla) == 6 else None
            log.debug("router solicitation from %s (%s)", addr[0], mac or "no link-layer address")
            if self.events is not ignore:
                if mac is not None and len(self._answering) < 64:
                    self._answering[mac] = None
                peer = IPv6Address(str(addr[0]).split("%")[0])
                self.events(RouterSolicited(peer, mac))
            schedule.solicited(loop.time())
            self._arm()
