"""The one `main` of dhcpd and bootpd: same flags, same TOML file, same life cycle.

A tool is a small `DhcpTool` profile: its name and help, the flags only it has, and how
it adjusts the `DhcpConfig` the shared settings model builds (bootpd: BOOTP instead of
DHCP, every client answered, the boot file's size from --root). Everything else - flags
to settings (defaults, then the ``--config`` file, then the flags given), --print-config,
--init-db, the root check, serving and SIGHUP reload - is here once.

Usage errors (bad flags, bad settings) print one line and exit 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ptftpd import __version__, fields
from ptftpd.cli import flag_settings
from ptftpd.cli.common import OneLineParser
from ptftpd.cli.dhcp_flags import add_config_flags, dhcp_fields
from ptftpd.config import ConfigError
from ptftpd.dhcp.engine import DhcpConfig
from ptftpd.dhcp.server import DhcpServer
from ptftpd.dhcp.server_settings import DEFAULT_PORT, dhcp_config
from ptftpd.dhcp.store import StoreError, default_leases_path
from ptftpd.dhcp.toml_types import KEY_TYPES
from ptftpd.errors import StartError, bad_setting, fail, report
from ptftpd.fields import Field
from ptftpd.netif import InterfaceError
from ptftpd.service import dhcp_service, privileges, runtime
from ptftpd.service.service_settings import LOG_FIELDS, SERVICE_FIELDS, ServiceSettings

__all__ = ["CannotServe", "DhcpTool", "build_parser", "main"]


class CannotServe(Exception):
    """A setting that is well-formed but cannot be served here (exit 1)."""


def _same(config: DhcpConfig, settings: Mapping[str, object]) -> DhcpConfig:
    return config


@dataclass(frozen=True)
class DhcpTool:
    """What differs between dhcpd and bootpd. `dhcp`: speak DHCP (and take the flags
    only DHCP needs: -a, --lease-time, --pxe-vendor-class, --init-db); `fields`: the
    tool's own (bootpd's root); `adjust` turns the shared model's `DhcpConfig` into
    this tool's (may raise CannotServe)."""

    prog: str
    description: str
    epilog: str
    dhcp: bool = True
    fields: tuple[Field, ...] = ()
    adjust: Callable[[DhcpConfig, Mapping[str, object]], DhcpConfig] = _same


def table(tool: DhcpTool) -> tuple[Field, ...]:
    """The tool's settings, in --help's order."""
    return (
        Field(
            "tftp-server",
            "next-server (siaddr, option 66): address or name (default: this host)",
            str,
            short="-t",
            metavar="TFTP_SERVER",
            check=KEY_TYPES["tftp-server"],
        ),
        *LOG_FIELDS,
        *dhcp_fields(tool.prog, dhcp=tool.dhcp),
        Field(
            "ipxe-bootfile",
            "boot file (usually a script) for iPXE clients instead of BOOTFILE, so that an "
            "iPXE chain-loaded from BOOTFILE does not load itself again",
            str,
            metavar="NAME",
            check=KEY_TYPES["ipxe-bootfile"],
        ),
        Field(
            "port",
            "server UDP port (67); clients are answered on PORT+1 (68)",
            int,
            metavar="PORT",
            default=DEFAULT_PORT,
            live=False,
            check=KEY_TYPES["port"],
        ),
        *tool.fields,
        *SERVICE_FIELDS,
    )


def build_parser(tool: DhcpTool) -> argparse.ArgumentParser:
    parser = OneLineParser(prog=tool.prog, description=tool.description, epilog=tool.epilog)
    parser.add_argument("iface", metavar="IFACE", help="interface to serve (or an address on it)")
    parser.add_argument("bootfile", metavar="BOOTFILE", help="boot file name given to clients")
    own = table(tool)
    service = [f for f in own if f.group == "service"]
    fields.add_flags(parser, [f for f in own if f.group != "service"])
    if tool.dhcp:
        parser.add_argument(
            "--init-db",
            action="store_true",
            help="create or migrate the PostgreSQL lease schema named by --leases, print "
            "its version and exit",
        )
    add_config_flags(parser)
    fields.add_flags(parser, service)
    parser.add_argument("--version", action="version", version=f"{tool.prog} {__version__}")
    return parser


def read_settings(tool: DhcpTool, argv: list[str] | None) -> flag_settings.CommandLine:
    def defaults(args: argparse.Namespace) -> dict[str, object]:
        return {"leases": str(default_leases_path(tool.prog, args.iface))}

    return flag_settings.read_command_line(
        tool.prog, build_parser(tool), table(tool), argv, defaults
    )


def build(tool: DhcpTool, settings: Mapping[str, object], args: argparse.Namespace) -> DhcpConfig:
    """The tool's `DhcpConfig` from the effective settings; a bad value is a
    ConfigError naming where it was set (FILE:LINE or its flag)."""
    try:
        return tool.adjust(dhcp_config(settings, args.iface, args.bootfile, tool.prog), settings)
    except ConfigError as exc:
        raise flag_settings.located(exc, settings) from None


def init_db(tool: str, config: DhcpConfig) -> int:
    """`--init-db`: create or migrate the schema, print one line with its version."""
    if config.leases_url is None:
        return fail(tool, "--init-db needs --leases postgresql://USER@HOST/DB")
    try:
        from ptftpd.dhcp.pg_store import describe, init_schema
    except ImportError:
        return fail(tool, "PostgreSQL leases need psycopg: pip install 'ptftpd[postgresql]'")
    try:
        version = init_schema(config.leases_url)
    except StoreError as exc:
        return fail(tool, str(exc))
    print(f"{tool}: lease schema version {version} ready in {describe(config.leases_url)}")
    return 0


def check_root(config: DhcpConfig) -> str | None:
    if config.port < 1024 and not privileges.can_bind_privileged_ports():
        return (
            f"needs root to bind UDP port {config.port} on {config.interface} "
            f"(run it as root, e.g. with sudo)"
        )
    return None


def serve(
    tool: DhcpTool,
    read: flag_settings.CommandLine,
    args: argparse.Namespace,
    config: DhcpConfig,
    settings: Mapping[str, object],
) -> int:
    reloads = flag_settings.Reloads(read, settings)

    def rebuild() -> DhcpConfig:
        return build(tool, reloads.effective(), args)

    async def start() -> dhcp_service.DhcpService:
        server = DhcpServer(config)
        await server.start()
        again = dhcp_service.rebuilder(rebuild, config)
        count = args.metrics is not None
        return dhcp_service.DhcpService(server, again, count=count, also_kept=reloads.kept)

    paths, files = dhcp_service.lease_paths(config), dhcp_service.lease_files(config)
    errors = (StoreError,)
    service = ServiceSettings.from_args(args)
    return runtime.run(tool.prog, service, start, errors, writable=paths, owned_files=files)


def main(tool: DhcpTool, argv: list[str] | None = None) -> int:
    read = read_settings(tool, argv)
    prog, parser = tool.prog, read.parser
    try:
        settings = read.effective()
        args = read.namespace(settings)
        config = build(tool, settings, args)
    except ConfigError as exc:
        bad_setting(prog, str(exc))
    except (InterfaceError, CannotServe) as exc:
        parser.exit(1, f"{prog}: error: {exc}\n")
    try:
        runtime.check_identity(ServiceSettings.from_args(args))
    except StartError as exc:
        return report(prog, exc)
    if args.print_config:  # checked like a start (IFACE, --user, the values)
        print(fields.dump(read.table, settings), end="")
        return 0
    if getattr(args, "init_db", False):
        return init_db(prog, config)
    problem = check_root(config)
    if problem:
        parser.exit(1, f"{prog}: error: {problem}\n")
    return serve(tool, read, args, config, settings)
