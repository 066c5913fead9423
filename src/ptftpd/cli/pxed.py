"""`pxed`: the PXE server command line (compatible with pTFTPd 1.x's pxed).

One event loop runs the DHCP server (or, with `--proxy`, a proxyDHCP beside another DHCP
server), the PXE boot server on port 4011 and a read-only TFTP server for ROOT, all on
IFACE; with `--workers N` (N > 1) TFTP runs in N worker processes
(`ptftpd.service.pxe_pool`). It takes the DHCP flags dhcpd has (range, hosts,
leases...) and the TFTP limits of ptftpd; `--http-port` adds HTTP (UEFI HTTP boot)
and `--ipv6` DHCPv6 + RA; see `ptftpd.pxe` for the behaviour.

Every flag is a key of its ``--config`` TOML file (``efi64-bootfile = "ipxe.efi"``,
``tftp-port = 69``, ``ra = false``...) besides dhcpd's file-only keys (``exclude``,
``[options]``, ``[[subnet]]``); flags win over the file. The settings are one mapping,
composed into a `PxeConfig` by `ptftpd.pxe.settings`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

from ptftpd import __version__
from ptftpd import config as config_file
from ptftpd.cli import flag_settings
from ptftpd.cli.common import OneLineParser, add_common_flags, add_transfer_limits
from ptftpd.cli.dhcp_flags import add_config_flags, add_dhcp_flags, dhcp_schema, positive_seconds
from ptftpd.config import ConfigError
from ptftpd.dhcp.engine import DhcpConfig
from ptftpd.dhcp.server_settings import dhcp_config, dhcp_defaults
from ptftpd.dhcp.store import StoreError
from ptftpd.errors import StartError, bad_setting, report
from ptftpd.http.server import DEFAULT_MAX_CONNECTIONS
from ptftpd.netif import InterfaceError
from ptftpd.pxe import PxeConfig, PxeService, missing_boot_files
from ptftpd.pxe.service import TftpPoolFactory
from ptftpd.pxe.settings import ADDRESS_KEYS, boot_files, pxe_config
from ptftpd.service import dhcp_service, privileges, pxe_pool, runtime
from ptftpd.service.pxe_running import PxeRunning
from ptftpd.service.service_settings import ServiceSettings
from ptftpd.values import WORKERS, port_number, positive_int

PROG = "pxed"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        description="PXE boot server on IFACE: DHCP (or proxyDHCP with --proxy), the PXE "
        "boot server (UDP 4011) and read-only TFTP of ROOT, choosing the boot file by "
        "client firmware.",
        epilog="example: pxed -v --efi64-bootfile ipxe.efi --ipxe-bootfile boot.ipxe "
        "eth1 /srv/tftp undionly.kpxe",
    )
    parser.add_argument("iface", metavar="IFACE", help="interface to serve (or an address on it)")
    parser.add_argument("root", metavar="ROOT", type=Path, help="directory served over TFTP")
    parser.add_argument(
        "bootfile",
        metavar="BOOTFILE",
        help="boot file (relative to ROOT) for every firmware without its own option",
    )
    add_common_flags(parser)
    boot = parser.add_argument_group("boot files (relative to ROOT; default BOOTFILE)")
    for flag, what in (
        ("--bios-bootfile", "BIOS clients (architecture 0), e.g. undionly.kpxe"),
        ("--efi32-bootfile", "32-bit UEFI clients (architecture 6)"),
        ("--efi64-bootfile", "x64 UEFI clients (architectures 7 and 9), e.g. ipxe.efi"),
        ("--arm64-bootfile", "ARM64 UEFI clients (architecture 11; 19 with --http-port)"),
    ):
        boot.add_argument(flag, metavar="FILE", help=f"file for {what}")
    boot.add_argument(
        "--secure-boot",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="x64 UEFI clients (architectures 7 and 9; 16 with --http-port) get the signed "
        "shim ROOT/shimx64.efi, which loads ROOT/grubx64.efi (a signed network grub) "
        "beside it; grub then reads ROOT/grub/grub.cfg (replaces --efi64-bootfile)",
    )
    boot.add_argument(
        "--ipxe-bootfile",
        metavar="FILE",
        help="file (e.g. an iPXE script, or an http:// URL) for clients that are already "
        "iPXE (user class iPXE): avoids chainloading iPXE forever",
    )
    dhcp = parser.add_argument_group("DHCP")
    dhcp.add_argument(
        "--proxy",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="proxyDHCP: another server hands out addresses; answer PXE clients with boot "
        "information only (UDP 67 and 4011); --no-proxy: hand out addresses (the default)",
    )
    add_dhcp_flags(dhcp, PROG, dhcp=True)
    config_group = parser.add_argument_group("configuration file")
    add_config_flags(config_group)
    tftp = parser.add_argument_group("TFTP")
    tftp.add_argument(
        "--tftp-port", type=port_number, default=69, metavar="PORT", help="TFTP UDP port (69)"
    )
    add_transfer_limits(tftp)
    tftp.add_argument(
        "--workers",
        type=WORKERS,
        metavar="N",
        help="processes serving TFTP, sharing --tftp-port (SO_REUSEPORT), supervised by "
        "the main process (DHCP, boot server, HTTP, DHCPv6, boot log), which restarts them; "
        "--max-sessions holds across them; 1 serves TFTP in the main process (default: "
        "one per CPU this process may use)",
    )
    net = parser.add_argument_group("HTTP and IPv6")
    net.add_argument(
        "--http-port",
        type=port_number,
        metavar="PORT",
        help="also serve ROOT over HTTP on PORT (every address of IFACE): UEFI HTTP boot "
        "clients get http:// URLs, and so does --ipxe-bootfile",
    )
    net.add_argument(
        "--http-max-connections",
        type=positive_int,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help="HTTP connections served at once; more wait in the listen backlog, none is "
        f"refused (the open-file limit is raised to fit) ({DEFAULT_MAX_CONNECTIONS})",
    )
    net.add_argument(
        "--http-rate-limit",
        type=positive_int,
        metavar="BYTES_PER_S",
        help="at most this many HTTP bytes per second to each client address (no limit)",
    )
    net.add_argument(
        "--http-total-rate-limit",
        type=positive_int,
        metavar="BYTES_PER_S",
        help="at most this many HTTP bytes per second to all clients together (no limit)",
    )
    net.add_argument(
        "--ipv6",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also answer DHCPv6 on IFACE's IPv6 /64 (boot-file-url, RFC 5970), send router "
        "advertisements, and serve TFTP on IFACE's IPv6 addresses; with --proxy, boot "
        "options only",
    )
    net.add_argument(
        "--ra",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --ipv6: send router advertisements (the default); --no-ra leaves them "
        "to a router",
    )
    parser.add_argument(
        "--boot-idle",
        type=positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="a client quiet this long has finished booting: its boot log line is written (30)",
    )
    runtime.add_service_flags(parser)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser


def read_settings(argv: list[str] | None) -> flag_settings.CommandLine:
    """pxed's command line (usage errors exit 2): its settings are `.effective()`."""
    parser = build_parser()
    keys = dhcp_schema(parser)

    def defaults(args: argparse.Namespace) -> dict[str, object]:
        return dhcp_defaults(PROG, args.iface, keys.types)

    return flag_settings.read_command_line(PROG, parser, keys, argv, defaults)


def warn_proxy(chosen: Mapping[str, object]) -> None:
    """With --proxy the network's DHCP server gives addresses: say which of the settings
    given (file or flags) are therefore ignored."""
    unused = [flag for key, flag in ADDRESS_KEYS.items() if chosen.get(key)]
    if unused:
        print(
            f"{PROG}: warning: {', '.join(unused)} have no effect with --proxy "
            "(the network's DHCP server gives addresses and their settings)",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> int:
    read = read_settings(argv)
    parser = read.parser
    try:
        settings = read.effective()
        chosen = read.chosen()
    except ConfigError as exc:
        bad_setting(PROG, str(exc))
    if settings.get("ra") is False and settings.get("ipv6") is not True:
        parser.error("--no-ra needs --ipv6")
    if settings.get("secure-boot") is True and settings.get("efi64-bootfile"):
        parser.error("--secure-boot gives x64 UEFI shimx64.efi: drop --efi64-bootfile")
    args = read.namespace(settings)

    def die(message: str) -> int:
        parser.exit(1, f"{PROG}: error: {message}\n")

    if not args.root.is_dir():
        return die(f"ROOT {args.root} is not a directory")
    if args.proxy:
        warn_proxy(chosen)
    missing = missing_boot_files(args.root, boot_files(settings, args.bootfile))
    if missing:
        return die(f"ROOT {args.root} does not hold the boot file(s): {', '.join(missing)}")
    try:
        dhcp = checked_dhcp_config(settings, args.iface, args.bootfile)
    except ConfigError as exc:
        bad_setting(PROG, str(exc))
    except InterfaceError as exc:
        return die(str(exc))
    service = ServiceSettings.from_args(args)
    try:
        runtime.check_identity(service)
    except StartError as exc:
        return report(PROG, exc)
    if args.print_config:  # checked like a start (IFACE, ROOT, --user, the values)
        print(config_file.dump(settings), end="")
        return 0
    if not privileges.can_bind_privileged_ports():
        return die(f"needs root to bind UDP ports 67, 69 and 4011 on {dhcp.interface}")
    config = pxe_config(settings, dhcp, args.root, args.bootfile)
    return serve(read, service, config)


def checked_dhcp_config(settings: Mapping[str, object], iface: str, bootfile: str) -> DhcpConfig:
    """dhcpd's settings model for pxed, which chooses boot files by firmware: a
    [[subnet]]'s bootfile or ipxe-bootfile would never be used, so it is an error."""
    try:
        dhcp = dhcp_config(settings, iface, bootfile, PROG)
        for index, subnet in enumerate(dhcp.subnets):
            for key, value in (
                ("bootfile", subnet.bootfile),
                ("ipxe-bootfile", subnet.ipxe_bootfile),
            ):
                if value is not None:
                    raise ConfigError(
                        "pxed chooses boot files by firmware for every subnet "
                        "(--bios-bootfile, --efi64-bootfile...), not per [[subnet]]",
                        ("subnet", index, key),
                    )
    except ConfigError as exc:
        raise flag_settings.located(exc, settings) from None
    return dhcp


def rebuilt(read: flag_settings.CommandLine) -> PxeConfig:
    """SIGHUP: the --config file read again, the flags still winning over it; raises
    ConfigError (the running settings then stay)."""
    settings = read.effective()
    args = read.namespace(settings)
    dhcp = checked_dhcp_config(settings, args.iface, args.bootfile)
    return pxe_config(settings, dhcp, args.root, args.bootfile)


def serve(read: flag_settings.CommandLine, running: ServiceSettings, config: PxeConfig) -> int:
    async def start(pool: TftpPoolFactory | None = None) -> PxeRunning:
        service = PxeService(config, tftp_pool=pool)
        try:
            await service.start()
        except BaseException:
            service.close()
            raise
        return PxeRunning(service, lambda: rebuilt(read), count=running.metrics is not None)

    known = (StoreError, OSError)
    leases = dhcp_service.lease_paths(config.dhcp), dhcp_service.lease_files(config.dhcp)
    if running.workers > 1:
        return pxe_pool.run(PROG, running, start, known, *leases)
    return runtime.run(PROG, running, start, known, *leases)


if __name__ == "__main__":
    sys.exit(main())
