"""The lease core: one lease policy over lease rows, whichever store holds them.

`LeasePolicy` decides, for DHCP and BOOTP, what each message does to the leases; the
rows live in a `LeaseRows` store: `local_leases.LocalLeases` (memory, optionally saved
to a SQLite file: one server is their only writer) or `pg_store.PgStore` (PostgreSQL,
shared by several servers). Both stores implement the same row operations with the
same meaning, so the policy's answers do not depend on the store; a hypothesis test
(tests/dhcp_pg/test_lease_core.py) drives memory, SQLite and PostgreSQL with the same
random messages and requires the same replies. Sans-IO: every event gets its `now`
(wall-clock seconds) and nothing else reads a clock.

Addresses are bound to the client key (option 61 when sent, else hardware type + MAC).
Static hosts (by MAC) are answered from the configuration alone, never from the rows.

The state table, in one place. An address row is *free* (never used, withdrawn,
released, or past its end), *offered* (held for a client until the offer's end),
*bound* (until the lease's end, then *expired*, which is free for anyone), or
*declined* (quarantined until `decline_time` has passed, then free). "Own" means the
row carries this client's key and is not declined.

message / client's row                  -> rows change                     -> reply
DISCOVER
  own row bound, not expired            -> none                            -> OFFER of it
  own row offered/expired/released/free -> own row offered again           -> OFFER
  no own row                            -> requested (50) if free, else
                                           never used first, else free
                                           the longest: offered            -> OFFER
  no own row, pool full                 -> none                            -> silence
REQUEST, SELECTING (server id is ours)
  own row at the address                -> bound, its other live row
                                           released or freed               -> ACK
  no own row at the address             -> none                            -> NAK
REQUEST, SELECTING another server
  own offered row                       -> freed, still its own (no NAK
                                           if the other server binds it)   -> silence
REQUEST, INIT-REBOOT (option 50, no server id)
  no row of the client anywhere         -> none                            -> silence
REQUEST, INIT-REBOOT / RENEWING / REBINDING
  own row, or the address is free       -> bound                           -> ACK
  another client's live or declined row,
  or outside the pool / subnet, or a
  static host's address                 -> none                            -> NAK when the
                                           client is known or we are authoritative, else silence
RELEASE   own bound row                 -> released (free at once)         -> silence
DECLINE   own offered or bound row      -> declined until decline_time     -> silence
INFORM    any                           -> none                            -> ACK, no address
BOOTREQUEST  own permanent row, else as DISCOVER then bound for ever       -> BOOTREPLY
(time)    bound past its end            -> expired: free for anyone
          offered past its end          -> free for anyone (the client's own still)
          declined past its quarantine  -> free for anyone

DHCPv6 (IA_NA bindings, `ptftpd.dhcp6.leases.Bindings` over a `LeaseStore6`: memory,
SQLite or PostgreSQL; one row per address, keyed by DUID and IAID, "own" as above).
Each IA of a message is one line; a message with several IAs is several lines.

message / the IA's row                  -> rows change                     -> reply (per IA)
SOLICIT
  own row bound, not expired            -> none                            -> ADVERTISE it
  own row offered / none                -> offered (the hint if free, else
                                           the DUID+IAID hash, then probing)-> ADVERTISE
  pool full, or client/table at a limit -> none                            -> NoAddrsAvail
SOLICIT with Rapid Commit (when on)     -> as REQUEST                      -> REPLY
REQUEST (our server id)
  named address off the link            -> none                            -> NotOnLink
  own row offered/bound, or a free one  -> bound (the client's other bound
                                           row of the IA released: one
                                           address per binding)            -> REPLY it
  shared store: another server bound it -> none here; next candidate      -> REPLY another
  pool full / at a limit                -> none                            -> NoAddrsAvail
RENEW (ours) / REBIND
  own row bound                         -> bound until now + valid         -> REPLY it
                                           (other addresses named: lifetime 0)
  no binding (REBIND: address off link) -> none                            -> lifetimes 0
  no binding                            -> none                            -> NoBinding
RELEASE   own bound row named           -> released (free at once)         -> REPLY Success
DECLINE   own bound row named           -> declined until decline_time     -> REPLY Success
          otherwise                     -> none                            -> NoBinding
CONFIRM   any                           -> none                            -> Success or NotOnLink
INFORMATION-REQUEST                     -> none                            -> REPLY, no IA
(time)    as DHCPv4: bound past its end, offered past its end, declined past its
          quarantine are free; `events.LeaseExpiry` reports a binding's end.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol

from ptftpd.dhcp.lease_store import Lease, LeaseState, LeaseStore, MemoryStore
from ptftpd.dhcp.local_leases import NOT_OFFERED, LocalLeases, NotOffered

__all__ = [
    "Ack",
    "Lease",
    "LeasePolicy",
    "LeaseRows",
    "LeaseState",
    "LeaseStore",
    "LeaseSummary",
    "MemoryStore",
    "Nak",
    "Pool",
    "StaticHost",
    "SubnetConfig",
    "build_pool",
    "pool_id",
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
    # The servers' own addresses among `excluded`: not part of the pool's definition
    # that servers sharing a database compare (each has its own), reserved in the rows.
    own: frozenset[int] = frozenset()

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
        return Pool(self.first, self.last, self.excluded | {int(a) for a in addrs}, self.own)

    def definition_excluded(self) -> list[IPv4Address]:
        """The excluded addresses that define the pool (every server's the same)."""
        return sorted(IPv4Address(e) for e in self.excluded - self.own)


DEFAULT_LEASE_TIME = 3600


@dataclass(frozen=True)
class SubnetConfig:
    """One subnet's settings, read by its pool, its scope and the engine: the local
    subnet (DhcpConfig.local) or one `[[subnet]]` table.

    Boot settings left as None are the server's own; so is `lease_time` (None: the
    server's, 3600 s for a policy on its own). `offer_time`, `decline_time`,
    `authoritative` and `own` (this server's addresses: never handed out, but not part
    of the pool's definition that servers sharing a database compare) are the server's,
    filled in by DhcpConfig.served."""

    network: IPv4Network
    range_start: IPv4Address | None = None
    range_end: IPv4Address | None = None
    routers: tuple[IPv4Address, ...] = ()
    dns: tuple[IPv4Address, ...] = ()
    domain_name: str | None = None
    bootfile: str | None = None
    next_server: IPv4Address | None = None
    ipxe_bootfile: str | None = None
    static_hosts: tuple[StaticHost, ...] = ()
    exclude: tuple[IPv4Address, ...] = ()
    lease_time: int | None = None
    extra_options: Mapping[int, bytes] = field(default_factory=dict)
    offer_time: float = 30.0
    decline_time: float = 600.0
    # Authoritative for this network: NAK wrong requests even from clients we have no
    # record of. Off by default, as RFC 2131 4.3.2 asks of servers sharing a wire.
    authoritative: bool = False
    own: tuple[IPv4Address, ...] = ()

    @cached_property
    def addresses(self) -> Pool:
        """The dynamic pool: the range minus the gateways, the excluded addresses, the
        static hosts and this server's own."""
        exclude = [*self.routers, *self.exclude, *(h.address for h in self.static_hosts)]
        return build_pool(self.network, exclude, self.range_start, self.range_end, self.own)


def build_pool(
    network: IPv4Network,
    exclude: Iterable[IPv4Address] = (),
    start: IPv4Address | None = None,
    end: IPv4Address | None = None,
    own: Iterable[IPv4Address] = (),
) -> Pool:
    """Dynamic addresses: the subnet (or START..END inside it) minus network, broadcast,
    the excluded addresses (the gateway, static hosts) and the server's `own`."""
    mine = frozenset(int(a) for a in own)
    excluded = {int(a) for a in exclude} | mine
    excluded.update((int(network.network_address), int(network.broadcast_address)))
    lo = int(start) if start is not None else int(network.network_address)
    hi = int(end) if end is not None else int(network.broadcast_address)
    lo = max(lo, int(network.network_address))
    hi = min(hi, int(network.broadcast_address))
    return Pool(lo, hi, frozenset(excluded), mine - {int(a) for a in exclude})


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
    (as offered), any other is NAKed: from the configuration alone, never the rows."""
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


class LeaseRows(Protocol):
    """The lease core's store: the address rows of every pool, and the operations
    that change them (`local_leases.LocalLeases` and `pg_store.PgStore`; their
    docstrings and SQL say what each does, the same in both)."""

    def ensure_pool(
        self,
        pool: str,
        first: IPv4Address,
        last: IPv4Address,
        excluded: Iterable[IPv4Address] = (),
        own: Iterable[IPv4Address] = (),
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
        *,
        selecting: bool = False,
    ) -> Lease | NotOffered | None: ...

    def lookup(self, client_key: bytes, pool: str, now: float) -> Lease | None: ...

    def held(self, client_key: bytes, address: IPv4Address, now: float) -> bool: ...

    def release(self, client_key: bytes, address: IPv4Address, now: float) -> Lease | None: ...

    def decline(
        self, client_key: bytes, mac: str, address: IPv4Address, now: float, until: float
    ) -> Lease | None: ...

    def withdraw(self, client_key: bytes, pool: str, now: float) -> None: ...

    def leases(self, pool: str | None = None) -> list[Lease]: ...

    def batch(self) -> AbstractContextManager[None]: ...

    def close(self) -> None: ...


def pool_id(config: SubnetConfig) -> str:
    """The pool's name among the rows: its subnet in CIDR form, the same on every
    server configured for that subnet."""
    return str(config.network)


def lease_rows(store: LeaseStore | LeaseRows) -> LeaseRows:
    """Rows over `store`: a persistence `LeaseStore` (memory, SQLite) gets the local
    rows in front of it; a `LeaseRows` (PostgreSQL, or rows already) is used as is."""
    if hasattr(store, "free_index") and hasattr(store, "load"):
        return LocalLeases(store)  # type: ignore[arg-type]
    return store


@dataclass
class LeasePolicy:
    """The state table of the module docstring over `store`'s rows for one pool.

    `store` is the rows (`LeaseRows`), or a persistence `LeaseStore` to put local rows
    in front of. Several policies (one per subnet) may share one store."""

    config: SubnetConfig
    store: LeaseRows
    lease_time: int = field(default=DEFAULT_LEASE_TIME, init=False)
    _static_by_mac: dict[str, StaticHost] = field(default_factory=dict, init=False)
    _static_addrs: set[IPv4Address] = field(default_factory=set, init=False)
    _pool: Pool = field(default_factory=lambda: Pool(1, 0), init=False)
    pool: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.store = lease_rows(self.store)
        if self.config.lease_time is not None:
            self.lease_time = self.config.lease_time
        for host in self.config.static_hosts:
            self._static_by_mac[host.mac.lower()] = host
            self._static_addrs.add(host.address)
        self._pool = self.config.addresses.without(self._static_addrs)
        self.pool = pool_id(self.config)
        if self._pool.first <= self._pool.last:
            # Creates the pool's rows, or refuses (PoolMismatch) when another server
            # defined the same subnet with another range or other exclusions; this
            # server's own addresses are reserved in the rows, for everyone.
            self.store.ensure_pool(
                self.pool,
                IPv4Address(self._pool.first),
                IPv4Address(self._pool.last),
                self._pool.definition_excluded(),
                sorted(IPv4Address(e) for e in self._pool.own),
            )

    # -- queries ---------------------------------------------------------------------

    def static_for(self, mac: str) -> StaticHost | None:
        return self._static_by_mac.get(mac.lower())

    def in_network(self, addr: IPv4Address) -> bool:
        return addr in self.config.network

    def lease_for(self, client_key: bytes, now: float = -math.inf) -> Lease | None:
        """The client's row: its live lease or offer, else its last one (as of `now`)."""
        return self.store.lookup(client_key, self.pool, now)

    def leases(self) -> list[Lease]:
        return self.store.leases(self.pool)

    def summary(self, now: float) -> LeaseSummary:
        """Leases by state across everyone sharing the rows: one pass over the rows in
        use (one query for PostgreSQL), so callers refresh it now and then."""
        rows = self.leases()
        offers = (r.address for r in rows if r.state is LeaseState.OFFERED and r.expires > now)
        return summarize(self._pool, rows, offers, now)

    def knows(self, client_key: bytes, mac: str, now: float) -> bool:
        """Is there any record of this client (a row in any state but declined, or a
        static host)?"""
        return self.static_for(mac) is not None or self.lease_for(client_key, now) is not None

    def _wrong(self, address: IPv4Address) -> str | None:
        """Why no client may have `address` from this pool (config only, no rows)."""
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
        """DISCOVER: hold an address for the client; None when the pool is full."""
        static = self.static_for(mac)
        if static is not None:
            return static.address
        if requested is not None and requested not in self._pool:
            requested = None
        lease = self.store.offer(client_key, mac, self.pool, requested, now, self.config.offer_time)
        return None if lease is None else lease.address

    def withdraw(self, client_key: bytes, *, now: float) -> None:
        """The client chose another server: free our offer at once."""
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
        """REQUEST in any client state (SELECTING, INIT-REBOOT, RENEWING, REBINDING);
        the state table's REQUEST lines. SELECTING (`selecting`: the client named us)
        gets the address it was offered (or holds) or a NAK; in the other states a
        wrong request is NAKed only when the client is known or we are authoritative,
        else we stay silent (None), as RFC 2131 4.3.2 asks of servers sharing a wire.
        With `known_only` (INIT-REBOOT) a client nobody knows gets silence."""
        static = self.static_for(mac)
        if static is not None:
            return static_answer(static, address, client_key, mac, hostname, now, self.lease_time)
        wrong = self._wrong(address)
        if wrong is None and known_only and self.lease_for(client_key, now) is None:
            # INIT-REBOOT from a client nobody knows: not ours to judge, unless we are
            # authoritative and the address is someone else's.
            if self.config.authoritative and self.store.held(client_key, address, now):
                return Nak(f"{address} is in use")
            return None
        if wrong is None:
            expires = now + self.lease_time
            bound = self.store.bind(
                client_key, mac, address, now, expires, hostname, selecting=selecting
            )
            if isinstance(bound, Lease):
                return Ack(bound)
            if bound is NOT_OFFERED:
                return Nak(f"{address} was not offered to this client")
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
        bound = self.store.bind(client_key, mac, offered.address, now, FOREVER)
        return bound if isinstance(bound, Lease) else None

    def release(self, client_key: bytes, address: IPv4Address, *, now: float) -> Lease | None:
        return self.store.release(client_key, address, now)

    def decline(
        self, client_key: bytes, mac: str, address: IPv4Address, *, now: float
    ) -> Lease | None:
        """The client found `address` in use: nobody gets it until the quarantine ends."""
        if address not in self._pool:
            return None
        return self.store.decline(client_key, mac, address, now, now + self.config.decline_time)
