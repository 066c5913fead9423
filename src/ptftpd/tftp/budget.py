"""Per-source budget for peers that have not answered yet (the reflection bound).

TFTP runs over UDP, so a request's source address can be forged, and every reply to a
forged request lands on a victim. The server never resends to a peer that has not
answered (`machine.py`), so one request draws one reply; this module bounds how many
such replies one address, and one network (an IPv4 /24, an IPv6 /64), can draw before
they answer. Each transfer's first reply (OACK, ACK 0 or DATA 1, and again for a
repeated request) takes a token from the requester's address bucket and from its
network's; the peer's first packet gives the tokens back, so real clients, which answer
within a round trip, hardly use any, while forged requests keep theirs. Empty buckets
mean the request waits, briefly and in bounded numbers, in a `WaitingRoom`: it is answered
as soon as a token comes back (an earlier client answered) or refills, and dropped
unanswered only when the room is full or its wait is over (the client asks again).
Holding instead of dropping is what lets one address start a burst of legitimate
transfers larger than its bucket (100 clients behind one NAT address, or on one test
host): their tokens come back within a round trip, but only after the server has read
the whole burst of requests. Refusals (ERROR) cost nothing, being no larger than the
request.

Pure code: `now` comes in, nothing is read from a clock. State is bounded: at most
`max_sources` buckets per level; buckets that have refilled are forgotten first, and
when every one is still in use a new source is refused until some refill.
"""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BucketSize:
    """A token bucket: `burst` tokens when full, refilled at `rate` tokens per second."""

    burst: float
    rate: float


PER_ADDRESS = BucketSize(burst=32, rate=8)
"""One address: 32 unanswered first replies at once, then 8 a second (about 4 KB/s of
DATA 1 to a forged victim). A booting client answers each reply within a round trip."""

PER_NETWORK = BucketSize(burst=1024, rate=256)
"""One /24 or /64: 1,024 unanswered first replies at once (a 1,000-machine boot storm),
then 256 a second (about 130 KB/s of DATA 1 to a forged victim network)."""

MAX_SOURCES = 65536
"""Buckets kept per level (address, network): a few MB at most."""

HOLD_SECONDS = 2.0
"""How long a request may wait for a token: past most clients' first retransmission
(a repeated request while its first is held is not held twice), well short of their
give-up time."""

HELD_PER_ADDRESS = 256
"""Requests held per address: with the bucket's burst, 288 clients behind one address
may ask at once; a forged flood fills its own share and no more."""

MAX_HELD = 4096
"""Requests held in all (each a few hundred bytes: about 2 MB at the most)."""

_SWEEP_INTERVAL = 1.0  # seconds between two sweeps of a full table


class TokenBucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, size: BucketSize, now: float) -> None:
        self.tokens = size.burst
        self.stamp = now

    def refill(self, size: BucketSize, now: float) -> float:
        if now > self.stamp:
            self.tokens = min(size.burst, self.tokens + (now - self.stamp) * size.rate)
            self.stamp = now
        return self.tokens


class _Level:
    """The buckets of one level (per address or per network), at most `limit` of them."""

    def __init__(self, size: BucketSize, limit: int) -> None:
        self.size = size
        self.limit = limit
        self.buckets: dict[str, TokenBucket] = {}
        self._swept = float("-inf")

    def bucket(self, key: str, now: float) -> TokenBucket | None:
        bucket = self.buckets.get(key)
        if bucket is not None:
            return bucket
        if len(self.buckets) >= self.limit and not self._sweep(now):
            return None
        bucket = self.buckets[key] = TokenBucket(self.size, now)
        return bucket

    def _sweep(self, now: float) -> bool:
        """Forget refilled buckets (as good as new ones); True if room was made."""
        if now - self._swept < _SWEEP_INTERVAL:
            return False
        self._swept = now
        size = self.size
        full = [key for key, b in self.buckets.items() if b.refill(size, now) >= size.burst]
        for key in full:
            del self.buckets[key]
        return len(self.buckets) < self.limit


def network_of(host: str) -> str:
    """The /24 of an IPv4 address (also IPv4-mapped IPv6), the /64 of an IPv6 one."""
    host = host.split("%", 1)[0]
    if ":" not in host:
        return host.rsplit(".", 1)[0]
    try:
        packed = socket.inet_pton(socket.AF_INET6, host)
    except OSError:
        return host
    if packed[:12] == b"\0" * 10 + b"\xff\xff":
        return socket.inet_ntop(socket.AF_INET, packed[12:]).rsplit(".", 1)[0]
    return packed[:8].hex()


class SourceBudget:
    """How many more first replies each source may draw before it answers one."""

    def __init__(
        self,
        per_address: BucketSize = PER_ADDRESS,
        per_network: BucketSize = PER_NETWORK,
        max_sources: int = MAX_SOURCES,
    ) -> None:
        self._addresses = _Level(per_address, max_sources)
        self._networks = _Level(per_network, max_sources)
        self.dropped = 0  # requests refused a token so far (held or dropped)

    def take(self, host: str, now: float, *, count: bool = True) -> bool:
        """One first reply to `host`, if both its buckets have a token (then taken);
        a refusal is counted in `dropped` unless `count` is False."""
        address = self._addresses.bucket(host, now)
        network = self._networks.bucket(network_of(host), now)
        if (
            address is None
            or network is None
            or address.refill(self._addresses.size, now) < 1
            or network.refill(self._networks.size, now) < 1
        ):
            self.dropped += count
            return False
        address.tokens -= 1
        network.tokens -= 1
        return True

    def give_back(self, host: str, count: int, now: float) -> None:
        """`host` answered (or was only sent an ERROR): its `count` tokens return."""
        for level, key in ((self._addresses, host), (self._networks, network_of(host))):
            bucket = level.buckets.get(key)
            if bucket is not None:
                bucket.refill(level.size, now)
                bucket.tokens = min(level.size.burst, bucket.tokens + count)

    def tracked(self) -> int:
        """Buckets held (both levels): bounded by twice `max_sources`."""
        return len(self._addresses.buckets) + len(self._networks.buckets)


class WaitingRoom(Generic[T]):
    """Requests the budget could not answer yet, each until a token frees for its
    source or its `hold` seconds are over. Bounded: `per_address` requests per source
    address, `total` in all; first come, first served per address. Keys (the request's
    bytes and source) are held once: a client repeating a held request is not held
    twice."""

    def __init__(
        self,
        hold: float = HOLD_SECONDS,
        per_address: int = HELD_PER_ADDRESS,
        total: int = MAX_HELD,
    ) -> None:
        self.hold_seconds = hold
        self.per_address = per_address
        self.total = total
        self._queues: dict[str, deque[tuple[float, Hashable, T]]] = {}
        self._keys: set[Hashable] = set()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._keys

    def hold(self, host: str, key: Hashable, item: T, now: float) -> bool:
        """Hold `item` for `host`; False (not held) when the room or its share is full."""
        queue = self._queues.get(host)
        if len(self._keys) >= self.total or (queue is not None and len(queue) >= self.per_address):
            return False
        if queue is None:
            queue = self._queues[host] = deque()
        queue.append((now + self.hold_seconds, key, item))
        self._keys.add(key)
        return True

    def release(
        self, budget: SourceBudget, now: float, hosts: Iterable[str] | None = None
    ) -> tuple[list[T], list[T]]:
        """The held requests of `hosts` (None: every host) that now get a token (taken
        from `budget`), and those whose wait is over, in the order they came."""
        served: list[T] = []
        expired: list[T] = []
        for host in list(self._queues) if hosts is None else hosts:
            queue = self._queues.get(host)
            while queue:
                until, key, item = queue[0]
                if until <= now:
                    expired.append(item)
                elif budget.take(host, now, count=False):
                    served.append(item)
                else:
                    break
                queue.popleft()
                self._keys.discard(key)
            if queue is not None and not queue:
                del self._queues[host]
        return served, expired

    def clear(self) -> list[T]:
        """Every held request (the server is closing)."""
        items = [item for queue in self._queues.values() for _, _, item in queue]
        self._queues.clear()
        self._keys.clear()
        return items
