"""DhcpConfig: one DHCP server's settings (dhcpd, bootpd and pxed's DHCP side build
one), with the local subnet and the relayed `[[subnet]]`s as `SubnetConfig`s the lease
policy reads (`local`, `served`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from ptftpd.dhcp.balance import DEFAULT_PEER_TIMEOUT
from ptftpd.dhcp.pools import StaticHost, SubnetConfig
from ptftpd.dhcp.reply import CLIENT_PORT, SERVER_PORT

__all__ = ["DhcpConfig"]


@dataclass(frozen=True)
class DhcpConfig:
    """Everything a server instance needs; the CLIs and pxed build one of these."""

    server_ip: IPv4Address
    network: IPv4Network
    bootfile: str = ""
    interface: str | None = None
    # siaddr/option 66; None means this host. `tftp_server_name` is the text for sname
    # and option 66 when `-t` was given as a name.
    next_server: IPv4Address | None = None
    tftp_server_name: str | None = None
    routers: tuple[IPv4Address, ...] | None = None  # None: this host
    dns: tuple[IPv4Address, ...] = ()
    domain_name: str | None = None
    answer_all: bool = False
    pxe_vendor_prefixes: tuple[str, ...] = ("PXEClient",)
    range_start: IPv4Address | None = None
    range_end: IPv4Address | None = None
    static_hosts: tuple[StaticHost, ...] = ()
    # Never handed out: printers with fixed addresses, ... (part of the pool's definition
    # that servers sharing a lease database compare).
    exclude: tuple[IPv4Address, ...] = ()
    # The server's other addresses on its interface: never handed out either, but its
    # own (not part of the shared definition; reserved in a shared database).
    other_addresses: tuple[IPv4Address, ...] = ()
    lease_time: int = 3600
    offer_time: float = 30.0
    decline_time: float = 600.0
    extra_options: Mapping[int, bytes] = field(default_factory=dict)
    leases_path: Path | None = None  # None: leases in memory only
    # A PostgreSQL URI: leases shared with every server naming it (then no leases_path).
    leases_url: str | None = None
    # "normal": a grant survives kill -9 (WAL, no fsync); "full": also power loss.
    lease_sync: str = "normal"
    port: int = SERVER_PORT
    client_port: int = CLIENT_PORT
    # Workaround for ROMs that miss an instant reply (netboot notes); 0 = none.
    reply_delay: float = 0.0
    # Servers sharing a PostgreSQL lease database: a peer silent this long loses its
    # share of the clients (balance.py).
    peer_timeout: float = DEFAULT_PEER_TIMEOUT
    dhcp: bool = True
    bootp: bool = False
    boot_file_size: int | None = None  # bytes, for BOOTP option 13
    # What iPXE (user class "iPXE" or option 175) gets instead of `bootfile`: handing it
    # the iPXE binary again makes it chain-load itself forever (netboot notes).
    ipxe_bootfile: str | None = None
    # NAK wrong requests even from clients we have no record of (RFC 2131 4.3.2 asks a
    # server sharing the wire with others to stay silent then: the default).
    authoritative: bool = False
    # Relayed subnets served besides the local one (TOML `[[subnet]]`).
    subnets: tuple[SubnetConfig, ...] = ()

    @property
    def siaddr(self) -> IPv4Address:
        return self.next_server or self.server_ip

    @property
    def router_list(self) -> tuple[IPv4Address, ...]:
        return (self.server_ip,) if self.routers is None else self.routers

    @property
    def own_addresses(self) -> tuple[IPv4Address, ...]:
        """This server's addresses (also the default gateway, which is this host)."""
        return (self.server_ip, *self.other_addresses)

    @property
    def local(self) -> SubnetConfig:
        """The local subnet's settings (its boot settings are the server's own)."""
        return SubnetConfig(
            network=self.network,
            range_start=self.range_start,
            range_end=self.range_end,
            routers=self.routers or (),
            static_hosts=self.static_hosts,
            exclude=self.exclude,
            lease_time=self.lease_time,
        )

    def served(self, subnet: SubnetConfig) -> SubnetConfig:
        """`subnet` with what the server decides for all its subnets filled in: its
        lease time where the subnet names none, offer and decline times, authority
        and its own addresses."""
        return replace(
            subnet,
            lease_time=subnet.lease_time or self.lease_time,
            offer_time=self.offer_time,
            decline_time=self.decline_time,
            authoritative=self.authoritative,
            own=self.own_addresses,
        )
