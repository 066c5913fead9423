"""The one frozen object a DHCPv6 service is built from (pxed and the CLI fill it)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

from ptftpd.dhcp.balance import DEFAULT_PEER_TIMEOUT
from ptftpd.dhcp6.boot import BootPolicy6
from ptftpd.errors import StartError
from ptftpd.netif import InterfaceError, interface_addresses

__all__ = [
    "CLIENT_PORT",
    "SERVER_PORT",
    "Dhcp6Config",
    "config_for_interface",
]

SERVER_PORT = 547
CLIENT_PORT = 546


@dataclass(frozen=True)
class Dhcp6Config:
    interface: str
    prefix: IPv6Network
    # This host's addresses on the link: never handed out; the first one is the
    # address boot URLs usually name.
    server_addresses: tuple[IPv6Address, ...] = ()
    leases_path: Path | None = None  # None: bindings in memory only
    # postgresql://...: bindings in PostgreSQL, shared (wins over leases_path).
    leases_url: str | None = None
    lease_sync: str = "normal"  # "full": fsync each commit
    # With leases_url: a server sharing the database silent this long loses its share
    # of the clients (RFC 3074 buckets of their DUIDs); heartbeats every third of it.
    peer_timeout: float = DEFAULT_PEER_TIMEOUT
    server_duid: bytes | None = None  # None: DUID-LL from IFACE's MAC
    range_start: IPv6Address | None = None
    range_end: IPv6Address | None = None
    preferred_lifetime: int = 3600
    valid_lifetime: int = 7200
    t1: int | None = None  # None: 0.5 x preferred (RFC 8415 21.4 recommendation)
    t2: int | None = None  # None: 0.8 x preferred
    offer_time: float = 60.0
    decline_time: float = 600.0
    # What clients can make the server remember (the lease core's caps): open offers, IAs
    # per DUID (offered or bound), addresses bound or quarantined. About 450 bytes a
    # binding: the defaults keep the table under 10 MB.
    max_bindings: int = 16384
    max_offers: int = 4096
    max_per_client: int = 8
    rapid_commit: bool = False
    # Boot options only, no IA_NA: addresses come from another DHCPv6 server.
    proxy: bool = False
    # Proxy mode: the PXEv6 boot service port EDK2 firmware asks after a proxy
    # Advertise (at the host of the boot URL); None: no boot service socket.
    boot_service_port: int | None = 4011
    dns_servers: tuple[IPv6Address, ...] = ()
    boot_policy: BootPolicy6 | None = None
    # Router advertisements of `prefix` on `interface` (`ra.build_ra`, `ra.RaSchedule`).
    # Router lifetime 0 by default: we announce the prefix and the M flag but never
    # become anyone's default router by accident.
    send_ra: bool = True
    ra_managed: bool = True  # M: addresses from DHCPv6
    ra_other: bool = True  # O: other configuration (DNS, boot URL) from DHCPv6
    ra_router_lifetime: int = 0
    ra_on_link: bool = True  # L in the prefix option
    ra_autonomous: bool = False  # A: SLAAC as well (off: addresses come from DHCPv6)
    ra_prefix_valid: int = 86400
    ra_prefix_preferred: int = 14400
    ra_max_interval: float = 60.0  # RFC 4861 allows 4..1800 s
    ra_min_interval: float | None = None  # None: 0.33 x max interval (RFC 4861 default)
    ra_hop_limit: int = 64
    server_port: int = SERVER_PORT
    client_port: int = CLIENT_PORT

    def __post_init__(self) -> None:
        if not isinstance(self.prefix, IPv6Network):
            raise StartError(f"not an IPv6 prefix: {self.prefix}")
        if self.prefix.prefixlen > 120:
            raise StartError(f"prefix {self.prefix} is too small for a pool")
        if not 0 < self.preferred_lifetime <= self.valid_lifetime:
            raise StartError("need 0 < preferred lifetime <= valid lifetime")
        if not 0 <= self.renew_time <= self.rebind_time <= self.preferred_lifetime:
            raise StartError("need T1 <= T2 <= preferred lifetime")
        if self.lease_sync not in ("normal", "full"):
            raise StartError(f"lease sync must be normal or full, not {self.lease_sync}")
        for address in (self.range_start, self.range_end):
            if address is not None and address not in self.prefix:
                raise StartError(f"range address {address} is outside {self.prefix}")
        if min(self.max_bindings, self.max_offers, self.max_per_client) < 1:
            raise StartError("binding limits must be at least 1")
        if not 0 < self.ra_low_interval <= self.ra_max_interval:
            raise StartError("RA interval: need 0 < min <= max")
        if not 0 <= self.ra_router_lifetime <= 9000:
            raise StartError("RA router lifetime must be 0..9000 s")

    @property
    def ra_low_interval(self) -> float:
        """The shortest interval between unsolicited RAs."""
        if self.ra_min_interval is not None:
            return self.ra_min_interval
        return self.ra_max_interval / 3

    @property
    def renew_time(self) -> int:
        return self.t1 if self.t1 is not None else self.preferred_lifetime // 2

    @property
    def rebind_time(self) -> int:
        return self.t2 if self.t2 is not None else self.preferred_lifetime * 4 // 5


def config_for_interface(interface: str, **fields: Any) -> Dhcp6Config:
    """A config serving IFACE's own prefix: the first global IPv6 address's network,
    with all of IFACE's global addresses kept out of the pool. `fields` sets the rest
    (`leases_path=`, `boot_policy=`, ...). Raises `StartError`."""
    try:
        found = interface_addresses(interface, family=6)
    except InterfaceError as exc:
        raise StartError(str(exc)) from None
    ours = [a for a in found if not a.address.is_link_local and a.interface is not None]
    if not ours or ours[0].interface is None:
        raise StartError(f"interface {interface} has no global IPv6 address")
    prefix = ours[0].network
    if not isinstance(prefix, IPv6Network):
        raise StartError(f"interface {interface} has no global IPv6 address")
    addresses = tuple(a.address for a in ours if isinstance(a.address, IPv6Address))
    return Dhcp6Config(
        interface=ours[0].interface, prefix=prefix, server_addresses=addresses, **fields
    )
