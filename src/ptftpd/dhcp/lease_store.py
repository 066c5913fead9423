"""Lease persistence for a server that is its leases' only writer, and the lease record.

The lease core (`leases.py`) decides; its rows (`local_leases.LocalLeases`) keep the
pools in memory and save every row a client may rely on (bound, released, declined)
through a `LeaseStore` before answering: `load`/`save`/`batch`/`close`, and a
`FreeIndex` per pool for the free-address search. A database shared by several
servers is rows itself (`pg_store.PgStore`), not a `LeaseStore`.

`MemoryStore` keeps them in memory (tests, and servers run without a lease file);
`store.SqliteStore` in a file, the default.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any, Generic, Protocol

from ptftpd.dhcp.free_index import HeapFreeIndex

__all__ = [
    "NOT_OFFERED",
    "Caps",
    "Claim",
    "FreeIndex",
    "IPAddress",
    "IPs",
    "Lease",
    "LeaseRows",
    "LeaseState",
    "LeaseStore",
    "MemoryStore",
    "NotOffered",
]

# A lease's address: DHCPv4 and DHCPv6 rows alike.
IPAddress = IPv4Address | IPv6Address
# Addresses a pool leaves out (`LeaseRows.ensure_pool`).
IPs = Iterable[IPAddress]

if TYPE_CHECKING:
    from typing_extensions import TypeVar

    A = TypeVar("A", bound=IPv4Address | IPv6Address, default=IPv4Address)
else:
    from typing import TypeVar

    A = TypeVar("A")


class LeaseState(enum.Enum):
    OFFERED = "offered"
    BOUND = "bound"
    RELEASED = "released"
    EXPIRED = "expired"
    DECLINED = "declined"


@dataclass
class Lease(Generic[A]):
    """A row as the policy sees it: `Lease` is a DHCPv4 lease, `Lease[IPv6Address]` a
    DHCPv6 binding (client key: DUID + IAID, `mac`: the DUID in hex)."""

    address: A
    client_key: bytes
    mac: str
    state: LeaseState
    expires: float
    hostname: str | None = None
    # When the address became free (released/expired/declined): longest-free goes first.
    since: float = 0.0

    def effective_state(self, now: float) -> LeaseState:
        if self.state is LeaseState.BOUND and self.expires <= now:
            return LeaseState.EXPIRED
        return self.state

    @property
    def free_from(self) -> float:
        """When the address may go to another client: at once once released, at the
        end of the lease while bound, after the quarantine when declined."""
        if self.state in (LeaseState.RELEASED, LeaseState.EXPIRED):
            return self.since
        return self.expires


class FreeIndex(Protocol):
    """The free-address search for one pool, so that a full pool of millions of
    addresses costs a logarithmic step per DISCOVER, not a scan of every lease.

    The policy reports, for each address whose state changes, the time from which it
    may be free (`note`); `candidates(now)` yields addresses whose time has come, the
    one free for longest first. Each yielded address leaves the index until it is
    noted again (every offer and every lease notes it), and the policy still checks
    each one: the index only orders, it never decides."""

    def note(self, address: IPAddress, free_from: float) -> None: ...

    def candidates(self, now: float) -> Iterator[IPv4Address]: ...


class LeaseStore(Protocol):
    """Durable storage; `save` must be durable when it returns (kill -9 safe)."""

    def load(self) -> list[Lease[Any]]: ...

    def save(self, leases: Iterable[Lease[Any]]) -> None: ...

    def forget(self, addresses: Iterable[IPAddress]) -> None:
        """Drop these rows (a sparse pool's rows past their end: nothing reads them)."""
        ...

    def batch(self) -> AbstractContextManager[None]:
        """Saves inside are durable when the block ends (one commit for a burst)."""
        ...

    def free_index(self) -> FreeIndex:
        """A new, empty index for one pool (the policy fills it from `load`)."""
        ...

    def close(self) -> None: ...


class MemoryStore:
    """A store for tests and for callers that want no persistence."""

    def __init__(self) -> None:
        self.rows: dict[IPAddress, Lease[Any]] = {}
        self.saves = 0

    def load(self) -> list[Lease[Any]]:
        return [replace(lease) for lease in self.rows.values()]

    def save(self, leases: Iterable[Lease[Any]]) -> None:
        for lease in leases:
            self.rows[lease.address] = replace(lease)
        self.saves += 1

    def forget(self, addresses: Iterable[IPAddress]) -> None:
        for address in addresses:
            self.rows.pop(address, None)

    def batch(self) -> AbstractContextManager[None]:
        return nullcontext()

    def free_index(self) -> FreeIndex:
        return HeapFreeIndex()

    def close(self) -> None:
        pass


class NotOffered(enum.Enum):
    """`bind`'s answer to a SELECTING client naming an address that is not its own."""

    NOT_OFFERED = "not offered"


NOT_OFFERED = NotOffered.NOT_OFFERED

# A sparse pool's caps (`assign`): open offers, live rows per `mac`, bound or declined rows.
Caps = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class Claim:
    """Who a row-changing operation is for and over which span: `client_key` (client id
    or hardware type + MAC; an IA's key in DHCPv6), `mac` (kept in the row, counted by
    the caps), from `now` until `until` (an offer's end, a binding's end, math.inf for
    BOOTP, a quarantine's end)."""

    client_key: bytes
    mac: str
    now: float
    until: float


class LeaseRows(Protocol):
    """The lease core's store: the address rows of every pool, and the operations
    that change them (`local_leases.LocalLeases` and `pg_store.PgStore`; their
    docstrings and SQL say what each does, the same in both), for IPv4 and IPv6
    pools alike; `assign` is a sparse (IPv6) pool's offer and binding."""

    def ensure_pool(
        self, pool: str, first: IPAddress, last: IPAddress, excluded: IPs = (), own: IPs = ()
    ) -> int: ...

    def offer(self, claim: Claim, pool: str, requested: IPAddress | None) -> Lease[Any] | None: ...

    def bind(
        self, claim: Claim, address: IPAddress, name: str | None = None, *, selecting: bool = False
    ) -> Lease[Any] | NotOffered | None: ...

    def assign(
        self, claim: Claim, pool: str, requested: IPAddress | None, *, bind: bool, caps: Caps
    ) -> Lease[Any] | None: ...

    def lookup(self, client_key: bytes, pool: str, now: float) -> Lease[Any] | None: ...

    def held(self, client_key: bytes, address: IPAddress, now: float) -> bool: ...

    def release(self, client_key: bytes, address: IPAddress, now: float) -> Lease[Any] | None: ...

    def decline(self, claim: Claim, address: IPAddress) -> Lease[Any] | None: ...

    def withdraw(self, client_key: bytes, pool: str, now: float) -> None: ...

    def leases(self, pool: str | None = None) -> list[Lease[Any]]: ...

    def batch(self) -> AbstractContextManager[None]: ...

    def close(self) -> None: ...
