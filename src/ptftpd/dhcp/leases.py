"""Lease policy: which address a client gets, sans-IO: every event gets its `now`.

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

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from ptftpd.dhcp.lease_store import FreeIndex, Lease, LeaseState, LeaseStore, MemoryStore

__all__ = [
    "Ack",
    "Lease",
    "LeasePolicy",
    "LeaseState",
    "LeaseStore",
    "LeaseSummary",
    "MemoryStore",
    "Nak",
    "Pool",
    "PoolConfig",
    "StaticHost",
    "build_pool",
    "static_answer",
]

FOREVER = math.inf


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
    # Authoritative for this network: NAK wrong requests even from clients we have no
    # record of. Off by default, as RFC 2131 4.3.2 asks of servers sharing a wire.
    authoritative: bool = False

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


@dataclass(frozen=True)
class LeaseSummary:
    """How the pool stands, for the metrics gauges: bound leases, open offers,
    quarantined (declined) addresses, and pool addresses nobody holds."""

    active: int = 0
    offered: int = 0
    declined: int = 0
    free: int = 0

    def __add__(self, other: LeaseSummary) -> LeaseSummary:
        return LeaseSummary(
            self.active + other.active,
            self.offered + other.offered,
            self.declined + other.declined,
            self.free + other.free,
        )


def static_answer(
    static: StaticHost,
    address: IPv4Address,
    client_key: bytes,
    mac: str,
    hostname: str | None,
    now: float,
    lease_time: float,
) -> Ack | Nak:
    """A static host's REQUEST: its own address is ACKed for the configured lease time
    (as offered), any other is NAKed. Both lease policies answer static hosts from
    config alone, never from the store."""
    if address != static.address:
        return Nak(f"{address} is not this host's static address {static.address}")
    expires = now + lease_time
    lease = Lease(
        address, client_key, mac, LeaseState.BOUND, expires, hostname or static.hostname, now
    )
    return Ack(lease)


def summarize(
    pool: Pool, leases: Iterable[Lease], offers: Iterable[IPv4Address], now: float
) -> LeaseSummary:
    """Count `leases` (any state) and open `offers` (addresses) as of `now`; one pass,
    so callers refresh it now and then, not per packet."""
    active = declined = 0
    held: set[IPv4Address] = set()
    for lease in leases:
        state = lease.effective_state(now)
        if state is LeaseState.BOUND:
            active += 1
        elif state is LeaseState.DECLINED and lease.expires > now:
            declined += 1
        else:
            continue
        held.add(lease.address)
    offered = {addr for addr in offers if addr not in held}
    held |= offered
    taken = sum(1 for addr in held if addr in pool)
    return LeaseSummary(active, len(offered), declined, max(0, len(pool) - taken))


@dataclass
class _Offer:
    address: IPv4Address
    client_key: bytes
    expires: float


@dataclass
class LeasePolicy:
    config: PoolConfig
    store: LeaseStore
    _leases: dict[IPv4Address, Lease] = field(default_factory=dict, init=False)
    _by_client: dict[bytes, IPv4Address] = field(default_factory=dict, init=False)
    _offers: dict[IPv4Address, _Offer] = field(default_factory=dict, init=False)
    _offer_by_client: dict[bytes, IPv4Address] = field(default_factory=dict, init=False)
    _static_by_mac: dict[str, StaticHost] = field(default_factory=dict, init=False)
    _static_addrs: set[IPv4Address] = field(default_factory=set, init=False)
    _pool: Pool = field(default_factory=lambda: Pool(1, 0), init=False)
    _cursor: int = field(default=0, init=False)
    _free: FreeIndex | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        for host in self.config.static_hosts:
            self._static_by_mac[host.mac.lower()] = host
            self._static_addrs.add(host.address)
        self._pool = self.config.addresses.without(self._static_addrs)
        self._cursor = self._pool.first
        self._free = self.store.free_index()
        network = self.config.network
        for lease in self.store.load():
            # One store may hold several subnets' leases: take this network's only.
            if lease.address not in network:
                continue
            self._leases[lease.address] = lease
            self._free.note(lease.address, lease.free_from)
            if lease.state is LeaseState.BOUND:
                self._by_client[lease.client_key] = lease.address
        for lease in self._leases.values():
            # A client whose last lease was released still prefers that address.
            self._by_client.setdefault(lease.client_key, lease.address)

    @property
    def free(self) -> FreeIndex:
        assert self._free is not None
        return self._free

    # -- queries ---------------------------------------------------------------------

    def lease_for(self, client_key: bytes) -> Lease | None:
        addr = self._by_client.get(client_key)
        return None if addr is None else self._leases.get(addr)

    def leases(self) -> list[Lease]:
        return list(self._leases.values())

    def static_for(self, mac: str) -> StaticHost | None:
        return self._static_by_mac.get(mac.lower())

    def summary(self, now: float) -> LeaseSummary:
        """Leases by state and free pool addresses now (one pass over what is held)."""
        offers = (o.address for o in self._offers.values() if o.expires > now)
        return summarize(self._pool, self._leases.values(), offers, now)

    def in_network(self, addr: IPv4Address) -> bool:
        return addr in self.config.network

    def knows(self, client_key: bytes, mac: str) -> bool:
        """Do we have any record of this client (lease in any state, offer, static)?"""
        return (
            client_key in self._by_client
            or client_key in self._offer_by_client
            or self.static_for(mac) is not None
        )

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
        # Never-used addresses are gone: the index yields the one free the longest.
        for addr in self.free.candidates(now):
            if self._available(addr, client_key, now):
                return addr
        return None

    def _renote(self, addr: IPv4Address, now: float) -> None:
        """Tell the index when `addr` may next be free, from its current state."""
        lease = self._leases.get(addr)
        when = now if lease is None else max(lease.free_from, now)
        offer = self._offers.get(addr)
        if offer is not None:
            when = max(when, offer.expires)
        self.free.note(addr, when)

    # -- events ----------------------------------------------------------------------

    def offer(
        self, client_key: bytes, mac: str, requested: IPv4Address | None = None, *, now: float
    ) -> IPv4Address | None:
        """Choose and hold an address for a DISCOVER; None when the pool is full."""
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
            self._renote(old, now)
        expires = now + self.config.offer_time
        self._offers[addr] = _Offer(addr, client_key, expires)
        self._offer_by_client[client_key] = addr
        lease = self._leases.get(addr)
        self.free.note(addr, expires if lease is None else max(expires, lease.free_from))

    def withdraw(self, client_key: bytes, *, now: float) -> None:
        """The client chose another server: free our offer at once."""
        addr = self._offer_by_client.pop(client_key, None)
        if addr is not None:
            self._offers.pop(addr, None)
            self._renote(addr, now)

    def request(
        self,
        client_key: bytes,
        mac: str,
        address: IPv4Address,
        hostname: str | None = None,
        *,
        known_only: bool = False,
        selecting: bool = False,
        now: float,
    ) -> Ack | Nak | None:
        """Bind `address` to the client (SELECTING, INIT-REBOOT, RENEWING, REBINDING).

        SELECTING (`selecting`: the client named us as its server) gets the address we
        offered it (or its own lease) or a NAK. In the other states a wrong request is
        NAKed only when we have a record of the client or are authoritative; else we
        stay silent (None), as RFC 2131 4.3.2 demands for servers sharing a wire. With
        `known_only` (INIT-REBOOT) a free address is not granted to an unknown client.
        """
        static = self.static_for(mac)
        if static is not None:
            return static_answer(
                static, address, client_key, mac, hostname, now, self.config.lease_time
            )
        if (
            selecting
            and address != self._offer_by_client.get(client_key)
            and address != self._by_client.get(client_key)
        ):
            return Nak(f"{address} was not offered to this client")
        wrong = self._wrong(address, client_key, now)
        if wrong is not None:
            if selecting or self.config.authoritative or self.knows(client_key, mac):
                return Nak(wrong)
            return None
        if known_only and not self.knows(client_key, mac):
            return None
        return Ack(self._bind(address, client_key, mac, hostname, now, self.config.lease_time))

    def _wrong(self, address: IPv4Address, client_key: bytes, now: float) -> str | None:
        """Why `client_key` may not have `address`, or None when it may."""
        if address in self._static_addrs:
            return f"{address} is reserved for another host"
        if not self.in_network(address):
            return f"{address} is not on this network"
        if address not in self._pool:
            return f"{address} is not in the pool"
        if not self._available(address, client_key, now):
            return f"{address} is in use"
        return None

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
        self._by_client[client_key] = address
        # The offer is taken up: drop it (the index hears of the lease just below).
        offered = self._offer_by_client.pop(client_key, None)
        if offered is not None:
            self._offers.pop(offered, None)
            if offered != address:
                self._renote(offered, now)
        for item in changed:
            self.free.note(item.address, item.free_from)
        return lease

    def bind_permanent(self, client_key: bytes, mac: str, *, now: float) -> Lease | None:
        """BOOTP: a lease that never expires (RFC 951 clients never renew)."""
        static = self.static_for(mac)
        if static is not None:
            return Lease(
                static.address, client_key, mac, LeaseState.BOUND, FOREVER, static.hostname, now
            )
        lease = self.lease_for(client_key)
        if lease is not None and lease.state is LeaseState.BOUND and lease.expires == FOREVER:
            return lease
        addr = self.offer(client_key, mac, now=now)
        if addr is None:
            return None
        return self._bind(addr, client_key, mac, None, now, FOREVER)

    def release(self, client_key: bytes, address: IPv4Address, *, now: float) -> Lease | None:
        lease = self._leases.get(address)
        if lease is None or lease.client_key != client_key:
            return None
        if lease.state is not LeaseState.BOUND:
            return None
        lease.state, lease.since, lease.expires = LeaseState.RELEASED, now, now
        self.store.save([lease])
        self.free.note(address, now)
        return lease

    def decline(
        self, client_key: bytes, mac: str, address: IPv4Address, *, now: float
    ) -> Lease | None:
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
        if self._by_client.get(client_key) == address:
            del self._by_client[client_key]
        self.withdraw(client_key, now=now)
        self.free.note(address, declined.expires)
        return declined
