"""`ptftpd`: the TFTP server command line (compatible with pTFTPd 1.x)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ptftpd import __version__, config
from ptftpd.cli.common import (
    add_common_flags,
    blksize,
    port_number,
    positive_int,
    root_problem,
    timeout_seconds,
)
from ptftpd.netif import InterfaceError, interface_addresses
from ptftpd.service import runtime, tftp_pool, tftp_service
from ptftpd.service.runtime import drain_seconds, metrics_address
from ptftpd.service.tftp_service import port_range, umask_value
from ptftpd.tftp.options import BLKSIZE_MAX
from ptftpd.tftp.server import ServerConfig, ServerStartError, TftpServer
from ptftpd.tftp.workers import default_workers


def add_transfer_limits(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The TFTP limits, shared by ptftpd and pxed so both spell and check them alike."""
    parser.add_argument(
        "--blksize-max",
        type=blksize,
        default=BLKSIZE_MAX,
        metavar="N",
        help="largest block size granted; 1468 fits a 1500-byte MTU for "
        "clients that cannot reassemble IP fragments (65464)",
    )
    parser.add_argument(
        "--windowsize-max",
        type=positive_int,
        default=64,
        metavar="N",
        help="largest RFC 7440 window granted (64)",
    )
    parser.add_argument(
        "--timeout",
        type=timeout_seconds,
        default=1.0,
        metavar="SECONDS",
        help="retransmission timeout when the client sets none (1.0)",
    )
    parser.add_argument(
        "--retries",
        type=positive_int,
        default=5,
        metavar="N",
        help="retransmissions before a transfer is abandoned (5)",
    )
    parser.add_argument(
        "--max-sessions",
        type=positive_int,
        default=4096,
        metavar="N",
        help="concurrent transfers; more are refused with an error (4096)",
    )


def transfer_config(args: argparse.Namespace, *, read_only: bool) -> ServerConfig:
    return ServerConfig(
        root=args.root,
        read_only=read_only,
        rfc1350=args.rfc1350,
        blksize_max=args.blksize_max,
        windowsize_max=args.windowsize_max,
        timeout=args.timeout,
        retries=args.retries,
        max_sessions=args.max_sessions,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptftpd",
        description="TFTP server (RFC 1350, 2347, 2348, 2349, 7440) serving ROOT on IFACE.",
        epilog="example: ptftpd -v -p 6969 lo /srv/tftp",
    )
    parser.add_argument(
        "iface", metavar="IFACE", help="interface name (all its addresses) or an IPv4/IPv6 address"
    )
    parser.add_argument("root", metavar="ROOT", type=Path, help="directory to serve")
    parser.add_argument("-p", "--port", type=port_number, default=69, help="UDP port (69)")
    add_common_flags(parser)
    parser.add_argument("--read-only", action="store_true", help="refuse every upload (WRQ)")
    add_transfer_limits(parser)
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=default_workers(),
        metavar="N",
        help="processes serving transfers, sharing the port (SO_REUSEPORT), supervised "
        "by a parent that restarts them; 1 keeps a single process (default: one per "
        "CPU this process may use)",
    )
    tftp_service.add_hpa_flags(parser)
    runtime.add_service_flags(parser)
    add_config_flags(parser)
    parser.add_argument("--version", action="version", version=f"ptftpd {__version__}")
    return parser


def _address(value: tuple[str, int]) -> str:
    host, port = value
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# How ptftpd's flags are spelled in its TOML file: integers, numbers, and the text form
# of the flags whose parsed value is not a string.
FLAG_KINDS = config.FlagKinds(
    ints=(positive_int, port_number, blksize, int),
    numbers=(timeout_seconds, drain_seconds, float),
    render={
        port_range: lambda v: f"{v[0]}:{v[1]}",
        umask_value: lambda v: f"{v:03o}",
        metrics_address: _address,
    },
)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration file")
    group.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML settings file: keys are the long flags (blksize-max = 1468, "
        "read-only = true, ...); flags win over it",
    )
    group.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective settings (file, then flags) as TOML and exit",
    )


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Flags over the `--config` file over defaults; a bad setting exits 2 in one line."""
    path = config.config_path(argv)
    try:
        config.apply_file(parser, config.load_toml(path), path, FLAG_KINDS)
    except config.ConfigError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse(parser, argv)
    if args.print_config:
        print(config.dump(config.effective(parser, args, FLAG_KINDS)), end="")
        return 0
    problem = root_problem(args.root)
    if problem:
        parser.exit(1, f"ptftpd: error: {problem}\n")
    try:
        hosts = [a.host for a in interface_addresses(args.iface)]
    except InterfaceError as exc:
        parser.exit(1, f"ptftpd: error: {exc}\n")

    rules = tftp_service.load_rules("ptftpd", args)
    tftp_config = transfer_config(args, read_only=args.read_only or not args.create)
    tftp_config = dataclasses.replace(tftp_config, port_range=args.port_range)
    if args.workers > 1:
        return tftp_pool.run("ptftpd", args, tftp_config, hosts, rules)

    async def start() -> tftp_service.TftpService:
        server = TftpServer(tftp_config)
        await server.start(hosts, args.port)
        return tftp_service.TftpService(server, args.map_file, rules)

    uploads = () if tftp_config.read_only else (args.root,)
    return runtime.run("ptftpd", args, start, (ServerStartError,), writable=uploads)


if __name__ == "__main__":
    sys.exit(main())
