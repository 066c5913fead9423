"""The DHCP flags dhcpd, bootpd and pxed share, spelled and checked alike, and the
schema that makes each of them (and each file-only setting) a key of the TOML file.

The TOML keys are the long flags (``--lease-time`` -> ``lease-time``; ``--host`` ->
``hosts``, a list that flags add to), plus ``exclude``, ``[options]`` and ``[[subnet]]``
which only a file can hold; their types are `ptftpd.dhcp.toml_types.KEY_TYPES`, every
other flag's (``user``, ``drain``, ``tftp-port``...) comes from the flag itself.
"""

from __future__ import annotations

import argparse
from ipaddress import IPv4Address
from pathlib import Path

from ptftpd import config
from ptftpd.cli import flag_settings
from ptftpd.cli.common import blksize, timeout_seconds
from ptftpd.dhcp.server_settings import DEFAULT_LEASE_TIME
from ptftpd.dhcp.settings import MAX_LEASE_TIME, ConfigError, check_int
from ptftpd.dhcp.store import default_leases_path
from ptftpd.dhcp.toml_types import KEY_TYPES
from ptftpd.service.runtime import drain_seconds, metrics_address
from ptftpd.values import port_number, positive_int

__all__ = ["KINDS", "add_config_flags", "add_dhcp_flags", "dhcp_schema", "ipv4", "lease_seconds"]


def lease_seconds(text: str) -> int:
    """A lease time that fits option 51 (32 bits; all ones would mean infinite)."""
    try:
        return check_int(text, "lease time", 1, MAX_LEASE_TIME)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def ipv4(text: str) -> IPv4Address:
    try:
        return IPv4Address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IPv4 address: {text!r}") from None


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text[:40]!r}") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(
            f"must be more than 0 seconds and at most a day, not {text}"
        )
    return value


# How these tools' flags are spelled in their TOML files (the rest are strings).
KINDS = config.FlagKinds(
    ints=(int, positive_int, port_number, blksize, lease_seconds),
    numbers=(float, timeout_seconds, drain_seconds, positive_seconds),
    render={metrics_address: config.address_text},
)


def dhcp_schema(parser: argparse.ArgumentParser) -> flag_settings.Schema:
    """The TOML keys of a DHCP-family tool built by `parser`."""
    return flag_settings.schema(
        parser,
        KINDS,
        KEY_TYPES,
        renamed={"host": "hosts"},
        file_only=("exclude", "options", "subnet"),
        joined=("hosts",),
    )


Group = argparse.ArgumentParser | argparse._ArgumentGroup


def add_config_flags(parser: Group) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML settings file: keys are the long flags (lease-time = 600, all = true, "
        "hosts = [...]) plus exclude, [options] and [[subnet]] tables, at its top level or "
        "in this tool's table ([dhcpd], [bootpd], [pxed]) when the file has one table per "
        "tool; flags win over it",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="check the settings, print the effective ones (defaults, file, then flags) as "
        "TOML that --config reads back (this tool's own file, or the body of its table), "
        "and exit without binding anything",
    )


def add_dhcp_flags(parser: Group, tool: str, *, dhcp: bool) -> None:
    """The address pool, lease and client settings; `dhcp` adds those that BOOTP (whose
    leases are permanent and which answers every client) has no use for."""
    parser.add_argument(
        "-g",
        "--gateway",
        metavar="GATEWAY",
        type=ipv4,
        help="router given to clients (default: this host)",
    )
    parser.add_argument(
        "-n",
        "--dns",
        metavar="DNS",
        type=ipv4,
        action="append",
        help="DNS server given to clients (repeatable)",
    )
    if dhcp:
        parser.add_argument(
            "-a",
            "--all",
            action=argparse.BooleanOptionalAction,
            help="answer every client, not only PXE clients (vendor class PXEClient); "
            "--no-all: PXE clients only (the default)",
        )
    parser.add_argument(
        "--range",
        nargs=2,
        metavar=("START", "END"),
        type=ipv4,
        help="hand out only START..END (default: the whole subnet)",
    )
    parser.add_argument(
        "--host",
        action="append",
        metavar="MAC=IP[,NAME]",
        help="static host: always give IP (and host name NAME) to MAC (repeatable; added "
        "to the file's hosts)",
    )
    parser.add_argument(
        "--leases",
        metavar="PATH|URI",
        help=f"SQLite lease file (default: {default_leases_path(tool, 'IFACE')}), or a "
        "postgresql://USER@HOST/DB URI: leases shared with every server naming it",
    )
    parser.add_argument(
        "--lease-sync",
        choices=("normal", "full"),
        help="normal: every grant is committed before the reply and survives kill -9; "
        "full: also fsync, to survive power loss, at a lower rate (normal)",
    )
    if dhcp:
        parser.add_argument(
            "--lease-time",
            type=lease_seconds,
            metavar="SECONDS",
            help=f"lease time, 1..{MAX_LEASE_TIME} ({DEFAULT_LEASE_TIME})",
        )
    parser.add_argument("--domain", metavar="NAME", help="domain name given to clients")
    parser.add_argument(
        "--authoritative",
        action=argparse.BooleanOptionalAction,
        help="this server owns the segment: NAK wrong requests even from clients it has "
        "no record of (default, --no-authoritative: stay silent to them, RFC 2131 4.3.2, "
        "so that another DHCP server on the same wire keeps its clients)",
    )
    parser.add_argument(
        "--reply-delay",
        type=float,
        metavar="SECONDS",
        help="wait before each reply: workaround for ROMs that miss instant answers (0)",
    )
    if dhcp:
        parser.add_argument(
            "--pxe-vendor-class",
            action="append",
            metavar="PREFIX",
            help="also treat this vendor class prefix as PXE: workaround for firmware that "
            "sends something other than PXEClient (repeatable)",
        )
