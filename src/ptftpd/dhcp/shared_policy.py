"""Lease policy for a lease database shared by several servers: the database decides.

Why a second policy: `LeasePolicy` keeps the pool's picture in memory, which is right
when this server is the only writer (the SQLite file) and wrong as soon as another
server changes the rows. Here every event asks the store (`SharedStore`, i.e.
`pg_store.PgStore`), which reserves offers and binds leases in the database so that
two servers never hand out one address: no lease is cached for a decision.

What stays local is what each server's configuration says and the database does not
own: static hosts (answered from config, never sent to the store), the pool's range
and which addresses are outside it. Like `LeasePolicy` it is sans-IO apart from the
injected store, and every event gets its `now`; the engine calls both the same way. A store
error (`StoreUnavailable`, `StoreBusy`) propagates: the server then answers nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Protocol

from ptftpd.dhcp.leases import (
    Ack,
    Lease,
    LeasePolicy,
    LeaseState,
    LeaseSummary,
    Nak,
    Pool,
    PoolConfig,
    StaticHost,
    static_answer,
    summarize,
)

__all__ = ["AnyLeasePolicy", "SharedLeasePolicy", "SharedStore", "pool_id"]

FOREVER = math.inf


class SharedStore(Protocol):
    """What the policy needs of a shared lease database (`pg_store.PgStore` has it)."""

    def ensure_pool(
        self, pool: str, first: IPv4Address, last: IPv4Address, excluded: Iterable[IPv4Address] = ()
    ) -> int: ...

    def offer(
        self,
        client_key: bytes,
        mac: str,
        pool: str,
        requested: IPv4Address | None,
        now: float,
        hold: float,
    ) -> Lease | None: ...

    def bind(
        self,
        client_key: bytes,
        mac: str,
        address: IPv4Address,
        now: float,
        expires: float,
        hostname: str | None = None,
    ) -> Lease | None: ...

    def lookup(self, client_key: bytes, pool: str, now: float) -> Lease | None: ...

    def release(self, client_key: bytes, address: IPv4Address, now: float) -> Lease | None: ...

    def decline(
        self, client_key: bytes, mac: str, address: IPv4Address, now: float, until: float
    ) -> Lease | None: ...

    def withdraw(self, client_key: bytes, pool: str, now: float) -> None: ...

    def leases(self, pool: str | None = None) -> list[Lease]: ...

    def batch(self) -> AbstractContextManager[None]: ...

    def close(self) -> None: ...


def pool_id(config: PoolConfig) -> str:
    """The pool's name in the database: its subnet in CIDR form, the same on every
    server configured for that subnet."""
    return str(config.network)


@dataclass
class SharedLeasePolicy:
    config: PoolConfig
    store: SharedStore
    _static_by_mac: dict[str, StaticHost] = field(default_factory=dict, init=False)
    _static_addrs: set[IPv4Address] = field(default_factory=set, init=False)
    _pool: Pool = field(default_factory=lambda: Pool(1, 0), init=False)
    pool: str = field(default="", init=False)

    def __post_init__(self) -> None:
        for host in self.config.static_hosts:
            self._static_by_mac[host.mac.lower()] = host
            self._static_addrs.add(host.address)
        self._pool = self.config.addresses.without(self._static_addrs)
        self.pool = pool_id(self.config)
        if self._pool.first <= self._pool.last:
            # Creates the pool's rows, or refuses (PoolMismatch) when another server
            # defined the same subnet with another range or other exclusions.
            self.store.ensure_pool(
                self.pool,
                IPv4Address(self._pool.first),
                IPv4Address(self._pool.last),
                sorted(IPv4Address(e) for e in self._pool.excluded),
            )

    # -- queries ---------------------------------------------------------------------

    def static_for(self, mac: str) -> StaticHost | None:
        return self._static_by_mac.get(mac.lower())

    def in_network(self, addr: IPv4Address) -> bool:
        return addr in self.config.network

    def lease_for(self, client_key: bytes, now: float) -> Lease | None:
        return self.store.lookup(client_key, self.pool, now)

    def leases(self) -> list[Lease]:
        return self.store.leases(self.pool)

    def summary(self, now: float) -> LeaseSummary:
        """Leases by state across every server sharing the pool: one query over the
        rows in use, so the caller refreshes it at most about once a second."""
        rows = self.leases()
        offers = (r.address for r in rows if r.state is LeaseState.OFFERED and r.expires > now)
        return summarize(self._pool, rows, offers, now)

    def knows(self, client_key: bytes, mac: str, now: float) -> bool:
        """Does any server sharing the database have a record of this client?"""
        return self.static_for(mac) is not None or self.lease_for(client_key, now) is not None

    def _wrong(self, address: IPv4Address) -> str | None:
        """Why no client may have `address` from this pool (config only, no query)."""
        if address in self._static_addrs:
            return f"{address} is reserved for another host"
        if not self.in_network(address):
            return f"{address} is not on this network"
        if address not in self._pool:
            return f"{address} is not in the pool"
        return None

    # -- events ----------------------------------------------------------------------

    def offer(
        self, client_key: bytes, mac: str, requested: IPv4Address | None = None, *, now: float
    ) -> IPv4Address | None:
        """Reserve an address in the database for a DISCOVER; None when the pool is full."""
        static = self.static_for(mac)
        if static is not None:
            return static.address
        if requested is not None and requested not in self._pool:
            requested = None
        lease = self.store.offer(client_key, mac, self.pool, requested, now, self.config.offer_time)
        return None if lease is None else lease.address

    def withdraw(self, client_key: bytes, *, now: float) -> None:
        """The client chose another server: free our reservation at once."""
        self.store.withdraw(client_key, self.pool, now)

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
        """Bind `address` in the database (SELECTING, INIT-REBOOT, RENEWING, REBINDING).

        A client renewing or rebinding here after its own server died is found in the
        shared rows and ACKed with the same address. SELECTING and renewals cost one
        round trip (the bind); the database refuses an address someone else holds.
        A refused request is NAKed when it named us, when we are authoritative or when
        the client is known to the database; else we stay silent (RFC 2131 4.3.2)."""
        static = self.static_for(mac)
        if static is not None:
            return static_answer(
                static, address, client_key, mac, hostname, now, self.config.lease_time
            )
        wrong = self._wrong(address)
        if wrong is None and known_only and self.store.lookup(client_key, self.pool, now) is None:
            # INIT-REBOOT from a client no server knows: not ours to confirm or deny.
            return None
        if wrong is None:
            expires = now + self.config.lease_time
            bound = self.store.bind(client_key, mac, address, now, expires, hostname)
            if bound is not None:
                return Ack(bound)
            wrong = f"{address} is in use"
        if selecting or self.config.authoritative or self.knows(client_key, mac, now):
            return Nak(wrong)
        return None

    def bind_permanent(self, client_key: bytes, mac: str, *, now: float) -> Lease | None:
        """BOOTP: a lease that never expires (RFC 951 clients never renew)."""
        static = self.static_for(mac)
        if static is not None:
            return Lease(
                static.address, client_key, mac, LeaseState.BOUND, FOREVER, static.hostname, now
            )
        lease = self.store.lookup(client_key, self.pool, now)
        if lease is not None and lease.state is LeaseState.BOUND and lease.expires == FOREVER:
            return lease
        offered = self.store.offer(client_key, mac, self.pool, None, now, self.config.offer_time)
        if offered is None:
            return None
        return self.store.bind(client_key, mac, offered.address, now, FOREVER)

    def release(self, client_key: bytes, address: IPv4Address, *, now: float) -> Lease | None:
        return self.store.release(client_key, address, now)

    def decline(
        self, client_key: bytes, mac: str, address: IPv4Address, *, now: float
    ) -> Lease | None:
        """The client found `address` in use: every server stops handing it out."""
        if address not in self._pool:
            return None
        return self.store.decline(client_key, mac, address, now, now + self.config.decline_time)


# What the engine and its scopes drive: the file-backed policy or the shared one.
AnyLeasePolicy = LeasePolicy | SharedLeasePolicy
