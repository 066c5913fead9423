"""`ptftpd`: the TFTP server command line (compatible with pTFTPd 1.x)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from ptftpd import __version__, config
from ptftpd.cli.common import (
    OneLineParser,
    add_common_flags,
    add_transfer_limits,
    blksize,
    timeout_seconds,
)
from ptftpd.errors import StartError, bad_setting, report
from ptftpd.netif import InterfaceError, interface_addresses
from ptftpd.paths import root_problem
from ptftpd.service import runtime, tftp_pool, tftp_service
from ptftpd.service.runtime import drain_seconds, metrics_address
from ptftpd.service.service_settings import ServiceSettings
from ptftpd.service.tftp_service import Reread, TftpSettings, port_range, umask_value
from ptftpd.tftp import remap
from ptftpd.tftp.server import TftpServer
from ptftpd.tftp.transfer_settings import transfer_config
from ptftpd.values import WORKERS, port_number, positive_int


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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
        type=WORKERS,
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
        "read-only = true, ...), at its top level or in its [ptftpd] table when the file "
        "has one table per tool; flags win over it; re-read on SIGHUP",
    )
    group.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective settings (file, then flags) as TOML and exit",
    )


# What a reload cannot change: the sockets, processes, identity and logging set up at
# start (IFACE and ROOT are arguments, never in the file).
RESTART_ONLY = ("port", "workers", "user", "group", "metrics", "drain", "verbose", "debug")


def read_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Flags over the `--config` file (its [ptftpd] table) over defaults, at start and
    for each reload; raises ConfigError for a bad file."""
    path = config.config_path(argv)
    config.apply_file(parser, config.load_toml(path, "ptftpd"), path, FLAG_KINDS)
    return parser.parse_args(argv)


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """`read_args`, where a bad setting exits 2 in one line."""
    try:
        return read_args(parser, argv)
    except config.ConfigError as exc:
        bad_setting(parser.prog, str(exc))


def tftp_settings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> TftpSettings:
    """The service's settings from parsed flags (file included) and --map-file's rules;
    raises RemapError (one line) for a bad map file."""
    rules = None if args.map_file is None else remap.load(args.map_file)
    settings = config.effective(parser, args, FLAG_KINDS)
    tftp_config = transfer_config(settings, args.root, read_only=args.read_only or not args.create)
    tftp_config = dataclasses.replace(tftp_config, port_range=args.port_range)
    restart_only = {key: settings.get(key) for key in RESTART_ONLY}
    return TftpSettings(tftp_config, args.map_file, rules, args.umask, restart_only)


def rereader(argv: list[str] | None) -> Reread:
    """SIGHUP's re-read: the same flags over the --config file and --map-file as they
    are now; a bad file raises ConfigError or RemapError (one line)."""

    def reread() -> TftpSettings:
        parser = build_parser()
        try:
            args = read_args(parser, argv)  # the flags parsed once already: only the file changed
        except SystemExit:
            raise config.ConfigError("the command line no longer parses") from None
        return tftp_settings(parser, args)

    return reread


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse(parser, argv)
    problem = root_problem(args.root)
    if problem:
        parser.exit(1, f"ptftpd: error: {problem}\n")
    try:
        hosts = [a.host for a in interface_addresses(args.iface)]
    except InterfaceError as exc:
        parser.exit(1, f"ptftpd: error: {exc}\n")

    try:
        settings = tftp_settings(parser, args)
    except remap.RemapError as exc:
        bad_setting("ptftpd", str(exc))
    service = ServiceSettings.from_args(args)
    try:
        runtime.check_identity(service)
    except StartError as exc:
        return report("ptftpd", exc)
    if args.print_config:  # checked like a start, and nothing derived from the machine
        print(config.dump(config.effective(parser, args, FLAG_KINDS)), end="")
        return 0
    if settings.umask is not None:
        os.umask(settings.umask)  # before any upload (and inherited by the workers)
    reread = rereader(argv)
    if service.workers > 1:
        return tftp_pool.run("ptftpd", service, settings, reread, hosts, args.port)

    async def start() -> tftp_service.TftpService:
        server = TftpServer(settings.config)
        await server.start(hosts, args.port)
        return tftp_service.TftpService(server, settings, reread)

    uploads = () if settings.config.read_only else (args.root,)
    return runtime.run("ptftpd", service, start, writable=uploads)


if __name__ == "__main__":
    sys.exit(main())
