"""`ptftpd`: the TFTP server command line (compatible with pTFTPd 1.x).

Its settings are one table (`FIELDS`, `ptftpd.fields`): the flags, the keys of the
``--config`` file (or of its [ptftpd] table), ``--print-config``, the man page and what
SIGHUP applies or keeps all come from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from ptftpd import __version__, config, fields
from ptftpd.cli.common import OneLineParser
from ptftpd.errors import StartError, bad_setting, report
from ptftpd.fields import Field
from ptftpd.netif import InterfaceError, interface_addresses
from ptftpd.paths import root_problem
from ptftpd.service import runtime, tftp_pool, tftp_service
from ptftpd.service.service_settings import (
    LOG_FIELDS,
    SERVICE_FIELDS,
    ServiceSettings,
    workers_field,
)
from ptftpd.service.tftp_service import HPA_FIELDS, Reread
from ptftpd.tftp import remap
from ptftpd.tftp.server import ServerConfig, TftpServer
from ptftpd.tftp.transfer_settings import RFC1350, TRANSFER_FIELDS, transfer_config
from ptftpd.values import port_number

PROG = "ptftpd"

# ptftpd's settings, in --help's order. `live=False`: kept until a restart (named in the
# reloaded: line): the sockets, processes, identity and logging set up at start.
FIELDS: tuple[Field, ...] = (
    Field("port", "UDP port (69)", port_number, "int", 69, short="-p", live=False),
    RFC1350,
    *LOG_FIELDS,
    Field(
        "read-only",
        "refuse every upload (WRQ); --no-read-only allows them (the default, also over "
        "read-only = true in a settings file)",
        negatable=True,
        default=False,
    ),
    *TRANSFER_FIELDS,
    workers_field(
        "processes serving transfers, sharing the port (SO_REUSEPORT), supervised by a "
        "parent that restarts them; 1 keeps a single process (default: one per CPU this "
        "process may use)"
    ),
    *HPA_FIELDS,
    *SERVICE_FIELDS,
)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        description="TFTP server (RFC 1350, 2347, 2348, 2349, 7440) serving ROOT on IFACE.",
        epilog="example: ptftpd -v -p 6969 lo /srv/tftp",
    )
    parser.add_argument(
        "iface", metavar="IFACE", help="interface name (all its addresses) or an IPv4/IPv6 address"
    )
    parser.add_argument("root", metavar="ROOT", type=Path, help="directory to serve")
    fields.add_flags(parser, FIELDS)
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
    parser.add_argument("--version", action="version", version=f"ptftpd {__version__}")
    return parser


def read_args(argv: list[str] | None) -> tuple[argparse.Namespace, dict[str, object]]:
    """Flags over the `--config` file (its [ptftpd] table) over defaults, at start and
    for each reload: the namespace (every field set) and the effective values; a bad
    flag exits 2, a bad file raises ConfigError."""
    args = build_parser().parse_args(argv)
    toml = config.load_toml(args.config, PROG)
    values = fields.resolve(FIELDS, fields.from_file(FIELDS, toml), fields.given(FIELDS, args))
    return fields.namespace(FIELDS, values, args), values


def tftp_settings(args: argparse.Namespace, values: Mapping[str, object]) -> ServerConfig:
    """The service's settings from the effective values and --map-file's rules;
    raises RemapError (one line) for a bad map file."""
    rules = None if args.map_file is None else remap.load(args.map_file)
    tftp_config = transfer_config(values, args.root, read_only=args.read_only or not args.create)
    return dataclasses.replace(
        tftp_config,
        port_range=args.port_range,
        map_file=args.map_file,
        remap_rules=rules,
        umask=args.umask,
        restart_only=fields.restart_only(FIELDS, values),
    )


def rereader(argv: list[str] | None) -> Reread:
    """SIGHUP's re-read: the same flags over the --config file and --map-file as they
    are now; a bad file raises ConfigError or RemapError (one line)."""

    def reread() -> ServerConfig:
        try:
            args, values = read_args(argv)  # the flags parsed once already: the file changed
        except SystemExit:
            raise config.ConfigError("the command line no longer parses") from None
        return tftp_settings(args, values)

    return reread


def main(argv: list[str] | None = None) -> int:
    try:
        args, values = read_args(argv)
    except config.ConfigError as exc:
        bad_setting(PROG, str(exc))
    problem = root_problem(args.root)
    if problem:
        return report(PROG, StartError(problem))
    try:
        hosts = [a.host for a in interface_addresses(args.iface)]
    except InterfaceError as exc:
        return report(PROG, exc)
    try:
        settings = tftp_settings(args, values)
    except remap.RemapError as exc:
        bad_setting(PROG, str(exc))
    service = ServiceSettings.from_args(args)
    try:
        runtime.check_identity(service)
    except StartError as exc:
        return report("ptftpd", exc)
    if args.print_config:  # checked like a start, and nothing derived from the machine
        print(fields.dump(FIELDS, values), end="")
        return 0
    if settings.umask is not None:
        os.umask(settings.umask)  # before any upload (and inherited by the workers)
    reread = rereader(argv)
    if service.workers > 1:
        return tftp_pool.run("ptftpd", service, settings, reread, hosts, args.port)

    async def start() -> tftp_service.TftpService:
        server = TftpServer(settings)
        await server.start(hosts, args.port)
        return tftp_service.TftpService(server, reread)

    uploads = () if settings.read_only else (args.root,)
    return runtime.run("ptftpd", service, start, uploads=uploads)


if __name__ == "__main__":
    sys.exit(main())
