"""`python -m ptftpd.dhcp6 IFACE --leases FILE`: the DHCPv6 service on its own.

For tests and trials until pxed wires it in (`pxed --ipv6`). The prefix and the
server's addresses are read from IFACE's global IPv6 addresses. Usage errors exit 2,
start-up errors print one line and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from ipaddress import IPv6Address
from pathlib import Path

from ptftpd import fields
from ptftpd.dhcp.server_settings import peer_timeout_field
from ptftpd.dhcp.store import StoreError
from ptftpd.dhcp6.boot import url_policy
from ptftpd.dhcp6.config import Dhcp6Config, config_for_interface
from ptftpd.dhcp6.service import Dhcp6Service
from ptftpd.events import ignore
from ptftpd.service import metrics
from ptftpd.service.runtime import run_service, serve_metrics_at
from ptftpd.service.service_settings import SERVICE_FIELDS
from ptftpd.values import duration_seconds

PROG = "python -m ptftpd.dhcp6"
PEER_TIMEOUT = peer_timeout_field()  # dhcpd's and pxed's --peer-timeout
METRICS = next(f for f in SERVICE_FIELDS if f.key == "metrics")  # the servers' --metrics


def _ipv6(text: str) -> IPv6Address:
    try:
        return IPv6Address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IPv6 address: {text}") from None


def _lifetime(text: str) -> int:
    value = duration_seconds(text) or 0
    if value <= 0:
        raise argparse.ArgumentTypeError(
            f"not a positive number of seconds or a duration (30m, 12h, 7d): {text}"
        )
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="DHCPv6 server (RFC 8415) with netboot options (RFC 5970) and "
        "router advertisements, on one interface.",
    )
    p.add_argument("interface", metavar="IFACE", help="interface to serve (with a global /64)")
    p.add_argument(
        "--leases",
        required=True,
        metavar="FILE|URL",
        help="SQLite lease file, or postgresql://... (bindings shared by several servers)",
    )
    p.add_argument("--proxy", action="store_true", help="boot options only, no addresses")
    p.add_argument("--no-ra", action="store_true", help="send no router advertisements")
    p.add_argument("--boot-url", metavar="URL", help="boot-file-url (59) for netboot clients")
    p.add_argument("--rapid-commit", action="store_true", help="two-message exchange if asked")
    p.add_argument("--dns", type=_ipv6, action="append", default=[], metavar="ADDR")
    p.add_argument("--range", nargs=2, type=_ipv6, metavar=("FIRST", "LAST"))
    p.add_argument(
        "--lease-time",
        type=_lifetime,
        default=7200,
        metavar="SECONDS",
        help="valid lifetime (preferred: half of it)",
    )
    fields.add_flags(p, (PEER_TIMEOUT, METRICS))
    p.add_argument("-v", "--verbose", action="store_true", help="one line per lease")
    p.add_argument("-D", "--debug", action="store_true", help="one line per packet")
    return p


def build_config(args: argparse.Namespace) -> Dhcp6Config:
    first, last = args.range or (None, None)
    shared = args.leases.startswith(("postgresql://", "postgres://"))
    return config_for_interface(
        args.interface,
        leases_path=None if shared else Path(args.leases),
        leases_url=args.leases if shared else None,
        peer_timeout=PEER_TIMEOUT.default if args.peer_timeout is None else args.peer_timeout,
        range_start=first,
        range_end=last,
        valid_lifetime=args.lease_time,
        preferred_lifetime=max(1, args.lease_time // 2),
        rapid_commit=args.rapid_commit,
        proxy=args.proxy,
        dns_servers=tuple(args.dns),
        boot_policy=url_policy(args.boot_url) if args.boot_url else None,
        send_ra=not args.no_ra,
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    async def body(stop: asyncio.Event) -> None:
        counted = args.metrics is not None  # messages and binding events
        service = Dhcp6Service(
            build_config(args), events=metrics.record_event if counted else ignore
        )
        await service.start()
        try:
            serve_metrics_at(args.metrics)
            await stop.wait()
        finally:
            service.close()

    return run_service(PROG, args, body, (StoreError,))


if __name__ == "__main__":
    sys.exit(main())
