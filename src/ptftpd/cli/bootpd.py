"""`bootpd`: the BOOTP server command line (RFC 951 with RFC 1497 vendor extensions).

It shares flags, configuration file and lease store format with `dhcpd`; BOOTP clients
get a permanent address (or their static one) and ignore DHCP, so the two can run side
by side on one interface only if their pools do not overlap.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ptftpd.cli.dhcpd import (
    USAGE_ERROR,
    ConfigError,
    OneLineParser,
    add_server_flags,
    build_config,
    check_root,
    print_settings,
    serve,
)
from ptftpd.netif import InterfaceError


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="bootpd",
        description="BOOTP server for network boot on IFACE (RFC 951, 1497, 1542).",
        epilog="example: bootpd -v -t 10.0.0.2 eth1 pxelinux.0",
    )
    add_server_flags(parser, "bootpd")
    parser.add_argument(
        "--root",
        type=Path,
        metavar="DIR",
        help="TFTP root holding BOOTFILE, to send its size (option 13)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = build_config(args, "bootpd")
    except ConfigError as exc:
        parser.exit(USAGE_ERROR, f"bootpd: error: {exc}\n")
    except InterfaceError as exc:
        parser.exit(1, f"bootpd: error: {exc}\n")
    if args.print_config:
        return print_settings(args, "bootpd")
    candidate = (args.root / args.bootfile.lstrip("/")) if args.root else Path(args.bootfile)
    size = candidate.stat().st_size if candidate.is_file() else None
    if args.root is not None and size is None:
        parser.exit(1, f"bootpd: error: {args.bootfile} is not a file under {args.root}\n")
    config = dataclasses.replace(
        config, dhcp=False, bootp=True, answer_all=True, boot_file_size=size
    )
    problem = check_root("bootpd", config)
    if problem:
        parser.exit(1, f"bootpd: error: {problem}\n")
    return serve("bootpd", args, config)


if __name__ == "__main__":
    sys.exit(main())
