"""Lease policy: which address a client gets, sans-IO with an injected clock.

The policy owns the in-memory picture of the pool and calls a `LeaseStore` to persist
every state change that a client may rely on (a bound, released or declined lease)
before returning, so the caller can send the ACK only after the grant is durable. Offers
are held in memory only: losing one in a crash just costs the client a retry, while
persisting each would halve the server's rate.

Addresses are bound to the client key (option 61 when sent, else hardware type + MAC).
A client gets its previous address back, then the address it asks for (option 50) when
free, then the first never-used address, then the one that has been free the longest.
Declined addresses are quarantined; static hosts (by MAC) are never given to others.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol

__all__ = [
    "Ack",
    "Lease",
    "LeasePolicy",
    "LeaseState",
    "LeaseStore",
    "MemoryStore",
    "Nak",
    "Pool",
    "PoolConfig",
    "StaticHost",
    "build_pool",
]

FOREVER = math.inf


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


class LeaseStore(Protocol):
    """Durable storage; `save` must be durable when it returns (kill -9 safe)."""

    def load(self) -> list[Lease]: ...

    def save(self, leases: Iterable[Lease]) -> None: ...

    def batch(self) -> AbstractContextManager[None]:
        """Saves inside are durable when the block ends (one commit for a burst)."""
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

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class StaticHost:
    mac: str
    address: IPv4Address
    hostname: str | None = None


@dataclass(frozen=True)
class Pool:
    """A contiguous range minus a few excluded addresses, never materialised: a /8
    holds 16 million addresses and must not cost a start-up delay or memory."""

    first: int
    last: int
    excluded: frozenset[int] = frozenset()

    def __contains__(self, addr: object) -> bool:
        if not isinstance(addr, IPv4Address):
            return False
        i = int(addr)
        return self.first <= i <= self.last and i not in self.excluded

    def __len__(self) -> int:
        inside = sum(1 for e in self.excluded if self.first <= e <= self.last)
        return max(0, self.last - self.first + 1 - inside)

    def __iter__(self) -> Iterator[IPv4Address]:
        return (IPv4Address(i) for i in range(self.first, self.last + 1) if i not in self.excluded)

    def without(self, addrs: Iterable[IPv4Address]) -> Pool:
        return Pool(self.first, self.last, self.excluded | {int(a) for a in addrs})


@dataclass(frozen=True)
class PoolConfig:
    network: IPv4Network
    addresses: Pool
    lease_time: int = 3600
    offer_time: float = 30.0
    decline_time: float = 600.0
    static_hosts: tuple[StaticHost, ...] = ()

    @property
    def t1(self) -> int:
        return self.lease_time // 2

    @property
    def t2(self) -> int:
        return self.lease_time * 7 // 8


def build_pool(
    network: IPv4Network,
    exclude: Iterable[IPv4Address] = (),
    start: IPv4Address | None = None,
    end: IPv4Address | None = None,
) -> Pool:
    """Dynamic addresses: the subnet (or START..END inside it) minus network, broadcast
    and the excluded addresses (the server's own, the gateway, static hosts)."""
    excluded = {int(a) for a in exclude}
    excluded.update((int(network.network_address), int(network.broadcast_address)))
    lo = int(start) if start is not None else int(network.network_address)
    hi = int(end) if end is not None else int(network.broadcast_address)
    lo = max(lo, int(network.network_address))
    hi = min(hi, int(network.broadcast_address))
    return Pool(lo, hi, frozenset(excluded))


@dataclass(frozen=True)
class Ack:
    lease: Lease


@dataclass(frozen=True)
class Nak:
    reason: str


@dataclass
class _Offer:
    address: IPv4Address
    client_key: bytes
    expires: float


@dataclass
class LeasePolicy:
    config: PoolConfig
    store: LeaseStore
    clock: Callable[[], float]
    _leases: dict[IPv4Address, Lease] = field(default_factory=dict, init=False)
    _by_client: dict[bytes, IPv4Address] = field(default_factory=dict, init=False)
    _offers: dict[IPv4Address, _Offer] = field(default_factory=dict, init=False)
    _offer_by_client: dict[bytes, IPv4Address] = field(default_factory=dict, init=False)
    _static_by_mac: dict[str, StaticHost] = field(default_factory=dict, init=False)
    _static_addrs: set[IPv4Address] = field(default_factory=set, init=False)
    _pool: Pool = field(default_factory=lambda: Pool(1, 0), init=False)
    _cursor: int = field(default=0, init=False)
    _unleased: set[IPv4Address] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        for host in self.config.static_hosts:
            self._static_by_mac[host.mac.lower()] = host
            self._static_addrs.add(host.address)
        self._pool = self.config.addresses.without(self._static_addrs)
        self._cursor = self._pool.first
        for lease in self.store.load():
            self._leases[lease.address] = lease
            if lease.state is LeaseState.BOUND:
                self._by_client[lease.client_key] = lease.address
        for lease in self._leases.values():
            # A client whose last lease was released still prefers that address.
            self._by_client.setdefault(lease.client_key, lease.address)

    # -- queries ---------------------------------------------------------------------

    def lease_for(self, client_key: bytes) -> Lease | None:
        addr = self._by_client.get(client_key)
        return None if addr is None else self._leases.get(addr)

    def leases(self) -> list[Lease]:
        return list(self._leases.values())

    def static_for(self, mac: str) -> StaticHost | None:
        return self._static_by_mac.get(mac.lower())

    def in_network(self, addr: IPv4Address) -> bool:
        return addr in self.config.network

    def _available(self, addr: IPv4Address, client_key: bytes, now: float) -> bool:
        """Can `client_key` have `addr` right now?"""
        if addr not in self._pool:
            return False
        offer = self._offers.get(addr)
        if offer is not None and offer.client_key != client_key and offer.expires > now:
            return False
        lease = self._leases.get(addr)
        if lease is None:
            return True
        state = lease.effective_state(now)
        if state is LeaseState.DECLINED:
            return lease.expires <= now
        if lease.client_key == client_key:
            return True
        return state in (LeaseState.RELEASED, LeaseState.EXPIRED)

    def _pick_free(self, client_key: bytes, now: float) -> IPv4Address | None:
        pool = self._pool
        while self._cursor <= pool.last:
            addr = IPv4Address(self._cursor)
            self._cursor += 1
            if addr not in self._leases and self._available(addr, client_key, now):
                return addr
        # Never-used addresses are gone: reuse the one free for the longest time.
        best: Lease | None = None
        for lease in self._leases.values():
            if self._available(lease.address, client_key, now):
                free_since = lease.since if lease.state is not LeaseState.BOUND else lease.expires
                if best is None or free_since < (
                    best.since if best.state is not LeaseState.BOUND else best.expires
                ):
                    best = lease
        if best is not None:
            return best.address
        # Addresses offered but never leased, now that the offers have run out: tracked
        # apart, so a full pool costs a scan of the offers, not of a /8's 16 M addresses.
        for addr in sorted(self._unleased):
            if addr not in self._leases and self._available(addr, client_key, now):
                return addr
        return None

    # -- events ----------------------------------------------------------------------

    def offer(
        self, client_key: bytes, mac: str, requested: IPv4Address | None = None
    ) -> IPv4Address | None:
        """Choose and hold an address for a DISCOVER; None when the pool is full."""
        now = self.clock()
        static = self.static_for(mac)
        if static is not None:
            return static.address
        choice: IPv4Address | None = None
        held = self._offer_by_client.get(client_key)
        if held is not None and self._available(held, client_key, now):
            choice = held
        previous = self._by_client.get(client_key)
        if choice is None and previous is not None and self._available(previous, client_key, now):
            choice = previous
        if choice is None and requested is not None and self._available(requested, client_key, now):
            choice = requested
        if choice is None:
            choice = self._pick_free(client_key, now)
        if choice is None:
            return None
        self._hold(choice, client_key, now)
        return choice

    def _hold(self, addr: IPv4Address, client_key: bytes, now: float) -> None:
        old = self._offer_by_client.pop(client_key, None)
        if old is not None and old != addr:
            self._offers.pop(old, None)
        self._offers[addr] = _Offer(addr, client_key, now + self.config.offer_time)
        self._offer_by_client[client_key] = addr
        if addr not in self._leases:
            self._unleased.add(addr)

    def withdraw(self, client_key: bytes) -> None:
        """The client chose another server: free our offer at once."""
        addr = self._offer_by_client.pop(client_key, None)
        if addr is not None:
            self._offers.pop(addr, None)

    def request(
        self,
        client_key: bytes,
        mac: str,
        address: IPv4Address,
        hostname: str | None = None,
        *,
        known_only: bool = False,
    ) -> Ack | Nak | None:
        """Bind `address` to the client (SELECTING, INIT-REBOOT, RENEWING, REBINDING).

        Returns None when the server should stay silent: with `known_only` (INIT-REBOOT)
        and no record of the client, RFC 2131 4.3.2 says not to answer.
        """
        now = self.clock()
        static = self.static_for(mac)
        if static is not None:
            if address != static.address:
                return Nak(f"{address} is not this host's static address {static.address}")
            lease = Lease(
                address,
                client_key,
                mac,
                LeaseState.BOUND,
                FOREVER,
                hostname or static.hostname,
                now,
            )
            return Ack(lease)
        if address in self._static_addrs:
            return Nak(f"{address} is reserved for another host")
        if not self.in_network(address):
            return Nak(f"{address} is not on this network")
        if address not in self._pool:
            return Nak(f"{address} is not in the pool")
        if not self._available(address, client_key, now):
            return Nak(f"{address} is in use")
        if known_only:
            current = self._leases.get(address)
            known = current is not None and current.client_key == client_key
            if not known and self._offer_by_client.get(client_key) != address:
                return None
        return Ack(self._bind(address, client_key, mac, hostname, now, self.config.lease_time))

    def _bind(
        self,
        address: IPv4Address,
        client_key: bytes,
        mac: str,
        hostname: str | None,
        now: float,
        lease_time: float,
    ) -> Lease:
        changed: list[Lease] = []
        previous = self._by_client.get(client_key)
        if previous is not None and previous != address:
            old = self._leases.get(previous)
            if old is not None and old.client_key == client_key:
                old.state, old.since = LeaseState.RELEASED, now
                changed.append(old)
        prior = self._leases.get(address)
        if prior is not None and prior.client_key != client_key:
            self._by_client.pop(prior.client_key, None)
        lease = Lease(
            address,
            client_key,
            mac,
            LeaseState.BOUND,
            now + lease_time,
            hostname or (prior.hostname if prior else None),
            now,
        )
        changed.append(lease)
        self.store.save(changed)
        self._leases[address] = lease
        self._unleased.discard(address)
        self._by_client[client_key] = address
        self.withdraw(client_key)
        return lease

    def bind_permanent(self, client_key: bytes, mac: str) -> Lease | None:
        """BOOTP: a lease that never expires (RFC 951 clients never renew)."""
        now = self.clock()
        static = self.static_for(mac)
        if static is not None:
            return Lease(
                static.address, client_key, mac, LeaseState.BOUND, FOREVER, static.hostname, now
            )
        lease = self.lease_for(client_key)
        if lease is not None and lease.state is LeaseState.BOUND and lease.expires == FOREVER:
            return lease
        addr = self.offer(client_key, mac)
        if addr is None:
            return None
        return self._bind(addr, client_key, mac, None, now, FOREVER)

    def release(self, client_key: bytes, address: IPv4Address) -> Lease | None:
        lease = self._leases.get(address)
        if lease is None or lease.client_key != client_key:
            return None
        if lease.state is not LeaseState.BOUND:
            return None
        now = self.clock()
        lease.state, lease.since, lease.expires = LeaseState.RELEASED, now, now
        self.store.save([lease])
        return lease

    def decline(self, client_key: bytes, mac: str, address: IPv4Address) -> Lease | None:
        """The client found `address` in use: quarantine it and forget the binding."""
        if address not in self._pool:
            return None
        lease = self._leases.get(address)
        offer = self._offers.get(address)
        ours = (lease is not None and lease.client_key == client_key) or (
            offer is not None and offer.client_key == client_key
        )
        if not ours:
            return None
        now = self.clock()
        declined = Lease(
            address,
            b"declined:" + client_key,
            mac,
            LeaseState.DECLINED,
            now + self.config.decline_time,
            None,
            now,
        )
        self.store.save([declined])
        self._leases[address] = declined
        self._unleased.discard(address)
        if self._by_client.get(client_key) == address:
            del self._by_client[client_key]
        self.withdraw(client_key)
        return declined
