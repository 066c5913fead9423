""" "Lease expired" from a shared lease database, whoever granted the lease (DHCPv4
leases and DHCPv6 bindings alike, each family by its own servers).

With leases in memory or SQLite a server is its leases' only writer, and its own
lease events tell `events.LeaseExpiry` when each one ends. Sharing a PostgreSQL
database, that is not enough: a client bound by this server may renew through another
(its own deadline would then announce a lease that did not end), and a lease another
server granted ends without this server ever hearing of it (that server may be gone).

So a server sharing its database reads the ends from the database: at each sweep
(`SharedExpiry`), in the database lane (never in the event loop), every bound lease
whose end passed since the previous sweep is announced EXPIRED, by the one server whose
RFC 3074 bucket holds the client at that moment (`Balancer.owns`), so each end is
announced once among the servers, as the database has it (a renewal through another
server moved it). Sweeps are deadline-driven: at the next end the database holds, or
sooner when this server grants a lease ending earlier, and at the latest `cap` seconds
after the previous sweep (how late the end of a lease another server granted since
may be announced), never sooner than `MIN_GAP` after the previous one (ends close
together are announced by one sweep). A sweep reads only the leases that ended since
the previous one and the next end (`PgStore.ended`: two reads) and keeps its family's
rows (`Family`: `V4`, the DHCP servers', or `V6`, the DHCPv6
services', whose client key is the DUID and the IAID and whose buckets hash the DUID).

Not covered: an end that passed while its bucket's owner was dying (after its last
sweep, before the others took its buckets over) is not announced.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import Any, Protocol

from ptftpd.dhcp.balance import Balancer
from ptftpd.dhcp.db_lane import DbLane
from ptftpd.dhcp.lease_store import Lease, LeaseState
from ptftpd.events import Event, Lease6Event, LeaseEvent, LeaseKind

__all__ = ["CAP", "V4", "V6", "Family", "SharedExpiry", "bucket_key"]

CAP = 60.0  # seconds between two sweeps at the most
RETRY = 5.0  # after a sweep the database refused
MIN_GAP = 1.0  # seconds between two sweeps at the least


class SharedRows(Protocol):
    def ended(self, since: float, now: float) -> tuple[Sequence[Lease], float | None]: ...


def bucket_key(client_key: bytes) -> bytes:
    """What RFC 3074 hashed for the client a lease is bound to (`Message.client_key`:
    b"id:" + option 61, or b"hw:" + hardware type + MAC)."""
    if client_key.startswith(b"id:"):
        return client_key[3:]
    return client_key[4:]


@dataclass(frozen=True)
class Family:
    """Which rows a server's sweeps announce, and how: `version` (4 or 6) of their
    addresses, `key` (the lease's client key -> what the balancer hashes), `expired`
    (the lease -> its EXPIRED event) and the lane's key for the sweeps (`sweep`, never
    a client's)."""

    version: int
    key: Callable[[bytes], bytes]
    expired: Callable[[Lease], Event]
    sweep: Any


def _expired4(lease: Lease) -> Event:
    return LeaseEvent(LeaseKind.EXPIRED, lease.address, lease.mac, lease.expires)


def _expired6(lease: Lease) -> Event:
    key, address = lease.client_key, lease.address  # ia_key: the DUID, then the IAID
    assert isinstance(address, IPv6Address)  # the sweep keeps version 6 rows only
    iaid = int.from_bytes(key[-4:], "big")
    return Lease6Event(LeaseKind.EXPIRED, address, key[:-4], iaid, lease.expires)


# A DHCP server's lane is keyed by hardware address (16 bytes at most), a DHCPv6
# service's by "source DUID": these keys are neither.
V4 = Family(4, bucket_key, _expired4, b"sweep: leases that ended")
V6 = Family(6, lambda key: key[:-4], _expired6, "sweep: bindings that ended")


@dataclass(eq=False)
class SharedExpiry:
    """The sweeps of one server (see the module docstring). `emit` is the server's
    event sink (from a lane thread: held until the sweep's group commits, then in the
    loop); `note` gets every event the server delivers, in the loop."""

    rows: SharedRows
    balancer: Balancer
    lane: DbLane[Any, Any]
    emit: Callable[[Event], None]
    clock: Callable[[], float]
    loop: asyncio.AbstractEventLoop
    family: Family = V4
    cap: float = CAP
    swept: float = field(init=False)  # ends before the start are history
    sweeps: int = field(default=0, init=False)
    _timer: asyncio.TimerHandle | None = field(default=None, init=False, repr=False)
    _armed: float | None = field(default=None, init=False)
    _closed: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.swept = self.clock()

    @property
    def pending(self) -> float | None:
        """When the next sweep is due (None: none armed)."""
        return self._armed

    def start(self) -> None:
        self._arm(self.clock() + self.cap)

    def note(self, event: Event) -> None:
        """A lease this server bound or renewed may end before the next sweep."""
        if not isinstance(event, LeaseEvent | Lease6Event) or event.kind is not LeaseKind.BOUND:
            return
        if event.expires is not None and math.isfinite(event.expires):
            self._arm(event.expires)

    def _arm(self, deadline: float) -> None:
        """Sweep at `deadline`, unless one is due sooner already."""
        deadline = max(deadline, self.swept + MIN_GAP)
        if self._closed or (self._armed is not None and self._armed <= deadline):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._armed = deadline
        self._timer = self.loop.call_later(max(0.0, deadline - self.clock()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._armed = None
        if not self.lane.submit(self.family.sweep, self._sweep):
            self._arm(self.clock() + RETRY)  # the lane is full: try again soon

    def _sweep(self) -> list[Any]:
        """In a lane thread: announce the ends since the last sweep, arm the next."""
        now = self.clock()
        since = self.swept
        try:
            ended, after = self.rows.ended(since, now)
        except Exception:
            self.loop.call_soon_threadsafe(self._arm, now + min(self.cap, RETRY))
            raise  # the lane logs it
        self.swept = now
        self.sweeps += 1
        upcoming = now + self.cap if after is None else min(now + self.cap, after)
        family = self.family
        for lease in ended:
            if lease.state is not LeaseState.BOUND or lease.address.version != family.version:
                continue  # the other family's row: its own servers announce it
            if self.balancer.owns(family.key(lease.client_key), count=False):
                self.emit(family.expired(lease))
        self.loop.call_soon_threadsafe(self._arm, upcoming)
        return []

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._armed = None
