"""In-memory free-address index: a heap of (free from, address) with lazy deletion.

Why a heap: when a large pool has no never-used address left, the next DISCOVER must
find the address that has been free the longest. Scanning every lease for it costs
milliseconds per packet with a /16 and seconds with a /8; the heap makes it O(log n).
Only the latest time noted for an address counts; older heap entries are skipped when
they surface, and the heap is rebuilt when stale entries outnumber live ones.

A sparse pool (a DHCPv6 prefix: 2**64 addresses, rows made on use) keeps no index: its
search probes from a hash of the client's key (`probes`), the same in every store.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address

__all__ = [
    "MAX_PROBES",
    "HeapFreeIndex",
    "NoIndex",
    "address_of",
    "key_of",
    "probe_start",
    "probes",
]


# Row keys: an IPv4 address is its integer, an IPv6 one its integer with bit 128 set,
# so both families share one table without meeting.
_V6 = 1 << 128
MAX_PROBES = 4096  # addresses tried per offer of a sparse (IPv6) pool


def key_of(address: IPv4Address | IPv6Address) -> int:
    return int(address) if address.version == 4 else int(address) | _V6


def address_of(key: int) -> IPv4Address | IPv6Address:
    return IPv4Address(key) if key < _V6 else IPv6Address(key ^ _V6)


def probe_start(client_key: bytes, size: int) -> int:
    """Where a sparse pool's search starts for this client: a hash of its key, so it
    gets the same address back even when its row is gone, and two clients rarely
    probe the same addresses (the same in every store)."""
    return int.from_bytes(hashlib.sha256(client_key).digest()[:16], "big") % size


def probes(first: int, last: int, start: int) -> Iterator[int]:
    """A sparse pool's candidates: from `first + start` up, wrapping once, at most
    `MAX_PROBES` of them."""
    size = last - first + 1
    for step in range(min(size, MAX_PROBES)):
        yield first + (start + step) % size


class NoIndex:
    """A sparse pool's free search probes (`probes`); it keeps no index."""

    def note(self, address: IPv4Address | IPv6Address, free_from: float) -> None:
        pass

    def candidates(self, now: float) -> Iterator[IPv4Address]:
        return iter(())


class HeapFreeIndex:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._latest: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self._latest)

    def note(self, address: IPv4Address | IPv6Address, free_from: float) -> None:
        key = int(address)
        if math.isinf(free_from):  # a permanent lease never comes back
            self._latest.pop(key, None)
            return
        self._latest[key] = free_from
        heapq.heappush(self._heap, (free_from, key))
        if len(self._heap) > 4 * len(self._latest) + 64:
            self._heap = [(t, a) for a, t in self._latest.items()]
            heapq.heapify(self._heap)

    def candidates(self, now: float) -> Iterator[IPv4Address]:
        heap, latest = self._heap, self._latest
        while heap and heap[0][0] <= now:
            when, key = heapq.heappop(heap)
            if latest.get(key) != when:
                continue  # superseded by a later note
            del latest[key]
            yield IPv4Address(key)
