"""The DHCP settings dhcpd, bootpd and pxed share, as fields of their tables
(`ptftpd.fields`): spelled and checked alike, each a flag and a key of the TOML file.

The TOML keys are the long flags (``--lease-time`` -> ``lease-time``; ``--host`` ->
``hosts``, a list that flags add to), plus ``exclude``, ``[options]`` and ``[[subnet]]``
which only a file holds. The keys whose value is more than a flag's text (lists,
tables, addresses) are checked for their TOML type here (`ptftpd.dhcp.toml_types`) and
read by the DHCP settings model (`ptftpd.dhcp.server_settings`), which says which key a
bad value is (FILE:LINE or its flag).
"""

from __future__ import annotations

import argparse
from ipaddress import IPv4Address
from pathlib import Path

from ptftpd.dhcp.server_settings import DEFAULT_LEASE_TIME, peer_timeout_field
from ptftpd.dhcp.settings import MAX_LEASE_TIME, ConfigError, check_duration
from ptftpd.dhcp.store import default_leases_path
from ptftpd.dhcp.toml_types import KEY_TYPES
from ptftpd.fields import Field
from ptftpd.values import Seconds

__all__ = [
    "add_config_flags",
    "dhcp_fields",
    "ipv4",
    "lease_seconds",
    "positive_seconds",
]


def lease_seconds(text: str) -> int:
    """A lease time that fits option 51 (32 bits; all ones would mean infinite)."""
    try:
        return check_duration(text, "lease time", 1, MAX_LEASE_TIME)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def ipv4(text: str) -> IPv4Address:
    try:
        return IPv4Address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IPv4 address: {text[:60]!r}") from None


positive_seconds = Seconds(0, 86400, open_low=True)  # at most a day


def sync_mode(text: str) -> str:
    if text not in ("normal", "full"):
        raise argparse.ArgumentTypeError(f"must be normal or full, not {text[:40]!r}")
    return text


def dhcp_fields(tool: str, *, dhcp: bool, group: str | None = None) -> tuple[Field, ...]:
    """The address pool, lease and client settings; `dhcp` adds those that BOOTP (whose
    leases are permanent and which answers every client) has no use for."""

    def field(key: str, help_text: str, **kw: object) -> Field:
        """Each is checked for its TOML type (its model reads the value itself)."""
        return Field(key, help_text, group=group, check=KEY_TYPES[key], **kw)  # type: ignore[arg-type]

    pool = [
        field(
            "gateway",
            "router given to clients (default: this host)",
            parse=ipv4,
            short="-g",
            metavar="GATEWAY",
        ),
        field(
            "dns",
            "DNS server given to clients (repeatable)",
            parse=ipv4,
            short="-n",
            metavar="DNS",
            repeat=True,
        ),
    ]
    if dhcp:
        pool.append(
            field(
                "all",
                "answer every client, not only PXE clients (vendor class PXEClient); "
                "--no-all: PXE clients only (the default)",
                short="-a",
                negatable=True,
                default=False,
            )
        )
    pool += [
        field(
            "range",
            "hand out only START..END (default: the whole subnet)",
            parse=ipv4,
            nargs=2,
            metavar=("START", "END"),
        ),
        field(
            "hosts",
            "static host: always give IP (and host name NAME) to MAC (repeatable; added to "
            "the file's hosts)",
            parse=str,
            flag_name="host",
            metavar="MAC=IP[,NAME]",
            repeat=True,
            join=True,
        ),
        field(
            "leases",
            f"SQLite lease file (default: {default_leases_path(tool, 'IFACE')}), or a "
            "postgresql://USER@HOST/DB URI: leases shared with every server naming it",
            parse=str,
            metavar="PATH|URI",
            live=False,
        ),
        field(
            "lease-sync",
            "normal: every grant is committed before the reply and survives kill -9; "
            "full: also fsync, to survive power loss, at a lower rate (normal)",
            parse=sync_mode,
            default="normal",
            metavar="{normal,full}",
            live=False,
        ),
        peer_timeout_field(group),
    ]
    if dhcp:
        pool.append(
            field(
                "lease-time",
                f"lease time in seconds, 1..{MAX_LEASE_TIME} ({DEFAULT_LEASE_TIME}), or "
                "a duration: 30m, 12h, 7d",
                parse=lease_seconds,
                default=DEFAULT_LEASE_TIME,
                metavar="SECONDS",
            )
        )
    pool += [
        field(
            "domain",
            "domain name given to clients",
            parse=str,
            metavar="NAME",
        ),
        field(
            "authoritative",
            "this server owns the segment: NAK wrong requests even from clients it has no "
            "record of (default, --no-authoritative: stay silent to them, RFC 2131 4.3.2, so "
            "that another DHCP server on the same wire keeps its clients)",
            negatable=True,
            default=False,
        ),
        field(
            "reply-delay",
            "wait before each reply: workaround for ROMs that miss instant answers (0)",
            parse=float,
            default=0.0,
            metavar="SECONDS",
        ),
    ]
    if dhcp:
        pool.append(
            field(
                "pxe-vendor-class",
                "also treat this vendor class prefix as PXE: workaround for firmware that "
                "sends something other than PXEClient (repeatable)",
                parse=str,
                metavar="PREFIX",
                repeat=True,
            )
        )
    only_in_a_file = "only in a settings file"
    pool += [
        field("exclude", only_in_a_file, flag_name=""),
        field("options", only_in_a_file, flag_name=""),
        field("subnet", only_in_a_file, flag_name=""),
    ]
    return tuple(pool)


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
