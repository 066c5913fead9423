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
import dataclasses
import sys
from collections.abc import Mapping
from pathlib import Path

from ptftpd import __version__, config, fields
from ptftpd.cli import flag_settings
from ptftpd.cli.common import OneLineParser
from ptftpd.cli.dhcp_flags import add_config_flags, dhcp_fields, positive_seconds
from ptftpd.config import ConfigError
from ptftpd.dhcp.engine import DhcpConfig
from ptftpd.dhcp.server_settings import dhcp_config
from ptftpd.dhcp.settings import check_duration
from ptftpd.dhcp.store import StoreError, default_leases_path
from ptftpd.dhcp.toml_types import KEY_TYPES
from ptftpd.errors import StartError, bad_setting, report
from ptftpd.fields import Field
from ptftpd.http.config import DEFAULT_MAX_CONNECTIONS
from ptftpd.netif import InterfaceError
from ptftpd.pxe import PxeConfig, PxeService, missing_boot_files, traces
from ptftpd.pxe.boot_records import DEFAULT_MAX_AGE
from ptftpd.pxe.config import DEFAULT_BOOT_RECORDS
from ptftpd.pxe.inventory import Inventory, inventory_from
from ptftpd.pxe.remote import DEFAULT_CACHE_SIZE, DEFAULT_MAX_FILE, DEFAULT_TIMEOUT
from ptftpd.pxe.service import TftpPoolFactory
from ptftpd.pxe.settings import ADDRESS_KEYS, boot_files, pxe_config
from ptftpd.service import dhcp_service, privileges, pxe_pool, runtime
from ptftpd.service.pxe_running import PxeRunning
from ptftpd.service.service_settings import (
    LOG_FIELDS,
    SERVICE_FIELDS,
    ServiceSettings,
    address_text,
    metrics_address,
    workers_field,
)
from ptftpd.tftp.transfer_settings import RFC1350, TRANSFER_FIELDS
from ptftpd.values import IntRange, http_url, is_duration, port_number, positive_int

PROG = "pxed"


BOOT = "boot files (relative to ROOT; default BOOTFILE)"
NET = "HTTP and IPv6"
API = "boot timeline and operator API"


def api_token(text: str) -> str:
    """A bearer token: 16 to 512 printable ASCII characters, no spaces."""
    if not 16 <= len(text) <= 512 or not all("!" <= c <= "~" for c in text):
        raise argparse.ArgumentTypeError(
            "expected 16 to 512 printable ASCII characters without spaces"
        )
    return text


def _in(group: str, table: tuple[Field, ...]) -> tuple[Field, ...]:
    return tuple(dataclasses.replace(f, group=group) for f in table)


def _boot_file(arch: str, what: str) -> Field:
    return Field(f"{arch}-bootfile", f"file for {what}", str, metavar="FILE", group=BOOT)


def _http_rate_limit(key: str, whom: str) -> Field:
    return Field(
        key,
        f"at most this many HTTP bytes per second to {whom} (no limit)",
        positive_int,
        "int",
        metavar="BYTES_PER_S",
        live=False,
        group=NET,
    )


# pxed's settings, in --help's order (the configuration file's group comes before TFTP).
# `live=False`: kept until a restart and named in the reloaded: line.
MAIN_FIELDS: tuple[Field, ...] = (
    RFC1350,
    *LOG_FIELDS,
    _boot_file("bios", "BIOS clients (architecture 0), e.g. undionly.kpxe"),
    _boot_file("efi32", "32-bit UEFI clients (architecture 6)"),
    _boot_file("efi64", "x64 UEFI clients (architectures 7 and 9), e.g. ipxe.efi"),
    _boot_file("arm64", "ARM64 UEFI clients (architecture 11; 19 with --http-port)"),
    Field(
        "secure-boot",
        "x64 UEFI clients (architectures 7 and 9; 16 with --http-port) get the signed shim "
        "ROOT/shimx64.efi, which loads ROOT/grubx64.efi (a signed network grub) beside it; "
        "grub then reads ROOT/grub/grub.cfg (replaces --efi64-bootfile)",
        negatable=True,
        default=False,
        group=BOOT,
    ),
    Field(
        "ipxe-bootfile",
        "file (e.g. an iPXE script, or an http:// URL) for clients that are already iPXE "
        "(user class iPXE): avoids chainloading iPXE forever",
        str,
        metavar="FILE",
        group=BOOT,
        check=KEY_TYPES["ipxe-bootfile"],
    ),
    Field(
        "machine",
        "[[machine]] tables (a file only): the inventory. Each selects machines by mac (one "
        "or a list), uuid, architecture (IANA code or bios/efi32/efi64/arm64), vendor-class, "
        "user-class, hostname (glob patterns) and subnet (CIDR) - every key given must match, "
        "a list means any of, the first entry that matches wins - and names the profile it "
        "boots",
        flag_name="",
        check=(config.list_of(config.is_table), "[[machine]] tables"),
        group=BOOT,
    ),
    Field(
        "profile",
        "[profile.NAME] tables (a file only): boot recipes. kernel, initrd (a list) and "
        "cmdline; or ipxe-script (inline #!ipxe text or a file); or bootfile, a table of "
        "first stages per family (bios, efi32, efi64, arm64, default); or local = true (the "
        "next boot device) or ignore = true (no boot answer). {{ mac }}, {{ ip }}, "
        "{{ uuid }}, {{ arch }}, {{ hostname }}, {{ server }}, {{ http }} and {{ base }} "
        "are the machine's facts; [profile.default] boots machines no [[machine]] matches",
        flag_name="",
        check=(config.is_table, "[profile.NAME] tables"),
        group=BOOT,
    ),
    Field(
        "proxy",
        "proxyDHCP: another server hands out addresses; answer PXE clients with boot "
        "information only (UDP 67 and 4011); --no-proxy: hand out addresses (the default)",
        negatable=True,
        default=False,
        live=False,
        group="DHCP",
    ),
    *dhcp_fields(PROG, dhcp=True, group="DHCP"),
)


def history_seconds(text: str) -> int:
    """--boot-history: seconds or a duration (``12h``, ``7d``), one hour to ten years."""
    try:
        return check_duration(text, "boot history", 3600, 10 * 365 * 86400)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


TFTP_FIELDS: tuple[Field, ...] = (
    Field(
        "tftp-port",
        "TFTP UDP port (69)",
        port_number,
        "int",
        69,
        metavar="PORT",
        live=False,
        group="TFTP",
    ),
    *_in("TFTP", TRANSFER_FIELDS),
    workers_field(
        "processes serving TFTP, sharing --tftp-port (SO_REUSEPORT), supervised by the main "
        "process (DHCP, boot server, HTTP, DHCPv6, boot log), which restarts them; "
        "--max-sessions holds across them; 1 serves TFTP in the main process (default: one "
        "per CPU this process may use)",
        group="TFTP",
    ),
    Field(
        "http-port",
        "also serve ROOT over HTTP on PORT (every address of IFACE): UEFI HTTP boot clients "
        "get http:// URLs, and so does --ipxe-bootfile",
        port_number,
        "int",
        metavar="PORT",
        live=False,
        group=NET,
    ),
    Field(
        "http-max-connections",
        "HTTP connections served at once; more wait in the listen backlog, none is refused "
        f"(the open-file limit is raised to fit) ({DEFAULT_MAX_CONNECTIONS})",
        positive_int,
        "int",
        DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        live=False,
        group=NET,
    ),
    _http_rate_limit("http-rate-limit", "each client address"),
    _http_rate_limit("http-total-rate-limit", "all clients together"),
    Field(
        "ipv6",
        "also answer DHCPv6 on IFACE's IPv6 /64 (boot-file-url, RFC 5970), send router "
        "advertisements, and serve TFTP on IFACE's IPv6 addresses; with --proxy, boot "
        "options only",
        negatable=True,
        default=False,
        live=False,
        group=NET,
    ),
    Field(
        "ra",
        "with --ipv6: send router advertisements (the default); --no-ra leaves them to a router",
        negatable=True,
        default=True,
        live=False,
        group=NET,
    ),
    Field(
        "boot-idle",
        "a client quiet this long has finished booting: its boot log line is written (30)",
        positive_seconds,
        "number",
        30.0,
        metavar="SECONDS",
    ),
    Field(
        "api",
        "serve the operator API at http://ADDR:PORT/ ([v6]:PORT for IPv6): the live page "
        "of every boot at /, boot records at /v1/boots, /v1/machines/MAC and /v1/events "
        "(Server-Sent Events); its own address, not the firmware's --http-port",
        metrics_address,
        metavar="ADDR:PORT",
        show=address_text,
        live=False,
        group=API,
    ),
    Field(
        "api-token",
        "the bearer token the operator API's write endpoints require (settings file only, "
        "never a flag: 16 or more printable characters); without one they are off",
        api_token,
        metavar="TOKEN",
        flag_name="",
        group=API,
    ),
    Field(
        "boot-records",
        "boot attempts the boot timeline keeps in memory, every step of each (the oldest "
        f"go first; about 2.5 KiB each) ({DEFAULT_BOOT_RECORDS})",
        positive_int,
        "int",
        DEFAULT_BOOT_RECORDS,
        metavar="N",
        group=API,
    ),
    Field(
        "boot-history",
        "how long the boot attempts kept in the lease database (SQLite file or "
        "PostgreSQL) are kept: seconds or a duration like 12h, 7d, 4w (7d)",
        history_seconds,
        default=int(DEFAULT_MAX_AGE),
        metavar="SECONDS",
        check=(is_duration, 'seconds or a duration ("12h", "7d")'),
    ),
    Field(
        "boot-api",
        "ask this decision API per machine, as pixiecore's API mode does: GET "
        "URL/v1/boot/MAC answers pixiecore's JSON (kernel, initrd, cmdline, ipxe-script; "
        "also local, profile); between the inventory's explicit entries and its default",
        http_url,
        metavar="URL",
        live=False,
        group=BOOT,
    ),
    Field(
        "boot-api-deadline",
        "the longest a machine's decision waits for the boot API before its last good "
        "answer stands in (2)",
        positive_seconds,
        "number",
        2.0,
        metavar="SECONDS",
        live=False,
        group=BOOT,
    ),
    Field(
        "boot-api-default",
        "machines the boot API does not know (non-200 or malformed answer) get the "
        "inventory's default profile instead of no boot answer (pixiecore's rule)",
        negatable=True,
        default=False,
        live=False,
        group=BOOT,
    ),
    Field(
        "remote-cache-size",
        "bytes of remote kernels and initrds (http/https URLs a decision names, which pxed "
        "fetches and streams with --http-port) kept in the state directory, the least "
        f"recently used evicted first; 0: none kept ({DEFAULT_CACHE_SIZE})",
        IntRange(0, 2**50),
        "int",
        DEFAULT_CACHE_SIZE,
        metavar="BYTES",
        live=False,
        group=BOOT,
    ),
    Field(
        "remote-max-file",
        "the largest remote kernel or initrd pxed streams: a larger one is refused (or cut "
        f"where it passes the limit) and not cached ({DEFAULT_MAX_FILE})",
        positive_int,
        "int",
        DEFAULT_MAX_FILE,
        metavar="BYTES",
        live=False,
        group=BOOT,
    ),
    Field(
        "remote-timeout",
        "seconds each step of a remote fetch may take: connecting, the answer's head, "
        f"each read ({DEFAULT_TIMEOUT:g})",
        positive_seconds,
        "number",
        DEFAULT_TIMEOUT,
        metavar="SECONDS",
        live=False,
        group=BOOT,
    ),
    Field(
        "otlp",
        "export each boot attempt as an OpenTelemetry trace, a span per step, to this "
        "OTLP/HTTP endpoint (e.g. http://collector:4318/v1/traces; needs the otel extra: "
        "pip install 'ptftpd[otel]')",
        http_url,
        metavar="URL",
        live=False,
    ),
    *SERVICE_FIELDS,
)


FIELDS = (*MAIN_FIELDS, *TFTP_FIELDS)


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
    fields.add_flags(parser, MAIN_FIELDS)
    add_config_flags(parser.add_argument_group("configuration file"))
    fields.add_flags(parser, TFTP_FIELDS)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser


def read_settings(argv: list[str] | None) -> flag_settings.CommandLine:
    """pxed's command line (usage errors exit 2): its settings are `.effective()`."""

    def defaults(args: argparse.Namespace) -> dict[str, object]:
        return {"leases": str(default_leases_path(PROG, args.iface))}

    return flag_settings.read_command_line(PROG, build_parser(), FIELDS, argv, defaults)


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
    if settings.get("otlp") is not None:
        try:
            traces.check_available()
        except traces.TracesUnavailable as exc:
            return die(str(exc))
    if args.proxy:
        warn_proxy(chosen)
    missing = missing_boot_files(args.root, boot_files(settings, args.bootfile))
    if missing:
        return die(f"ROOT {args.root} does not hold the boot file(s): {', '.join(missing)}")
    try:
        dhcp = checked_dhcp_config(settings, args.iface, args.bootfile)
        inventory = checked_inventory(settings)
        checked_history(settings)
    except ConfigError as exc:
        bad_setting(PROG, str(exc))
    except InterfaceError as exc:
        return die(str(exc))
    service = ServiceSettings.from_args(args)
    over_tftp = args.http_port is None or args.secure_boot
    if inventory.profiles and over_tftp and service.workers > 1:
        # Per-machine scripts (and grub configurations) are made in this process:
        # without HTTP, or for grub, they go over TFTP, which must then be served here.
        why = "for grub (--secure-boot)" if args.http_port is not None else "without --http-port"
        print(
            f"{PROG}: note: [profile.*] recipes go over TFTP {why}: TFTP is served by the "
            "main process (--workers 1)",
            file=sys.stderr,
        )
        service = dataclasses.replace(service, workers=1)
    try:
        runtime.check_identity(service)
    except StartError as exc:
        return report(PROG, exc)
    if args.print_config:  # checked like a start (IFACE, ROOT, --user, the values)
        print(fields.dump(read.table, settings), end="")
        return 0
    if not privileges.can_bind_privileged_ports():
        return die(f"needs root to bind UDP ports 67, 69 and 4011 on {dhcp.interface}")
    config = pxe_config(settings, dhcp, args.root, args.bootfile, inventory)
    return serve(read, service, config, settings)


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


def checked_history(settings: Mapping[str, object]) -> None:
    """boot-history from a settings file is checked for its type only (a flag's text is
    checked by `history_seconds`): one hour to ten years here, FILE:LINE when wrong."""
    value = settings.get("boot-history")
    if value is None:
        return
    try:
        check_duration(value, "boot-history", 3600, 10 * 365 * 86400)
    except ConfigError as exc:
        raise flag_settings.located(exc, settings) from None


def checked_inventory(settings: Mapping[str, object]) -> Inventory:
    """The [[machine]] entries and [profile.NAME] recipes; a bad one is a ConfigError
    naming its FILE:LINE (an ipxe-script file is relative to the settings file)."""
    base = None
    if isinstance(settings, flag_settings.Effective) and settings.file.path is not None:
        base = settings.file.path.parent
    try:
        return inventory_from(settings, base)
    except ConfigError as exc:
        raise flag_settings.located(exc, settings) from None


def rebuilt(read: flag_settings.Reloads) -> PxeConfig:
    """SIGHUP: the --config file read again, the flags still winning over it; raises
    ConfigError (the running settings then stay)."""
    settings = read.effective()
    args = read.namespace(settings)
    dhcp = checked_dhcp_config(settings, args.iface, args.bootfile)
    inventory = checked_inventory(settings)
    checked_history(settings)
    return pxe_config(settings, dhcp, args.root, args.bootfile, inventory)


def serve(
    read: flag_settings.CommandLine,
    running: ServiceSettings,
    config: PxeConfig,
    settings: Mapping[str, object],
) -> int:
    reloads = flag_settings.Reloads(read, settings)

    async def start(pool: TftpPoolFactory | None = None) -> PxeRunning:
        service = PxeService(config, tftp_pool=pool)
        try:
            await service.start()
        except BaseException:
            service.close()
            raise
        count = running.metrics is not None
        return PxeRunning(service, lambda: rebuilt(reloads), count=count, also_kept=reloads.kept)

    known = (StoreError, OSError)
    leases = dhcp_service.lease_paths(config.dhcp), dhcp_service.lease_files(config.dhcp)
    if running.workers > 1:
        return pxe_pool.run(PROG, running, start, known, *leases)
    return runtime.run(PROG, running, start, known, *leases)


if __name__ == "__main__":
    sys.exit(main())
