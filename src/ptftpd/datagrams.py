"""The one UDP endpoint of every server: TFTP's request port, dhcpd/bootpd, DHCPv6 and
pxed's proxyDHCP and boot server ports.

- `udp_socket` binds, with one wording for every failure (no permission, port taken,
  no such interface: `ptftpd.errors.bind_error`), and never SO_REUSEADDR unless asked
  (a port another server holds must fail to bind, not be shared);
- `read_burst` drains what queued on a non-blocking socket: one wake-up serves what
  queued meanwhile (a boot storm), and the bound lets the loop's other sockets have
  their turn;
- `send` puts one datagram out, where a full buffer or an ICMP error costs that
  datagram (a debug line), never the server;
- `after` is the reply delay (``--reply-delay``: ROMs that miss an instant answer);
- `UdpEndpoint` puts these together for a socket served in an event loop: each wake-up
  reads one burst and hands it to its owner in one call, replies go out through `send`
  (after a reply delay if asked), `close` stops it. TFTP's request port, dhcpd and
  bootpd, DHCPv6 (547 and the 4011 boot service) and pxed's proxyDHCP and boot server
  ports all receive through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import socket
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ptftpd.errors import StartError, bind_error

T = TypeVar("T")

BURST = 256  # datagrams read per wake-up at the most
MAX_DATAGRAM = 65536


Datagram = tuple[bytes, Any]  # the bytes and the source address


def read_burst(sock: socket.socket, log: logging.Logger, limit: int = BURST) -> list[Datagram]:
    """Up to `limit` datagrams queued on `sock`, each with its source address.

    Stops when nothing more is queued; any other receive error (an ICMP error the
    kernel queued on the socket) also ends the burst, logged at debug level on `log`:
    the next readiness carries on."""
    datagrams: list[Datagram] = []
    for _ in range(limit):
        try:
            datagrams.append(sock.recvfrom(MAX_DATAGRAM))
        except (BlockingIOError, InterruptedError):
            break
        except OSError as exc:
            log.debug("receive error: %s", exc)
            break
    return datagrams


def udp_socket(
    family: socket.AddressFamily,
    address: tuple[Any, ...],
    *,
    where: str,
    hint: str,
    interface: str | None = None,
    broadcast: bool = False,
    reuse_port: bool = False,
    shared: bool = False,
    receive_buffer: int | None = None,
    joined: Callable[[socket.socket], None] | None = None,
    blocking: bool | None = False,
) -> socket.socket:
    """A UDP socket bound to `address` (on `interface` when given), or a `StartError`
    naming `where` and the port, with `hint` for a missing permission.

    `reuse_port`: one of several sockets sharing the port, the kernel spreading the
    requests (TFTP workers); `shared`: SO_REUSEADDR, for a proxy that answers beside
    the site's own server on the same host; `joined` runs after the bind (multicast
    groups); `blocking` None leaves the socket as created."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if broadcast:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        if interface:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.bind(address)
        if joined is not None:
            joined(sock)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.ENODEV and interface:
            raise StartError(f"no such interface: {interface}") from None
        raise StartError(bind_error(exc, "UDP", where, address[1], hint)) from None
    if blocking is not None:
        sock.setblocking(blocking)
    return sock


def send(
    sock: socket.socket, payload: bytes, address: tuple[Any, ...], log: logging.Logger
) -> None:
    """One datagram to `address`; a full send buffer or an error the kernel reports
    costs this datagram only (logged at debug level on `log`: the client retries)."""
    try:
        sock.sendto(payload, address)
    except (BlockingIOError, InterruptedError):
        log.debug("send buffer full: reply to %s dropped (the client retries)", address[0])
    except OSError as exc:
        log.debug("cannot send to %s: %s", address[0], exc)


def after(
    delay: float,
    loop: asyncio.AbstractEventLoop | None,
    action: Callable[..., object],
    *args: Any,
) -> None:
    """`action(*args)` now, or `delay` seconds later on `loop` (the reply delay)."""
    if delay > 0 and loop is not None:
        loop.call_later(delay, action, *args)
    else:
        action(*args)


class UdpEndpoint(Generic[T]):
    """A bound, non-blocking UDP socket served in an event loop.

    Each time the socket is readable, one burst is read by `read` (`read_burst`, or a
    reader that also wants each datagram's destination) and handed to `on_burst` in one
    call: the owner may batch its work per burst (dhcpd commits a burst's leases once).
    An exception from `on_burst` is logged and costs that burst, never the endpoint.
    `send` puts a reply out now or after `delay` seconds (the reply delay); send errors
    cost that datagram only. Build the usual kind with `endpoint`."""

    def __init__(
        self,
        sock: socket.socket,
        read: Callable[[socket.socket], list[T]],
        on_burst: Callable[[list[T]], None],
        log: logging.Logger,
    ) -> None:
        self.sock = sock
        self.read = read
        self.on_burst = on_burst
        self.log = log
        self.loop: asyncio.AbstractEventLoop | None = None
        sock.setblocking(False)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        loop.add_reader(self.sock.fileno(), self.readable)

    @property
    def closed(self) -> bool:
        return self.sock.fileno() < 0

    def readable(self) -> None:
        """Read one burst and hand it over (the loop's reader callback)."""
        if self.closed:
            return
        burst = self.read(self.sock)
        if not burst:
            return
        try:
            self.on_burst(burst)
        except Exception:  # a bug must cost one burst, never the server
            self.log.exception("internal error handling %d datagram(s)", len(burst))

    def send(self, payload: bytes, address: tuple[Any, ...], *, delay: float = 0.0) -> None:
        """`payload` to `address`, now or `delay` seconds later (the reply delay)."""
        after(delay, self.loop, self._send_now, payload, address)

    def _send_now(self, payload: bytes, address: tuple[Any, ...]) -> None:
        if not self.closed:
            send(self.sock, payload, address, self.log)

    def close(self) -> None:
        if self.closed:
            return
        loop = self.loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(ValueError, OSError, RuntimeError):
                loop.remove_reader(self.sock.fileno())
        self.sock.close()


def endpoint(
    sock: socket.socket,
    on_burst: Callable[[list[Datagram]], None],
    log: logging.Logger,
    *,
    burst: int = BURST,
) -> UdpEndpoint[Datagram]:
    """An endpoint reading up to `burst` datagrams per wake-up with `read_burst`."""
    return UdpEndpoint(sock, functools.partial(read_burst, log=log, limit=burst), on_burst, log)
