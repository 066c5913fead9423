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
- `after` is the reply delay (``--reply-delay``: ROMs that miss an instant answer).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

from ptftpd.errors import StartError, bind_error

BURST = 256  # datagrams read per wake-up at the most
MAX_DATAGRAM = 65536


def read_burst(sock: socket.socket, log: logging.Logger) -> list[tuple[bytes, Any]]:
    """Up to `BURST` datagrams queued on `sock`, each with its source address.

    Stops when nothing more is queued; any other receive error (an ICMP error the
    kernel queued on the socket) also ends the burst, logged at debug level on `log`:
    the next readiness carries on."""
    datagrams: list[tuple[bytes, Any]] = []
    for _ in range(BURST):
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
