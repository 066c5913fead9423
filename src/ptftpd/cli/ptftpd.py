"""`ptftpd`: the TFTP server command line (compatible with pTFTPd 1.x)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from ptftpd import __version__, config
from ptftpd.cli.common import (
    add_common_flags,
    add_transfer_limits,
    blksize,
    fail,
    port_number,
    positive_int,
    raise_fd_limit,
    root_problem,
    timeout_seconds,
)
from ptftpd.log import setup_logging
from ptftpd.netif import InterfaceError, interface_addresses
from ptftpd.service import notify, runtime, tftp_service
from ptftpd.service.runtime import drain_seconds, metrics_address
from ptftpd.service.tftp_service import port_range, umask_value
from ptftpd.tftp.server import ServerStartError, TftpServer
from ptftpd.tftp.transfer_settings import transfer_config
from ptftpd.tftp.workers import TftpWorkers, default_workers


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
    parser.add_argument(
        "--read-only",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="refuse every upload (WRQ); --no-read-only allows them (the default, also over "
        "read-only = true in a settings file)",
    )
    add_transfer_limits(parser)
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="processes serving transfers, sharing the port (SO_REUSEPORT); e.g. "
        f"{default_workers()} for one per CPU here (default 1: a single process, the only "
        "form that takes --user, --group, --metrics and --map-file so far)",
    )
    tftp_service.add_hpa_flags(parser)
    runtime.add_service_flags(parser)
    add_config_flags(parser)
    parser.add_argument("--version", action="version", version=f"ptftpd {__version__}")
    return parser


# How ptftpd's flags are spelled in its TOML file: integers, numbers, and the text form
# of the flags whose parsed value is not a string.
FLAG_KINDS = config.FlagKinds(
    ints=(positive_int, port_number, blksize, int),
    numbers=(timeout_seconds, drain_seconds, float),
    render={
        port_range: lambda v: f"{v[0]}:{v[1]}",
        umask_value: lambda v: f"{v:03o}",
        metrics_address: config.address_text,
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


def run_workers(prog: str, args: argparse.Namespace, pool: TftpWorkers) -> int:
    """Serve with `pool`'s worker processes until SIGTERM/SIGINT (no event loop here)."""
    setup_logging(args.verbose, args.debug)
    raise_fd_limit()
    try:
        pool.open()
    except ServerStartError as exc:
        return fail(prog, str(exc))
    pool.spawn()
    notify.ready(f"serving with {args.workers} workers")
    code = pool.run()
    if pool.failed:
        return fail(prog, pool.failed)
    logging.getLogger("ptftpd").info("%s stopped", prog)
    return code


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

    if args.workers > 1:
        single_only = [
            flag
            for flag, value in (
                ("--user", args.user),
                ("--group", args.group),
                ("--metrics", args.metrics),
                ("--map-file", args.map_file),
            )
            if value
        ]
        if single_only:
            parser.error(f"{', '.join(single_only)} need --workers 1 (the worker pool lacks them)")
    rules = tftp_service.load_rules("ptftpd", args)
    settings = config.effective(parser, args, FLAG_KINDS)
    tftp_config = transfer_config(settings, args.root, read_only=args.read_only or not args.create)
    tftp_config = dataclasses.replace(tftp_config, port_range=args.port_range)
    if args.workers > 1:
        return run_workers("ptftpd", args, TftpWorkers(tftp_config, hosts, args.port, args.workers))

    async def start() -> tftp_service.TftpService:
        server = TftpServer(tftp_config)
        await server.start(hosts, args.port)
        return tftp_service.TftpService(server, args.map_file, rules)

    uploads = () if tftp_config.read_only else (args.root,)
    return runtime.run("ptftpd", args, start, (ServerStartError,), writable=uploads)


if __name__ == "__main__":
    sys.exit(main())
