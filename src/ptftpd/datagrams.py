"""Reading what queued on a non-blocking UDP socket, for the DHCP and DHCPv6 servers.

Both wake up on readiness and drain a burst before replying: one wake-up serves what
queued meanwhile (a boot storm), and the bound lets the loop's other sockets have
their turn.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

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
