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

DHCPv6 (IA_NA bindings: this same policy over the same stores, with a `Dhcp6Config`;
one row per address, the client key `ia_key(DUID, IAID)`). The pool is sparse: a row
is made when an address is first used, and only live rows count (offered or bound
before their end, or declined in quarantine; "own" is the IA's live row): a row past
its end is free for anyone and may be forgotten. Offers are rows, as for DHCPv4, so
servers sharing PostgreSQL never offer one address twice. Each IA of a message is one
line; a message with several IAs is several lines.

message / the IA's row                  -> rows change                     -> reply (per IA)
SOLICIT
  own row bound, not expired            -> none                            -> ADVERTISE it
  own row offered / none                -> offered (the hint if free, else
                                           the DUID+IAID hash, then probing)-> ADVERTISE
  no own row, `max_offers` open offers  -> the oldest offer freed, then as above
  pool full, or client/bindings at cap  -> none                            -> NoAddrsAvail
SOLICIT with Rapid Commit (when on)     -> as REQUEST                      -> REPLY
REQUEST (our server id)
  named address off the link            -> none                            -> NotOnLink
  own row offered/bound, or a free one  -> bound (the client's other bound
                                           row of the IA released: one
                                           address per binding)            -> REPLY it
  another server took a candidate       -> none there; next candidate      -> REPLY another
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
          quarantine are free (and leave memory); `events.LeaseExpiry` reports a
          binding's end.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import TYPE_CHECKING, Any, Generic, cast

from ptftpd.dhcp.lease_store import (
    NOT_OFFERED,
    Claim,
    IPAddress,
    Lease,
    LeaseRows,
    LeaseState,
    LeaseStore,
    MemoryStore,
)
from ptftpd.dhcp.local_leases import LocalLeases
from ptftpd.dhcp.pools import (
    DEFAULT_LEASE_TIME,
    Pool,
    PrefixPool,
    StaticHost,
    SubnetConfig,
    build_pool,
    pool_id,
    prefix_pool,
)

__all__ = [
    "Ack",
    "IPAddress",
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
    "ia_key",
    "pool_id",
    "prefix_pool",
    "static_answer",
]

FOREVER = math.inf


def ia_key(duid: bytes, iaid: int) -> bytes:
    """A DHCPv6 binding's client key: its DUID and IAID (4 bytes, as on the wire)."""
    return duid + iaid.to_bytes(4, "big")


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
    pool: Pool, leases: Iterable[Lease], offers: Iterable[IPAddress], now: float
) -> LeaseSummary:
    """Count `leases` (any state) and open `offers` (addresses) as of `now`; one pass,
    so callers refresh it now and then, not per packet."""
    active = declined = 0
    held: set[IPAddress] = set()
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


def lease_rows(store: LeaseStore | LeaseRows) -> LeaseRows:
    """Rows over `store`: a persistence `LeaseStore` (memory, SQLite) gets the local
    rows in front of it; a `LeaseRows` (PostgreSQL, or rows already) is used as is."""
    if hasattr(store, "free_index") and hasattr(store, "load"):
        return LocalLeases(store)  # type: ignore[arg-type]
    return store


if TYPE_CHECKING:
    from typing_extensions import TypeVar

    C = TypeVar("C", bound="SubnetConfig | PrefixPool", default=SubnetConfig)
else:
    from typing import TypeVar

    C = TypeVar("C")


@dataclass
class LeasePolicy(Generic[C]):
    """The state table of the module docstring over `store`'s rows for one pool:
    a DHCPv4 subnet (`SubnetConfig`) or a DHCPv6 server's prefix (its `Dhcp6Config`,
    with the `solicit` ... `renew` methods; client key `ia_key(DUID, IAID)`, `mac` the
    DUID in hex).

    `store` is the rows (`LeaseRows`), or a persistence `LeaseStore` to put local rows
    in front of. Several policies (one per subnet) may share one store."""

    config: C
    store: LeaseRows
    lease_time: int = field(default=DEFAULT_LEASE_TIME, init=False)
    _static_by_mac: dict[str, StaticHost] = field(default_factory=dict, init=False)
    _static_addrs: set[IPAddress] = field(default_factory=set, init=False)
    _pool: Pool = field(default_factory=lambda: Pool(1, 0), init=False)
    pool: str = field(default="", init=False)
    # A DHCPv6 prefix's caps: open offers, live rows per DUID, bound or declined rows.
    caps: tuple[int, int, int] = field(default=(0, 0, 0), init=False)
    _network: IPv4Network | IPv6Network = field(default=IPv4Network("0.0.0.0/32"), init=False)
    _authoritative: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.store = lease_rows(self.store)
        cfg = self.config
        if isinstance(cfg, SubnetConfig):
            if cfg.lease_time is not None:
                self.lease_time = cfg.lease_time
            for host in cfg.static_hosts:
                self._static_by_mac[host.mac.lower()] = host
                self._static_addrs.add(host.address)
            self._pool = cfg.addresses.without(self._static_addrs)
            self._network, self._authoritative = cfg.network, cfg.authoritative
        else:  # the DHCPv6 server's prefix
            v6 = cast("PrefixPool", cfg)
            self._pool = prefix_pool(v6.prefix, v6.range_start, v6.range_end,
                                     v6.server_addresses)  # fmt: skip
            self.lease_time, self._network = v6.valid_lifetime, v6.prefix
            self.caps = (v6.max_offers, v6.max_per_client, v6.max_bindings)
        self.pool = str(self._network)
        if self._pool.first <= self._pool.last:
            # Creates the pool's rows, or refuses (PoolMismatch) when another server
            # defined the same subnet with another range or other exclusions; this
            # server's own addresses are reserved in the rows, for everyone.
            self.store.ensure_pool(
                self.pool,
                self._pool.address(self._pool.first),
                self._pool.address(self._pool.last),
                self._pool.definition_excluded(),
                [self._pool.address(e) for e in sorted(self._pool.own)],
            )

    # -- queries ---------------------------------------------------------------------

    def static_for(self, mac: str) -> StaticHost | None:
        return self._static_by_mac.get(mac.lower())

    def in_network(self, addr: IPv4Address) -> bool:
        return addr in self._network

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
        claim = Claim(client_key, mac, now, now + self.config.offer_time)
        lease = self.store.offer(claim, self.pool, requested)
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
            if self._authoritative and self.store.held(client_key, address, now):
                return Nak(f"{address} is in use")
            return None
        if wrong is None:
            claim = Claim(client_key, mac, now, now + self.lease_time)
            bound = self.store.bind(claim, address, hostname, selecting=selecting)
            if isinstance(bound, Lease):
                return Ack(bound)
            if bound is NOT_OFFERED:
                return Nak(f"{address} was not offered to this client")
            wrong = f"{address} is in use"
        if selecting or self._authoritative or self.knows(client_key, mac, now):
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
        offered = self.store.offer(
            Claim(client_key, mac, now, now + self.config.offer_time), self.pool, None
        )
        if offered is None:
            return None
        bound = self.store.bind(Claim(client_key, mac, now, FOREVER), offered.address)
        return bound if isinstance(bound, Lease) else None

    def release(self, client_key: bytes, address: IPAddress, *, now: float) -> Lease[Any] | None:
        return self.store.release(client_key, address, now)

    def decline(
        self, client_key: bytes, mac: str, address: IPAddress, *, now: float
    ) -> Lease[Any] | None:
        """The client found `address` in use: nobody gets it until the quarantine ends."""
        if address not in self._pool:
            return None
        claim = Claim(client_key, mac, now, now + self.config.decline_time)
        return self.store.decline(claim, address)

    # -- DHCPv6 bindings: the prefix's sparse pool, the IA's key `ia_key` -------------

    def solicit(
        self, duid: bytes, iaid: int, hint: IPv6Address | None, *, now: float
    ) -> Lease[IPv6Address] | None:
        """SOLICIT: the IA's binding as it is, or an address held for it until the
        offer's end; None when none is free or a cap (`caps`) is reached."""
        return self._assign(duid, iaid, hint, now, now + self.config.offer_time, bind=False)

    def commit(
        self, duid: bytes, iaid: int, hint: IPv6Address | None, *, now: float
    ) -> Lease[IPv6Address] | None:
        """REQUEST (or a rapid-commit SOLICIT): bind the IA's offered or bound address,
        else the hint when free, else the first free of its probes, for the valid
        lifetime; its other bound address goes back (one address per binding)."""
        return self._assign(duid, iaid, hint, now, now + self.lease_time, bind=True)

    def _assign(
        self,
        duid: bytes,
        iaid: int,
        hint: IPv6Address | None,
        now: float,
        until: float,
        *,
        bind: bool,
    ) -> Lease[IPv6Address] | None:
        if hint is not None and hint not in self._pool:
            hint = None
        claim = Claim(ia_key(duid, iaid), duid.hex(), now, until)
        return self.store.assign(claim, self.pool, hint, bind=bind, caps=self.caps)

    def bound(self, duid: bytes, iaid: int, *, now: float) -> Lease[IPv6Address] | None:
        """The IA's committed binding (what RENEW, REBIND, RELEASE and DECLINE act on:
        an ADVERTISE alone promised nothing), whichever server sharing the rows made it."""
        lease = self.store.lookup(ia_key(duid, iaid), self.pool, now)
        if lease is None or lease.state is not LeaseState.BOUND or lease.expires <= now:
            return None
        return lease

    def renew(self, lease: Lease[IPv6Address], *, now: float) -> Lease[IPv6Address] | None:
        """RENEW / REBIND of a bound IA: bound until now + the valid lifetime."""
        claim = Claim(lease.client_key, lease.mac, now, now + self.lease_time)
        renewed = self.store.bind(claim, lease.address)
        return renewed if isinstance(renewed, Lease) else None
