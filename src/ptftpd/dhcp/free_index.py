"""In-memory free-address index: a heap of (free from, address) with lazy deletion.

Why a heap: when a large pool has no never-used address left, the next DISCOVER must
find the address that has been free the longest. Scanning every lease for it costs
milliseconds per packet with a /16 and seconds with a /8; the heap makes it O(log n).
Only the latest time noted for an address counts; older heap entries are skipped when
they surface, and the heap is rebuilt when stale entries outnumber live ones.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from ipaddress import IPv4Address

__all__ = ["HeapFreeIndex"]


class HeapFreeIndex:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._latest: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self._latest)

    def note(self, address: IPv4Address, free_from: float) -> None:
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
