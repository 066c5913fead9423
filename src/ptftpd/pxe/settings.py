"""pxed's settings model: one mapping of TOML-form values -> `PxeConfig`.

pxed's settings are one mapping keyed like its long flags (defaults, then the
``--config`` file, then the flags given). This composes the three models that read it -
the DHCP server's (`ptftpd.dhcp.server_settings`), the TFTP server's
(`ptftpd.tftp.transfer_settings`) and the boot choices here - so pxed neither borrows
another tool's command line nor patches an argparse Namespace.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from ptftpd.dhcp.engine import DhcpConfig
from ptftpd.fields import IntDefault, int_value, number_value, text_value
from ptftpd.http.config import DEFAULT_MAX_CONNECTIONS
from ptftpd.pxe.config import DEFAULT_BOOT_RECORDS, PxeConfig
from ptftpd.pxe.firmware import HTTP_VENDOR_CLASS, BootFiles
from ptftpd.pxe.inventory import EMPTY, Inventory
from ptftpd.pxe.remote import DEFAULT_CACHE_SIZE, DEFAULT_MAX_FILE, DEFAULT_TIMEOUT
from ptftpd.tftp.transfer_settings import transfer_config
from ptftpd.values import duration_seconds

__all__ = ["ADDRESS_KEYS", "boot_files", "pxe_config"]

# Settings about handing out addresses: meaningless with proxy = true.
ADDRESS_KEYS = {
    "gateway": "-g",
    "all": "-a",
    "dns": "-n",
    "range": "--range",
    "hosts": "--host",
    "lease-time": "--lease-time",
    "domain": "--domain",
}


def boot_files(settings: Mapping[str, object], bootfile: str) -> BootFiles:
    """BOOTFILE and the per-firmware files (``bios-bootfile``...) of `settings`."""
    return BootFiles(
        default=bootfile,
        bios=text_value(settings, "bios-bootfile"),
        efi32=text_value(settings, "efi32-bootfile"),
        efi64=text_value(settings, "efi64-bootfile"),
        arm64=text_value(settings, "arm64-bootfile"),
        ipxe=text_value(settings, "ipxe-bootfile"),
        secure_boot=settings.get("secure-boot") is True,
    )


def _count(settings: Mapping[str, object], key: str, default: IntDefault) -> int | IntDefault:
    return int_value(settings, key, default, least=1, what="a positive integer")


def _address(settings: Mapping[str, object], key: str) -> tuple[str, int] | None:
    value = settings.get(key)
    if value is None:
        return None
    if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int)):
        raise TypeError(f"{key}: expected (address, port), got {value!r}")
    return (str(value[0]), value[1])


def _history(value: object) -> float:
    """--boot-history: already checked (an int from the flag, or the file's int or
    duration text)."""
    if value is None:
        return 7 * 86400.0
    if isinstance(value, str):
        return float(duration_seconds(value) or 7 * 86400)
    return float(value)  # type: ignore[arg-type]


def pxe_config(
    settings: Mapping[str, object],
    dhcp: DhcpConfig,
    root: Path,
    bootfile: str,
    inventory: Inventory = EMPTY,
) -> PxeConfig:
    """The `PxeConfig` for `settings`, around the DHCP settings already built from
    them (`ptftpd.dhcp.server_settings.dhcp_config`); values are already checked."""
    http_port = int_value(settings, "http-port", None, what="a port number")
    if http_port is not None and HTTP_VENDOR_CLASS not in dhcp.pxe_vendor_prefixes:
        prefixes = (*dhcp.pxe_vendor_prefixes, HTTP_VENDOR_CLASS)
        dhcp = dataclasses.replace(dhcp, pxe_vendor_prefixes=prefixes)
    return PxeConfig(
        dhcp=dhcp,
        tftp=transfer_config(settings, root, read_only=True),
        files=boot_files(settings, bootfile),
        proxy=settings.get("proxy") is True,
        tftp_port=int_value(settings, "tftp-port", 69, what="a port number"),
        boot_idle=number_value(settings, "boot-idle", 30.0, what="seconds"),
        http_port=http_port,
        http_max_connections=_count(settings, "http-max-connections", DEFAULT_MAX_CONNECTIONS),
        http_rate_limit=_count(settings, "http-rate-limit", None),
        http_total_rate_limit=_count(settings, "http-total-rate-limit", None),
        ipv6=settings.get("ipv6") is True,
        ra=settings.get("ra") is not False,
        boot_records=_count(settings, "boot-records", DEFAULT_BOOT_RECORDS),
        api=_address(settings, "api"),
        api_token=text_value(settings, "api-token"),
        otlp=text_value(settings, "otlp"),
        boot_history=_history(settings.get("boot-history")),
        inventory=inventory,
        boot_api=text_value(settings, "boot-api"),
        boot_api_deadline=number_value(settings, "boot-api-deadline", 2.0, what="seconds"),
        boot_api_default=settings.get("boot-api-default") is True,
        remote_cache_size=int_value(
            settings, "remote-cache-size", DEFAULT_CACHE_SIZE, least=0, what="a number of bytes"
        ),
        remote_max_file=_count(settings, "remote-max-file", DEFAULT_MAX_FILE),
        remote_timeout=number_value(settings, "remote-timeout", DEFAULT_TIMEOUT, what="seconds"),
    )
