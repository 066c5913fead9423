"""What `pxed` runs, as one frozen object the CLI fills and the service reads."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ptftpd.dhcp.engine import DhcpConfig
from ptftpd.http.config import DEFAULT_MAX_CONNECTIONS
from ptftpd.pxe.firmware import HTTP_VENDOR_CLASS, BootFiles
from ptftpd.pxe.inventory import EMPTY, Inventory
from ptftpd.pxe.proxy import BOOT_SERVER_PORT
from ptftpd.pxe.remote import DEFAULT_CACHE_SIZE, DEFAULT_MAX_FILE, DEFAULT_TIMEOUT
from ptftpd.tftp.server import ServerConfig

__all__ = ["DEFAULT_BOOT_RECORDS", "PxeConfig", "with_http_clients"]

DEFAULT_BOOT_RECORDS = 4096


@dataclass(frozen=True)
class PxeConfig:
    """The DHCP settings (interface, server address, pool...), the TFTP settings (ROOT,
    limits), the boot files and the mode; `http_port` also serves ROOT over HTTP (UEFI
    HTTP boot, iPXE scripts by URL); `ipv6` also runs DHCPv6 (+ RA unless `ra` is off)
    on the interface's IPv6 prefix."""

    dhcp: DhcpConfig
    tftp: ServerConfig
    files: BootFiles
    proxy: bool = False
    tftp_port: int = 69
    boot_server_port: int = BOOT_SERVER_PORT
    boot_idle: float = 30.0
    http_port: int | None = None
    http_max_connections: int = DEFAULT_MAX_CONNECTIONS
    http_rate_limit: int | None = None
    """Bytes per second to each HTTP client address (None: no limit)."""
    http_total_rate_limit: int | None = None
    """Bytes per second to all HTTP clients together (None: no limit)."""
    ipv6: bool = False
    ra: bool = True
    boot_records: int = DEFAULT_BOOT_RECORDS
    """Boot attempts the timeline keeps in memory (oldest dropped first)."""
    api: tuple[str, int] | None = None
    """Where the operator API listens (None: no API)."""
    api_token: str | None = None
    """The bearer token of the API's write endpoints (None: they are off)."""
    boot_history: float = 7 * 86400.0
    """Seconds boot attempts stay in the lease database (older rows are pruned)."""
    otlp: str | None = None
    """OTLP/HTTP traces endpoint: each boot attempt is exported as a trace (None: off)."""
    inventory: Inventory = EMPTY
    """[[machine]] entries and [profile.NAME] recipes (issue 22): per-machine decisions."""
    boot_api: str | None = None
    """pixiecore-compatible decision API (issue 22 item 2; None: none)."""
    boot_api_deadline: float = 2.0
    boot_api_default: bool = False
    """Machines the API does not know get the inventory's default (else: ignored)."""
    remote_cache_size: int = DEFAULT_CACHE_SIZE
    """Bytes of remote kernels/initrds kept in the state directory (`pxe.remote`)."""
    remote_max_file: int = DEFAULT_MAX_FILE
    """Bytes of one remote file at most (more: refused or cut, nothing cached)."""
    remote_timeout: float = DEFAULT_TIMEOUT
    """Seconds each step of a remote fetch may take (connect, head, each read)."""

    @property
    def http_base(self) -> tuple[str, int] | None:
        """(address, port) that IPv4 boot URLs name, or None without --http-port."""
        if self.http_port is None:
            return None
        return (str(self.dhcp.server_ip), self.http_port)


def with_http_clients(config: PxeConfig) -> PxeConfig:
    """With --http-port, UEFI HTTP boot clients (vendor class HTTPClient) are PXE
    clients too: the DHCP engine answers them (without -a) and the responder knows them."""
    prefixes = config.dhcp.pxe_vendor_prefixes
    if config.http_port is None or HTTP_VENDOR_CLASS in prefixes:
        return config
    dhcp = dataclasses.replace(config.dhcp, pxe_vendor_prefixes=(*prefixes, HTTP_VENDOR_CLASS))
    return dataclasses.replace(config, dhcp=dhcp)
