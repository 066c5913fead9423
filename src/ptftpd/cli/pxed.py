"""`pxed`: the PXE server command line (compatible with pTFTPd 1.x's pxed).

One process runs the DHCP server (or, with `--proxy`, a proxyDHCP beside another DHCP
server), the PXE boot server on port 4011 and a read-only TFTP server for ROOT, all on
IFACE. It accepts the dhcpd flags that make sense here (range, hosts, leases, TOML
config...) and the TFTP limits of ptftpd; `--http-port` adds HTTP (UEFI HTTP boot) and
`--ipv6` DHCPv6 + RA; see `ptftpd.pxe` for the behaviour.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ptftpd import __version__
from ptftpd.cli.common import add_common_flags, port_number, positive_int
from ptftpd.cli.dhcpd import (
    DEFAULT_LEASE_TIME,
    ConfigError,
    OneLineParser,
    add_print_config,
    build_config,
    ipv4,
    print_settings,
)
from ptftpd.cli.ptftpd import add_transfer_limits, transfer_config
from ptftpd.dhcp.server import ServerStartError as DhcpStartError
from ptftpd.dhcp.store import StoreError, default_leases_path
from ptftpd.dhcp6 import Dhcp6StartError
from ptftpd.http import HttpStartError
from ptftpd.netif import InterfaceError
from ptftpd.pxe import BootFiles, PxeConfig, PxeService, missing_boot_files
from ptftpd.service import dhcp_service, privileges, runtime
from ptftpd.service.pxe_running import PxeRunning
from ptftpd.tftp.server import ServerStartError as TftpStartError

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
        ("--arm64-bootfile", "ARM64 UEFI clients (architecture 11)"),
    ):
        boot.add_argument(flag, metavar="FILE", help=f"file for {what}")
    boot.add_argument(
        "--ipxe-bootfile",
        metavar="FILE",
        help="file (e.g. an iPXE script, or an http:// URL) for clients that are already "
        "iPXE (user class iPXE): avoids chainloading iPXE forever",
    )
    dhcp = parser.add_argument_group("DHCP")
    dhcp.add_argument(
        "--proxy",
        action="store_true",
        help="proxyDHCP: another server hands out addresses; answer PXE clients with boot "
        "information only (UDP 67 and 4011)",
    )
    dhcp.add_argument(
        "-g", "--gateway", metavar="GATEWAY", type=ipv4, help="router (default: this host)"
    )
    dhcp.add_argument(
        "-a",
        "--all",
        action="store_true",
        default=None,
        help="answer every DHCP client, not only PXE clients",
    )
    dhcp.add_argument(
        "-n", "--dns", metavar="DNS", type=ipv4, action="append", help="DNS server (repeatable)"
    )
    dhcp.add_argument(
        "--range",
        nargs=2,
        metavar=("START", "END"),
        type=ipv4,
        help="hand out only START..END (default: the whole subnet)",
    )
    dhcp.add_argument(
        "--host",
        action="append",
        metavar="MAC=IP[,NAME]",
        help="static host (repeatable)",
    )
    dhcp.add_argument(
        "--leases",
        type=Path,
        metavar="PATH",
        help=f"SQLite lease file (default: {default_leases_path(PROG, 'IFACE')})",
    )
    dhcp.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file (as dhcpd)")
    add_print_config(dhcp)
    dhcp.add_argument("--domain", metavar="NAME", help="domain name given to clients")
    dhcp.add_argument(
        "--lease-time",
        type=positive_int,
        metavar="SECONDS",
        help=f"lease time ({DEFAULT_LEASE_TIME})",
    )
    dhcp.add_argument(
        "--reply-delay",
        type=float,
        metavar="SECONDS",
        help="wait before each reply: workaround for ROMs that miss instant answers (0)",
    )
    dhcp.add_argument(
        "--pxe-vendor-class",
        action="append",
        metavar="PREFIX",
        help="also treat this vendor class prefix as PXE: workaround for firmware that "
        "sends something other than PXEClient (repeatable)",
    )
    tftp = parser.add_argument_group("TFTP")
    tftp.add_argument(
        "--tftp-port", type=port_number, default=69, metavar="PORT", help="TFTP UDP port (69)"
    )
    add_transfer_limits(tftp)
    net = parser.add_argument_group("HTTP and IPv6")
    net.add_argument(
        "--http-port",
        type=port_number,
        metavar="PORT",
        help="also serve ROOT over HTTP on PORT (every address of IFACE): UEFI HTTP boot "
        "clients get http:// URLs, and so does --ipxe-bootfile",
    )
    net.add_argument(
        "--ipv6",
        action="store_true",
        help="also answer DHCPv6 on IFACE's IPv6 /64 (boot-file-url, RFC 5970), send router "
        "advertisements, and serve TFTP on IFACE's IPv6 addresses; with --proxy, boot "
        "options only",
    )
    net.add_argument(
        "--no-ra", action="store_true", help="with --ipv6: leave router advertisements to a router"
    )
    parser.add_argument(
        "--boot-idle",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="a client quiet this long has finished booting: its boot log line is written (30)",
    )
    runtime.add_service_flags(parser)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # dhcpd's settings merger reads these; pxed is its own TFTP server on port 67.
    args.tftp_server = None
    args.port = None

    def die(message: str) -> int:
        parser.exit(1, f"{PROG}: error: {message}\n")

    if args.timeout <= 0 or args.timeout > 255:
        return die("--timeout must be between 0 and 255 seconds")
    if args.no_ra and not args.ipv6:
        parser.error("--no-ra needs --ipv6")
    if args.boot_idle <= 0:
        return die("--boot-idle must be positive")
    if not args.root.is_dir():
        return die(f"ROOT {args.root} is not a directory")
    files = BootFiles(
        default=args.bootfile,
        bios=args.bios_bootfile,
        efi32=args.efi32_bootfile,
        efi64=args.efi64_bootfile,
        arm64=args.arm64_bootfile,
        ipxe=args.ipxe_bootfile,
    )
    if args.proxy:
        unused = [
            flag
            for flag, value in (
                ("-g", args.gateway),
                ("-a", args.all),
                ("-n", args.dns),
                ("--range", args.range),
                ("--host", args.host),
                ("--lease-time", args.lease_time),
                ("--domain", args.domain),
            )
            if value
        ]
        if unused:
            print(
                f"{PROG}: warning: {', '.join(unused)} have no effect with --proxy "
                "(the network's DHCP server gives addresses and their settings)",
                file=sys.stderr,
            )
    missing = missing_boot_files(args.root, files)
    if missing:
        return die(f"ROOT {args.root} does not hold the boot file(s): {', '.join(missing)}")
    try:
        dhcp = build_config(args, PROG)
    except (ConfigError, InterfaceError) as exc:
        return die(str(exc))
    if args.print_config:
        return print_settings(args, PROG)
    if not privileges.can_bind_privileged_ports():
        return die(f"needs root to bind UDP ports 67, 69 and 4011 on {dhcp.interface}")
    if args.http_port is not None and "HTTPClient" not in dhcp.pxe_vendor_prefixes:
        prefixes = (*dhcp.pxe_vendor_prefixes, "HTTPClient")
        dhcp = dataclasses.replace(dhcp, pxe_vendor_prefixes=prefixes)
    tftp = transfer_config(args, read_only=True)
    config = PxeConfig(
        dhcp=dhcp,
        tftp=tftp,
        files=files,
        proxy=args.proxy,
        tftp_port=args.tftp_port,
        boot_idle=args.boot_idle,
        http_port=args.http_port,
        ipv6=args.ipv6,
        ra=not args.no_ra,
    )

    def rebuild() -> PxeConfig:  # SIGHUP: the --config file again (flags still win)
        return dataclasses.replace(config, dhcp=build_config(args, PROG))

    async def start() -> PxeRunning:
        service = PxeService(config)
        await service.start()
        return PxeRunning(service, rebuild, count=args.metrics is not None)

    errors = (DhcpStartError, TftpStartError, HttpStartError, Dhcp6StartError, StoreError)
    leases = dhcp_service.lease_paths(dhcp), dhcp_service.lease_files(dhcp)
    return runtime.run(PROG, args, start, (*errors, InterfaceError, OSError), *leases)


if __name__ == "__main__":
    sys.exit(main())
