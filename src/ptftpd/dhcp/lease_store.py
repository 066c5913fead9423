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
from ipaddress import IPv4Address
from typing import Protocol

from ptftpd.dhcp.free_index import HeapFreeIndex

__all__ = ["FreeIndex", "Lease", "LeaseState", "LeaseStore", "MemoryStore"]


class LeaseState(enum.Enum):
    OFFERED = "offered"
    BOUND = "bound"
    RELEASED = "released"
    EXPIRED = "expired"
    DECLINED = "declined"


@dataclass
class Lease:
    address: IPv4Address
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

    def note(self, address: IPv4Address, free_from: float) -> None: ...

    def candidates(self, now: float) -> Iterator[IPv4Address]: ...


class LeaseStore(Protocol):
    """Durable storage; `save` must be durable when it returns (kill -9 safe)."""

    def load(self) -> list[Lease]: ...

    def save(self, leases: Iterable[Lease]) -> None: ...

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
        self.rows: dict[IPv4Address, Lease] = {}
        self.saves = 0

    def load(self) -> list[Lease]:
        return [replace(lease) for lease in self.rows.values()]

    def save(self, leases: Iterable[Lease]) -> None:
        for lease in leases:
            self.rows[lease.address] = replace(lease)
        self.saves += 1

    def batch(self) -> AbstractContextManager[None]:
        return nullcontext()

    def free_index(self) -> FreeIndex:
        return HeapFreeIndex()

    def close(self) -> None:
        pass
