"""PXE boot service: DHCP (or proxyDHCP) + boot server + read-only TFTP (and HTTP, and
DHCPv6 + RA) in one loop, choosing the boot file by firmware and logging one line per
boot.

Modules, one concern each (all but `service` without sockets):
- `firmware`: the firmware-aware choice (IANA architecture codes, iPXE, UEFI HTTP boot
  URLs) and the start-up file check.
- `bootlog`: per-client boot sessions fed by DHCP, DHCPv6, TFTP and HTTP events.
- `proxy`: sans-IO proxyDHCP (port 67) and PXE boot server (port 4011).
- `ipv6`: the same firmware table as DHCPv6 boot-file-url (RFC 5970) policy.
- `config`: `PxeConfig`, what `pxed` runs.
- `service`: the asyncio shell that runs them all in the running loop (TFTP in worker
  processes with `pxed --workers N`: `ptftpd.service.pxe_pool`).
"""

from ptftpd.dhcp.options import ARCHITECTURES
from ptftpd.pxe.bootlog import BootLog, BootTracker
from ptftpd.pxe.config import PxeConfig
from ptftpd.pxe.firmware import (
    HTTP_VENDOR_CLASS,
    BootClass,
    BootFiles,
    FirmwareChoice,
    arch_class,
    choose_boot_file,
    http_url,
    is_http_client,
    is_ipxe,
    missing_boot_files,
)
from ptftpd.pxe.ipv6 import Pxe6Policy, client_label
from ptftpd.pxe.proxy import BOOT_SERVER_PORT, ProxyResponder
from ptftpd.pxe.service import PxeService

__all__ = [
    "ARCHITECTURES",
    "BOOT_SERVER_PORT",
    "HTTP_VENDOR_CLASS",
    "BootClass",
    "BootFiles",
    "BootLog",
    "BootTracker",
    "FirmwareChoice",
    "ProxyResponder",
    "Pxe6Policy",
    "PxeConfig",
    "PxeService",
    "arch_class",
    "choose_boot_file",
    "client_label",
    "http_url",
    "is_http_client",
    "is_ipxe",
    "missing_boot_files",
]
