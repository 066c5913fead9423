"""Heartbeats of the servers sharing a lease database: the thin driver of `Balancer`.

Every `interval` seconds (a third of the peer timeout) one thread of its own writes this
server's heartbeat row and reads everyone's (`PgStore.heartbeat`, off the event loop);
the rows go to the sans-IO `Balancer` in the loop, which says whether the split of the
RFC 3074 buckets changed. A change is one log line (a peer gone silent, a peer back,
this server's share) and a `BalanceChanged` event (the metrics gauges). A lost
database leaves the split as it was (nothing is answered meanwhile anyway). On a clean
stop the server's row is deleted, so the others take its buckets at once instead of
after the peer timeout.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Protocol

from ptftpd.datagrams import BURST, MAX_DATAGRAM
from ptftpd.dhcp.balance import Balancer, Split
from ptftpd.dhcp.store import StoreError
from ptftpd.events import BalanceChanged, EventSink

__all__ = ["Beating", "Heartbeat", "read_burst_to"]

log = logging.getLogger("ptftpd.dhcp")

_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


class Beating(Protocol):
    """The store side (`pg_store.PgStore`)."""

    def heartbeat(
        self, addresses: Iterable[IPv4Address | IPv6Address] = ()
    ) -> list[tuple[str, float]]: ...

    def leave(self) -> None: ...


_BEAT = (
    "INSERT INTO servers (id, addresses, heartbeat, started) VALUES "
    "(%(id)s, %(addresses)s, extract(epoch FROM clock_timestamp()), "
    "extract(epoch FROM clock_timestamp())) ON CONFLICT (id) DO UPDATE SET "
    "heartbeat = EXCLUDED.heartbeat, addresses = EXCLUDED.addresses"
)
_AGES = "SELECT id, extract(epoch FROM clock_timestamp()) - heartbeat FROM servers"
V6 = "dhcp6:"  # DHCPv6 servers' ids: they split their clients among themselves only


def beat(conn: Any, server_id: str, addresses: Iterable[Any]) -> list[tuple[str, float]]:
    """One heartbeat on `conn` (a psycopg connection in a transaction): this server's
    row written, every server's (id, seconds since its heartbeat) read, both timed by
    the database's clock, so the servers' clocks need not agree."""
    conn.execute(_BEAT, {"id": server_id, "addresses": [str(a) for a in addresses]})
    return [(str(sid), float(age)) for sid, age in conn.execute(_AGES).fetchall()]


class SharedBeats:
    """Heartbeats on a connection of their own (the DHCPv6 service's store has none to
    lend): `Beating` for `Heartbeat`."""

    def __init__(self, conninfo: str, server_id: str) -> None:
        from ptftpd.dhcp.pg_link import PgLink

        self.server_id = server_id
        self._link = PgLink(conninfo, server_id, min_connections=1, max_connections=1)

    def heartbeat(
        self, addresses: Iterable[IPv4Address | IPv6Address] = ()
    ) -> list[tuple[str, float]]:
        return self._link.run(lambda conn: beat(conn, self.server_id, addresses))

    def leave(self) -> None:
        sql = "DELETE FROM servers WHERE id = %s"
        self._link.run(lambda conn: conn.execute(sql, (self.server_id,)), attempts=1)

    def close(self) -> None:
        self._link.close()


def want_destination(sock: socket.socket) -> None:
    """Ask the kernel for each datagram's destination address (`read_burst_to`)."""
    sock.setsockopt(socket.IPPROTO_IP, _PKTINFO, 1)


def read_burst_to(
    sock: socket.socket, own: frozenset[bytes]
) -> list[tuple[bytes, tuple[str, int], bool]]:
    """Like `datagrams.read_burst`, with for each datagram whether it was sent to one
    of the `own` addresses (packed) rather than broadcast (`want_destination` first)."""
    out: list[tuple[bytes, tuple[str, int], bool]] = []
    for _ in range(BURST):
        try:
            data, ancillary, _flags, addr = sock.recvmsg(MAX_DATAGRAM, socket.CMSG_SPACE(12))
        except (BlockingIOError, InterruptedError):
            break
        except OSError as exc:
            log.debug("receive error: %s", exc)
            break
        unicast = False
        for level, kind, info in ancillary:
            # struct in_pktinfo: interface index, local address, header destination.
            if level == socket.IPPROTO_IP and kind == _PKTINFO and len(info) >= 12:
                unicast = bytes(info[8:12]) in own
        out.append((data, (addr[0], addr[1]), unicast))
    return out


class Heartbeat:
    """Beats for `balancer.server_id` into `store`; see the module's documentation."""

    def __init__(
        self,
        store: Beating,
        balancer: Balancer,
        addresses: Iterable[IPv4Address | IPv6Address],
        events: Callable[[], EventSink],
    ) -> None:
        self.store = store
        self.balancer = balancer
        self.addresses = tuple(addresses)
        self.events = events
        self.interval = balancer.peer_timeout / 3
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dhcp-beat")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._left = 0
        self.closed = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """The first beat before serving (so the split is known), then one every
        `interval` seconds."""
        self._loop = loop
        try:
            self._apply(self.store.heartbeat(self.addresses))
        except StoreError as exc:
            log.warning("no heartbeat: %s; answering every client meanwhile", exc)
        self._timer = loop.call_later(self.interval, self._beat)

    def _beat(self) -> None:
        if self.closed or self._loop is None:
            return
        future = self._pool.submit(self.store.heartbeat, self.addresses)
        loop = self._loop
        future.add_done_callback(lambda done: loop.call_soon_threadsafe(self._beaten, done))

    def _beaten(self, done: Future[list[tuple[str, float]]]) -> None:
        if self.closed or self._loop is None:
            return
        try:
            self._apply(done.result())
        except StoreError as exc:
            log.debug("no heartbeat: %s", exc)  # the store logged the loss once
        except Exception:  # a bug must not stop the beats
            log.exception("heartbeat failed")
        self._timer = self._loop.call_later(self.interval, self._beat)

    def _apply(self, rows: list[tuple[str, float]]) -> None:
        # DHCPv4 and DHCPv6 servers share the table, each family splits its own clients.
        v6 = self.balancer.server_id.startswith(V6)
        rows = [(sid, age) for sid, age in rows if sid.startswith(V6) == v6]
        before = self.balancer.split
        split = self.balancer.update(rows)
        if split is not None:
            self._log(before, split, dict(rows))
        left = self.balancer.left
        if split is not None or left != self._left:
            self._left = left
            now = self.balancer.split
            self.events()(BalanceChanged(len(now.mine), now.servers, left))

    def _log(self, before: Split, after: Split, ages: dict[str, float]) -> None:
        for gone in sorted(set(before.servers) - set(after.servers)):
            age = ages.get(gone)
            silent = "left" if age is None else f"silent for {age:.1f} s"
            log.warning(
                "peer %s %s (peer timeout %g s): its clients are served by the others",
                gone,
                silent,
                self.balancer.peer_timeout,
            )
        for back in sorted(set(after.servers) - set(before.servers)):
            log.info("peer %s is live: it takes back its share of the clients", back)
        log.info("load balancing: this server answers %s", after.describe())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
        try:
            self.store.leave()
        except StoreError as exc:
            log.debug("could not remove this server's heartbeat: %s", exc)
        if isinstance(self.store, SharedBeats):
            self.store.close()


def heartbeat_for(
    rows: Any,
    balancer: Balancer,
    addresses: Iterable[IPv4Address | IPv6Address],
    events: Callable[[], EventSink],
) -> Heartbeat | None:
    """A `Heartbeat` when `rows` (the lease store) is shared by several servers."""
    if not (hasattr(rows, "heartbeat") and hasattr(rows, "leave")):
        return None
    return Heartbeat(rows, balancer, addresses, events)
