"""The address pools a lease policy hands out from: a DHCPv4 subnet (`SubnetConfig`,
a contiguous `Pool` minus gateways, static hosts and exclusions) and a DHCPv6 prefix
(`PrefixPool`, the same `Pool` over IPv6 integers).

A pool is never materialised: a /8 holds 16 million addresses and a /64 far more, so it
is a range, a set of excluded integers and the address family; the rows (lease_store)
hold only addresses that were ever used.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Protocol

from ptftpd.dhcp.lease_store import IPAddress

__all__ = [
    "DEFAULT_LEASE_TIME",
    "Pool",
    "PrefixPool",
    "StaticHost",
    "SubnetConfig",
    "build_pool",
    "pool_id",
    "prefix_pool",
]


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
    # The family: IPv4Address, or IPv6Address for a DHCPv6 prefix's (sparse) pool.
    kind: type[IPv4Address] | type[IPv6Address] = IPv4Address

    def __contains__(self, addr: object) -> bool:
        if not isinstance(addr, self.kind):
            return False
        i = int(addr)
        return self.first <= i <= self.last and i not in self.excluded

    def __len__(self) -> int:
        inside = sum(1 for e in self.excluded if self.first <= e <= self.last)
        return max(0, self.last - self.first + 1 - inside)

    def __iter__(self) -> Iterator[IPAddress]:
        kind = self.kind
        return (kind(i) for i in range(self.first, self.last + 1) if i not in self.excluded)

    def address(self, i: int) -> IPAddress:
        return self.kind(i)

    def without(self, addrs: Iterable[IPAddress]) -> Pool:
        excluded = self.excluded | {int(a) for a in addrs}
        return Pool(self.first, self.last, excluded, self.own, self.kind)

    def definition_excluded(self) -> list[IPAddress]:
        """The excluded addresses that define the pool (every server's the same)."""
        return [self.kind(e) for e in sorted(self.excluded - self.own)]


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


_RESERVED_ANYCAST = 128  # RFC 2526: the top 128 interface ids of a /64


def prefix_pool(
    prefix: IPv6Network,
    start: IPv6Address | None = None,
    end: IPv6Address | None = None,
    own: Iterable[IPv6Address] = (),
) -> Pool:
    """A DHCPv6 prefix's pool: the prefix (or START..END inside it) minus the
    subnet-router anycast address (::0), the reserved anycast addresses at the top of
    a /64 (RFC 2526) and the server's `own` addresses. ValueError when empty."""
    lo = int(prefix.network_address) + 1
    hi = int(prefix.broadcast_address)
    if prefix.prefixlen == 64:
        hi -= _RESERVED_ANYCAST
    if start is not None:
        lo = max(lo, int(start))
    if end is not None:
        hi = min(hi, int(end))
    if lo > hi:
        raise ValueError(f"empty address range in {prefix}")
    mine = frozenset(int(a) for a in own)
    return Pool(lo, hi, mine, mine, IPv6Address)


def pool_id(config: SubnetConfig) -> str:
    """The pool's name among the rows: its subnet in CIDR form, the same on every
    server configured for that subnet."""
    return str(config.network)



class PrefixPool(Protocol):
    """What the policy reads of a DHCPv6 server's prefix (`dhcp6.config.Dhcp6Config` is
    one): said here as a protocol so the lease core below dhcp6/ never imports it."""

    @property
    def prefix(self) -> IPv6Network: ...
    @property
    def range_start(self) -> IPv6Address | None: ...
    @property
    def range_end(self) -> IPv6Address | None: ...
    @property
    def server_addresses(self) -> tuple[IPv6Address, ...]: ...
    @property
    def valid_lifetime(self) -> int: ...
    @property
    def offer_time(self) -> float: ...
    @property
    def decline_time(self) -> float: ...
    @property
    def max_offers(self) -> int: ...
    @property
    def max_per_client(self) -> int: ...
    @property
    def max_bindings(self) -> int: ...
