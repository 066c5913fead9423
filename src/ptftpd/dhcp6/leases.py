"""DHCPv6 address bindings: which (DUID, IAID) holds which address until when. Sans-IO.

Every method takes `now`; nothing here reads a clock or a socket. Offers (Advertise)
live in memory only; a binding the client will rely on (bound, renewed, released,
declined) is saved to the store before the method returns, so the engine's Reply
always follows a durable commit.

Addresses come from a range of the /64 (the whole /64 by default, minus the
subnet-router anycast address, the reserved anycast addresses at its top and the
server's own). A client's first candidate is a hash of its DUID and IAID, so it gets
the same address back even after its lease was lost, and two clients rarely probe the
same addresses; at most `_MAX_PROBES` candidates are tried per request, so a full pool
costs a bounded amount of work.

State an unauthenticated packet creates is bounded and expires (the limits of
`Dhcp6Config`, the one settings object the bindings are built from): an offer
lives `offer_time` seconds and at most `max_offers` are kept (a new one pushes out the
oldest: an Advertise promises nothing); one DUID holds at most `max_per_client` IAs
(offered or bound: a Solicit with 4,000 IA_NAs gets `max_per_client` addresses and
NoAddrsAvail for the rest); at most `max_bindings` addresses are bound or quarantined
at a time, so a /64 is not an unbounded pool. Expired entries leave memory at the next
request (a sweep at most once a second, linear in the bounded table).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import Enum
from ipaddress import IPv6Address, IPv6Network
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ptftpd.dhcp6.config import Dhcp6Config

__all__ = [
    "Bindings",
    "Lease6",
    "LeaseState6",
    "LeaseStore6",
    "LocalStore6",
    "MemoryStore6",
    "Pool6",
    "lease_from_row",
]

_MAX_PROBES = 4096
_MAX_CLAIMS = 8  # addresses tried per binding when other servers took the first ones
_RESERVED_ANYCAST = 128  # RFC 2526: the top 128 interface ids of a /64


class LeaseState6(Enum):
    OFFERED = "offered"
    BOUND = "bound"
    RELEASED = "released"
    DECLINED = "declined"


@dataclass(frozen=True)
class Lease6:
    address: IPv6Address
    duid: bytes
    iaid: int
    state: LeaseState6
    expires: float
    since: float

    def holds(self, now: float) -> bool:
        """True while the address belongs to someone (offered, bound or quarantined)."""
        return self.state is not LeaseState6.RELEASED and self.expires > now


def lease_from_row(row: tuple[Any, ...]) -> Lease6 | None:
    """A stored row (address, duid, iaid, state, expires, since) as a `Lease6`; None
    for a row this version cannot read (from a future version: skipped, not fatal)."""
    try:
        address, duid, iaid, state, expires, since = row
        return Lease6(
            IPv6Address(str(address)),
            bytes(duid),
            int(iaid),
            LeaseState6(state),
            float(expires),
            float(since),
        )
    except (ValueError, TypeError):
        return None


class LeaseStore6(Protocol):
    """Where the policy's bindings are kept: `MemoryStore6`, `store.SqliteStore6` (a
    file; both are their rows' only writer) or `store.PgStore6` (PostgreSQL, shared by
    several servers). Stable interface:

    - `load()`: every row of this pool, at start;
    - `save(leases)`: durable when it returns (renewals, releases, declines);
    - `claim(lease, now, moved)`: bind `lease` and save `moved` (the client's
      previous binding, released) unless another client holds the address as of
      `now`; None when done, else the row that holds it (a local store, the only
      writer, always binds: the policy checked its memory first);
    - `find(duid, iaid, now)`: a live binding another server made (None for a local
      store: its memory is the whole truth);
    - `close()`.
    """

    def load(self) -> list[Lease6]: ...
    def save(self, leases: Iterable[Lease6]) -> None: ...
    def claim(self, lease: Lease6, now: float, moved: Iterable[Lease6] = ()) -> Lease6 | None: ...
    def find(self, duid: bytes, iaid: int, now: float) -> Lease6 | None: ...
    def close(self) -> None: ...


class LocalStore6:
    """`claim` and `find` of a store that is its rows' only writer."""

    def save(self, leases: Iterable[Lease6]) -> None:
        raise NotImplementedError

    def claim(self, lease: Lease6, now: float, moved: Iterable[Lease6] = ()) -> Lease6 | None:
        self.save([*moved, lease])
        return None

    def find(self, duid: bytes, iaid: int, now: float) -> Lease6 | None:
        return None


class MemoryStore6(LocalStore6):
    """A store that forgets on exit: for tests and `leases_path=None`."""

    def __init__(self) -> None:
        self.rows: dict[IPv6Address, Lease6] = {}

    def load(self) -> list[Lease6]:
        return list(self.rows.values())

    def save(self, leases: Iterable[Lease6]) -> None:
        for lease in leases:
            self.rows[lease.address] = lease

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Pool6:
    first: IPv6Address
    last: IPv6Address
    exclude: frozenset[IPv6Address] = frozenset()

    @classmethod
    def from_prefix(
        cls,
        prefix: IPv6Network,
        exclude: Iterable[IPv6Address] = (),
        first: IPv6Address | None = None,
        last: IPv6Address | None = None,
    ) -> Pool6:
        lo = int(prefix.network_address) + 1  # ::0 is the subnet-router anycast address
        hi = int(prefix.broadcast_address)
        if prefix.prefixlen == 64:
            hi -= _RESERVED_ANYCAST
        if first is not None:
            lo = max(lo, int(first))
        if last is not None:
            hi = min(hi, int(last))
        if lo > hi:
            raise ValueError(f"empty address range in {prefix}")
        return cls(IPv6Address(lo), IPv6Address(hi), frozenset(exclude))

    @property
    def size(self) -> int:
        return int(self.last) - int(self.first) + 1

    def __contains__(self, address: object) -> bool:
        return (
            isinstance(address, IPv6Address)
            and self.first <= address <= self.last
            and address not in self.exclude
        )


_LIVE = (LeaseState6.OFFERED, LeaseState6.BOUND)
_HELD = (LeaseState6.BOUND, LeaseState6.DECLINED)
_SWEEP_EVERY = 1.0


class Bindings:
    def __init__(
        self,
        pool: Pool6,
        store: LeaseStore6,
        config: Dhcp6Config,
    ) -> None:
        """`config` gives the offer and decline times and the caps on what clients can
        make the server remember (`max_offers`, `max_per_client`, `max_bindings`)."""
        self.pool = pool
        self.store = store
        self.offer_time = config.offer_time
        self.decline_time = config.decline_time
        self.max_offers = config.max_offers
        self.max_per_client = config.max_per_client
        self.max_bindings = config.max_bindings
        self._by_addr: dict[IPv6Address, Lease6] = {}
        self._by_key: dict[tuple[bytes, int], Lease6] = {}
        self._offers: dict[tuple[bytes, int], None] = {}  # offered keys, oldest first
        self._per_client: dict[bytes, int] = {}  # live (offered or bound) IAs per DUID
        self._held = 0  # bound or declined addresses
        self._swept = float("-inf")
        # Memory is shared by the threads that answer clients when the store waits
        # for a network (PostgreSQL): every change and every search holds this lock,
        # the store's own work runs outside it.
        self._lock = threading.RLock()
        # Oldest end first, so that whichever store (and row order) the bindings come
        # from, a client's latest binding of an IA is the one memory keeps.
        for lease in sorted(store.load(), key=lambda x: (x.expires, x.since, int(x.address))):
            self._put(lease)

    def __len__(self) -> int:
        """Entries kept in memory, whatever their state (bounded by the caps)."""
        with self._lock:
            return len(self._by_addr)

    # -- the table: every change goes through _set and _drop ------------------------

    def _drop(self, lease: Lease6) -> None:
        """Forget `lease` (by address and by key) if it is the current entry."""
        if self._by_addr.get(lease.address) is lease:
            del self._by_addr[lease.address]
            if lease.state in _HELD:
                self._held -= 1
        key = (lease.duid, lease.iaid)
        if self._by_key.get(key) is lease:
            del self._by_key[key]
            self._offers.pop(key, None)
            left = self._per_client[lease.duid] - 1
            if left:
                self._per_client[lease.duid] = left
            else:
                del self._per_client[lease.duid]

    def _set(self, lease: Lease6) -> None:
        old = self._by_addr.get(lease.address)
        if old is not None:
            self._drop(old)
        key = (lease.duid, lease.iaid)
        if lease.state in _LIVE:
            previous = self._by_key.get(key)
            if previous is not None:
                # One address per IA_NA here: the previous one goes back to the pool.
                self._drop(previous)
            self._by_key[key] = lease
            self._per_client[lease.duid] = self._per_client.get(lease.duid, 0) + 1
            if lease.state is LeaseState6.OFFERED:
                self._offers[key] = None
        self._by_addr[lease.address] = lease
        if lease.state in _HELD:
            self._held += 1

    def _put(self, lease: Lease6) -> None:
        self._set(lease)

    def sweep(self, now: float) -> None:
        """Forget what no longer holds an address (expired offers and bindings,
        releases, ended quarantines); at most once a second of `now`."""
        with self._lock:
            if now - self._swept < _SWEEP_EVERY:
                return
            self._swept = now
            for lease in [x for x in self._by_addr.values() if not x.holds(now)]:
                self._drop(lease)

    def _room_for(self, duid: bytes, iaid: int, now: float, state: LeaseState6) -> bool:
        """Whether a new (DUID, IAID) entry may be made: the client's cap, then the
        table's (an offer pushes out the oldest offer; a binding needs a free slot)."""
        self.sweep(now)
        if (duid, iaid) in self._by_key:
            return True
        if self._per_client.get(duid, 0) >= self.max_per_client:
            return False
        if state is LeaseState6.OFFERED:
            while len(self._offers) >= self.max_offers:
                oldest = next(iter(self._offers))
                self._drop(self._by_key[oldest])
            return True
        return self._held < self.max_bindings

    def leases(self) -> list[Lease6]:
        with self._lock:
            return list(self._by_addr.values())

    def lookup(self, duid: bytes, iaid: int, now: float) -> Lease6 | None:
        """The client's live binding for this IA (bound or offered), if any; one that
        another server sharing the store made is learnt from the store."""
        with self._lock:
            lease = self._by_key.get((duid, iaid))
        if lease is None or lease.state is not LeaseState6.BOUND:
            # Nothing here, or only our Advertise: another server sharing the store
            # may have bound this IA since (the client chose it, then it died).
            found = self.store.find(duid, iaid, now)
            if (
                found is not None
                and found.address in self.pool
                and found.holds(now)
                and (lease is None or found.state is LeaseState6.BOUND)
            ):
                with self._lock:
                    self._learn(found, now)
                lease = found
        if lease is None or not lease.holds(now):
            return None
        return lease

    def _learn(self, lease: Lease6, now: float) -> None:
        """A row another server wrote (a shared store): memory holds it from now on,
        within the limits (a binding slot, as any binding)."""
        if lease.address not in self.pool or not lease.holds(now):
            return
        if self._held >= self.max_bindings and lease.address not in self._by_addr:
            return
        self._set(lease)

    def bound(self, duid: bytes, iaid: int, now: float) -> Lease6 | None:
        """The client's committed binding for this IA: what Renew, Rebind, Release and
        Decline may act on (an Advertise alone promised nothing)."""
        lease = self.lookup(duid, iaid, now)
        return lease if lease is not None and lease.state is LeaseState6.BOUND else None

    def _free(self, address: IPv6Address, duid: bytes, iaid: int, now: float) -> bool:
        if address not in self.pool:
            return False
        lease = self._by_addr.get(address)
        if lease is None or not lease.holds(now):
            return True
        return lease.duid == duid and lease.iaid == iaid and lease.state is not LeaseState6.DECLINED

    def _candidate(
        self,
        duid: bytes,
        iaid: int,
        hint: IPv6Address | None,
        now: float,
        current: Lease6 | None,
    ) -> IPv6Address | None:
        """Where the IA's binding goes: `current` (its live one, from `lookup`), the
        hint when free, else the hashed probe. Memory only: called under the lock."""
        if current is not None:
            return current.address
        if hint is not None and self._free(hint, duid, iaid, now):
            return hint
        digest = hashlib.sha256(duid + iaid.to_bytes(4, "big")).digest()
        size = self.pool.size
        start = int.from_bytes(digest[:16], "big") % size
        base = int(self.pool.first)
        for step in range(min(size, _MAX_PROBES)):
            address = IPv6Address(base + (start + step) % size)
            if self._free(address, duid, iaid, now):
                return address
        return None

    def offer(
        self, duid: bytes, iaid: int, now: float, hint: IPv6Address | None = None
    ) -> Lease6 | None:
        """Reserve an address for an Advertise (memory only); None when the pool is
        full or the client is at its cap."""
        current = self.lookup(duid, iaid, now)
        if current is not None and current.state is LeaseState6.BOUND:
            return current
        with self._lock:
            if not self._room_for(duid, iaid, now, LeaseState6.OFFERED):
                return None
            address = self._candidate(duid, iaid, hint, now, current)
            if address is None:
                return None
            lease = Lease6(address, duid, iaid, LeaseState6.OFFERED, now + self.offer_time, now)
            self._set(lease)
            return lease

    def bind(
        self,
        duid: bytes,
        iaid: int,
        now: float,
        valid: int,
        hint: IPv6Address | None = None,
        exact: bool = False,
    ) -> Lease6 | None:
        """Commit a binding (Request, rapid-commit Solicit).

        `exact`: only `hint` will do; None otherwise. None also when the client or the
        server is at its cap (`max_bindings`)."""
        current = self.lookup(duid, iaid, now)
        with self._lock:
            if current is None or current.state is not LeaseState6.BOUND:
                # An offer becoming a binding takes a binding slot.
                if current is not None:
                    if self._held >= self.max_bindings:
                        self.sweep(now)
                        if self._held >= self.max_bindings:
                            return None
                elif not self._room_for(duid, iaid, now, LeaseState6.BOUND):
                    return None
            if exact:
                if hint is None or not self._free(hint, duid, iaid, now):
                    return None
                address: IPv6Address | None = hint
            else:
                address = self._candidate(duid, iaid, hint, now, current)
        for _ in range(_MAX_CLAIMS):
            if address is None:
                return None
            since = current.since if current is not None and current.address == address else now
            lease = Lease6(address, duid, iaid, LeaseState6.BOUND, now + valid, since)
            # One address per binding: a binding that moves gives its old address back.
            moved = []
            with self._lock:
                previous = self._by_key.get((duid, iaid))  # live or past its end
            if (
                previous is not None
                and previous.state is LeaseState6.BOUND
                and previous.address != address
            ):
                moved = [replace(previous, state=LeaseState6.RELEASED, expires=now)]
            # The store's work runs outside the lock: with a shared store, other
            # clients' packets go on meanwhile (the database decides between them).
            holder = self.store.claim(lease, now, moved)
            if holder is None:
                with self._lock:
                    for old in moved:
                        if self._by_addr.get(old.address) is previous:
                            self._set(old)
                    self._set(lease)
                return lease
            # Another server bound the address meanwhile (a shared store): learn it and
            # try the next candidate; the client gets the address its Reply names.
            with self._lock:
                self._learn(holder, now)
            if exact:
                return None
            current = self.lookup(duid, iaid, now)
            with self._lock:
                address = self._candidate(duid, iaid, None, now, current)
        return None

    def renew(self, lease: Lease6, now: float, valid: int) -> Lease6:
        renewed = replace(lease, state=LeaseState6.BOUND, expires=now + valid)
        self.store.save([renewed])
        with self._lock:
            self._set(renewed)
        return renewed

    def release(self, lease: Lease6, now: float) -> Lease6:
        released = replace(lease, state=LeaseState6.RELEASED, expires=now)
        self.store.save([released])
        with self._lock:
            self._set(released)
        return released

    def decline(self, lease: Lease6, now: float) -> Lease6:
        """The client found the address in use: nobody gets it for `decline_time`."""
        declined = replace(lease, state=LeaseState6.DECLINED, expires=now + self.decline_time)
        self.store.save([declined])
        with self._lock:
            self._set(declined)
        return declined
