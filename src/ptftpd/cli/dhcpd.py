"""`dhcpd`: the DHCP server command line (compatible with pTFTPd 1.x's dhcpd).

Settings come from three places, later ones winning: built-in defaults, the TOML file
given with `--config`, and command-line flags. The TOML keys mirror the long flags::

    range = ["10.0.0.100", "10.0.0.200"]
    exclude = ["10.0.0.150"]
    lease-time = 7200
    leases = "/var/lib/ptftpd/lab.sqlite"  # or "postgresql://dhcp@db.lab/leases": shared
    lease-sync = "full"
    gateway = "10.0.0.254"
    tftp-server = "10.0.0.2"
    dns = ["10.0.0.53"]
    domain = "lab.example"
    all = true
    ipxe-bootfile = "boot.ipxe"
    hosts = ["52:54:00:12:34:56=10.0.0.10,build01"]   # or [{mac=, ip=, name=}]
    authoritative = false    # true: NAK wrong requests from clients we do not know
    [options]                                           # by registry name or code
    ntp-servers = ["10.0.0.123"]
    252 = "687474703a2f2f"                               # raw bytes as hex

    [[subnet]]               # a relayed subnet (giaddr, option 118 or 82.5 in it)
    network = "10.1.7.0/24"
    range = ["10.1.7.100", "10.1.7.200"]
    gateway = "10.1.7.1"     # also excluded from the pool; usually the relay
    dns = ["10.0.0.53"]
    domain = "rack7.lab.example"
    bootfile = "rack7/pxelinux.0"   # default: BOOTFILE; also tftp-server, ipxe-bootfile
    lease-time = 600
    hosts = ["52:54:00:aa:bb:cc=10.1.7.10,r7n10"]
    exclude = ["10.1.7.50"]
    [subnet.options]
    ntp-servers = ["10.1.7.1"]

Usage errors (bad flags, bad settings) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import socket
import sys
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, NoReturn

from ptftpd import __version__
from ptftpd import config as config_file
from ptftpd.cli.common import fail
from ptftpd.dhcp.engine import DhcpConfig
from ptftpd.dhcp.server import DhcpServer, ServerStartError
from ptftpd.dhcp.settings import (
    MAX_LEASE_TIME,
    ConfigError,
    check_int,
    parse_host,
    parse_options,
    parse_range,
    parse_subnets,
)
from ptftpd.dhcp.settings import ip as _ip
from ptftpd.dhcp.store import StoreError, default_leases_path
from ptftpd.dhcp.toml_types import check_types
from ptftpd.netif import InterfaceError, interface_addresses
from ptftpd.service import dhcp_service, privileges, runtime

__all__ = ["DEFAULT_LEASE_TIME", "ConfigError", "build_config", "ipv4", "main", "parse_host"]

DEFAULT_LEASE_TIME = 3600
USAGE_ERROR = 2


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes are reported like every other bad input: one line, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see --help)\n")


def lease_seconds(text: str) -> int:
    """A lease time that fits option 51 (32 bits; all ones would mean infinite)."""
    try:
        return check_int(text, "lease time", 1, MAX_LEASE_TIME)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def ipv4(text: str) -> IPv4Address:
    try:
        return IPv4Address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IPv4 address: {text!r}") from None


def add_server_flags(parser: argparse.ArgumentParser, tool: str) -> None:
    """Flags shared by dhcpd and bootpd (the original's, then the new long ones)."""
    parser.add_argument("iface", metavar="IFACE", help="interface to serve (or an address on it)")
    parser.add_argument("bootfile", metavar="BOOTFILE", help="boot file name given to clients")
    parser.add_argument(
        "-t",
        "--tftp-server",
        metavar="TFTP_SERVER",
        help="next-server (siaddr, option 66): address or name (default: this host)",
    )
    parser.add_argument(
        "-g",
        "--gateway",
        metavar="GATEWAY",
        type=ipv4,
        help="router given to clients (default: this host)",
    )
    parser.add_argument(
        "-n",
        "--dns",
        metavar="DNS",
        type=ipv4,
        action="append",
        help="DNS server given to clients (repeatable)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log one line per event")
    parser.add_argument("-D", "--debug", action="store_true", help="log every packet")
    parser.add_argument(
        "--range",
        nargs=2,
        metavar=("START", "END"),
        type=ipv4,
        help="hand out only START..END (default: the whole subnet)",
    )
    parser.add_argument(
        "--host",
        action="append",
        metavar="MAC=IP[,NAME]",
        help="static host: always give IP (and host name NAME) to MAC (repeatable)",
    )
    parser.add_argument(
        "--leases",
        metavar="PATH|URI",
        help=f"SQLite lease file (default: {default_leases_path(tool, 'IFACE')}), or a "
        "postgresql://USER@HOST/DB URI: leases shared with every server naming it",
    )
    parser.add_argument(
        "--lease-sync",
        choices=("normal", "full"),
        help="normal: every grant is committed before the reply and survives kill -9; "
        "full: also fsync, to survive power loss, at a lower rate (normal)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML settings file (keys as the long flags; [[subnet]] tables for relayed subnets)",
    )
    parser.add_argument("--domain", metavar="NAME", help="domain name given to clients")
    parser.add_argument(
        "--authoritative",
        action="store_true",
        default=None,
        help="this server owns the segment: NAK wrong requests even from clients it has "
        "no record of (default: stay silent to them, RFC 2131 4.3.2, so that another "
        "DHCP server on the same wire keeps its clients)",
    )
    parser.add_argument(
        "--ipxe-bootfile",
        metavar="NAME",
        help="boot file (usually a script) for iPXE clients instead of BOOTFILE, "
        "so that an iPXE chain-loaded from BOOTFILE does not load itself again",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        metavar="PORT",
        help="server UDP port (67); clients are answered on PORT+1 (68)",
    )
    add_print_config(parser)
    runtime.add_service_flags(parser)
    parser.add_argument("--version", action="version", version=f"{tool} {__version__}")


def add_print_config(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="check the settings, print the effective ones (file, then flags) as TOML "
        "that --config reads back, and exit without binding anything",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="dhcpd",
        description="DHCP server for network boot on IFACE (RFC 2131, 2132, 4578). "
        "Without -a it answers PXE clients only.",
        epilog="example: dhcpd -a -v -n 10.0.0.53 eth1 pxelinux.0. The --config TOML file "
        "takes the long flags as keys (authoritative = true, ...) and [[subnet]] tables "
        "for subnets behind relays (network, range, gateway, dns, domain, bootfile, "
        "tftp-server, ipxe-bootfile, hosts, exclude, lease-time, [subnet.options]). "
        "Usage errors exit 2.",
    )
    add_server_flags(parser, "dhcpd")
    parser.add_argument(
        "-a",
        "--all",
        action="store_true",
        default=None,
        help="answer every client, not only PXE clients (vendor class PXEClient)",
    )
    parser.add_argument(
        "--lease-time",
        type=lease_seconds,
        metavar="SECONDS",
        help=f"lease time, 1..{MAX_LEASE_TIME} ({DEFAULT_LEASE_TIME})",
    )
    parser.add_argument(
        "--reply-delay",
        type=float,
        metavar="SECONDS",
        help="wait before each reply: workaround for ROMs that miss instant answers (0)",
    )
    parser.add_argument(
        "--pxe-vendor-class",
        action="append",
        metavar="PREFIX",
        help="also treat this vendor class prefix as PXE: workaround for firmware that "
        "sends something other than PXEClient (repeatable)",
    )
    parser.add_argument(
        "--init-db",
        action="store_true",
        help="create or migrate the PostgreSQL lease schema named by --leases, print "
        "its version and exit",
    )
    return parser


def _load_toml(path: Path | None) -> dict[str, Any]:
    try:
        return config_file.load_toml(path)
    except config_file.ConfigError as exc:
        raise ConfigError(str(exc)) from None


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _texts(values: object) -> list[str] | None:
    return None if not values else [str(v) for v in values]  # type: ignore[attr-defined]


def effective_settings(args: argparse.Namespace, tool: str) -> dict[str, object]:
    """The settings `build_config` merges (file, then flags, then defaults) in the TOML
    file's form, for `--print-config`: what `--config` reads back to the same server."""
    settings: dict[str, object] = dict(_load_toml(getattr(args, "config", None)))
    flags: dict[str, object | None] = {
        "range": _texts(getattr(args, "range", None)),
        "lease-time": getattr(args, "lease_time", None),
        "leases": _text(getattr(args, "leases", None)),
        "lease-sync": getattr(args, "lease_sync", None),
        "gateway": _text(getattr(args, "gateway", None)),
        "tftp-server": getattr(args, "tftp_server", None),
        "dns": _texts(getattr(args, "dns", None)),
        "domain": getattr(args, "domain", None),
        "ipxe-bootfile": getattr(args, "ipxe_bootfile", None),
        "all": getattr(args, "all", None),
        "authoritative": getattr(args, "authoritative", None),
        "reply-delay": getattr(args, "reply_delay", None),
        "pxe-vendor-class": getattr(args, "pxe_vendor_class", None),
        "port": getattr(args, "port", None),
    }
    settings.update({k: v for k, v in flags.items() if v is not None})
    if getattr(args, "host", None):
        settings["hosts"] = [*settings.get("hosts", []), *args.host]  # type: ignore[misc]
    defaults: dict[str, object] = {
        "lease-time": DEFAULT_LEASE_TIME,
        "lease-sync": "normal",
        "reply-delay": 0.0,
        "authoritative": False,
        "leases": str(default_leases_path(tool, args.iface)),
    }
    if hasattr(args, "all"):
        defaults["all"] = False
    if getattr(args, "port", 0) is not None:
        defaults["port"] = 67
    for key, value in defaults.items():
        settings.setdefault(key, value)
    return settings


def print_settings(args: argparse.Namespace, tool: str) -> int:
    """`--print-config`: the effective settings as TOML lines, exit 0, nothing bound."""
    print(config_file.dump(effective_settings(args, tool)), end="")
    return 0


def build_config(args: argparse.Namespace, tool: str) -> DhcpConfig:
    """Merge defaults, TOML and flags into a `DhcpConfig`; raises ConfigError/InterfaceError.

    Only `iface` and `bootfile` are required on `args`: other tools (pxed) reuse this
    with a subset of dhcpd's flags."""
    toml = _load_toml(getattr(args, "config", None))
    check_types(toml, getattr(args, "config", None))  # known keys, each of its type

    def pick(flag: object, key: str, default: object = None) -> Any:
        return flag if flag is not None else toml.get(key, default)

    addrs = interface_addresses(args.iface, family=4)
    here = addrs[0]
    if here.interface is None:
        raise ConfigError(f"{args.iface} is not an address of any interface here")
    server_ip = IPv4Address(str(here.address))
    network = IPv4Network(str(here.network))

    tftp = pick(getattr(args, "tftp_server", None), "tftp-server")
    next_server: IPv4Address | None = None
    tftp_name: str | None = None
    if tftp is not None:
        try:
            next_server = IPv4Address(str(tftp))
        except ValueError:
            try:
                next_server = IPv4Address(socket.gethostbyname(str(tftp)))
            except OSError:
                raise ConfigError(f"cannot resolve TFTP server name {tftp!r}") from None
            tftp_name = str(tftp)

    gateway = pick(getattr(args, "gateway", None), "gateway")
    routers = None if gateway is None else (_ip(gateway, "gateway"),)
    dns_raw: Any = getattr(args, "dns", None) or toml.get("dns", [])
    if isinstance(dns_raw, str):
        dns_raw = [dns_raw]
    dns = tuple(_ip(d, "dns") for d in dns_raw)

    rng = pick(getattr(args, "range", None), "range")
    start = end = None
    if rng is not None:
        start, end = parse_range(rng, network)

    hosts_raw: list[object] = list(toml.get("hosts", []))
    hosts_raw += getattr(args, "host", None) or []
    hosts = tuple(parse_host(h) for h in hosts_raw)
    for h in hosts:
        if h.address not in network:
            raise ConfigError(f"static host {h.mac}: {h.address} is not on {network}")

    exclude_raw: Any = toml.get("exclude", [])
    if isinstance(exclude_raw, str):
        exclude_raw = [exclude_raw]
    exclude = {_ip(e, "exclude") for e in exclude_raw}
    # The server's other addresses on this interface are not for clients either.
    exclude.update(IPv4Address(str(a.address)) for a in addrs[1:] if a.address.version == 4)

    extra = parse_options(toml.get("options", {}))
    subnets = parse_subnets(toml.get("subnet", []), network)

    lease_time = check_int(
        pick(getattr(args, "lease_time", None), "lease-time", DEFAULT_LEASE_TIME),
        "lease-time",
        1,
        MAX_LEASE_TIME,
    )
    delay_raw = pick(getattr(args, "reply_delay", None), "reply-delay", 0.0)
    if isinstance(delay_raw, bool) or not isinstance(delay_raw, (int, float)):
        raise ConfigError(f"reply-delay: expected seconds, got {delay_raw!r}")
    reply_delay = float(delay_raw)
    if not 0 <= reply_delay <= 10:
        raise ConfigError("reply-delay must be between 0 and 10 seconds")
    prefixes = ["PXEClient"]
    extra_prefixes = getattr(args, "pxe_vendor_class", None) or toml.get("pxe-vendor-class", [])
    prefixes += [str(p) for p in extra_prefixes]
    port = check_int(pick(getattr(args, "port", None), "port", 67), "port", 1, 65534)
    leases_path, leases_url = lease_location(
        pick(getattr(args, "leases", None), "leases"), tool, args.iface
    )
    lease_sync = str(pick(getattr(args, "lease_sync", None), "lease-sync", "normal"))
    if lease_sync not in ("normal", "full"):
        raise ConfigError(f"lease-sync must be normal or full, not {lease_sync!r}")
    answer_all = bool(pick(getattr(args, "all", None), "all", False))
    authoritative = pick(getattr(args, "authoritative", None), "authoritative", False)
    if not isinstance(authoritative, bool):
        raise ConfigError(f"authoritative: expected true or false, got {authoritative!r}")

    return DhcpConfig(
        server_ip=server_ip,
        network=network,
        bootfile=args.bootfile,
        interface=here.interface,
        next_server=next_server,
        tftp_server_name=tftp_name,
        routers=routers,
        dns=dns,
        domain_name=pick(getattr(args, "domain", None), "domain"),
        answer_all=answer_all,
        pxe_vendor_prefixes=tuple(prefixes),
        range_start=start,
        range_end=end,
        static_hosts=hosts,
        exclude=tuple(sorted(exclude)),
        lease_time=lease_time,
        extra_options=extra,
        leases_path=leases_path,
        leases_url=leases_url,
        lease_sync=lease_sync,
        port=port,
        client_port=68 if port == 67 else port + 1,
        reply_delay=reply_delay,
        ipxe_bootfile=pick(getattr(args, "ipxe_bootfile", None), "ipxe-bootfile"),
        authoritative=authoritative,
        subnets=subnets,
    )


_DB_SCHEMES = ("postgresql:", "postgres:")


def lease_location(value: object, tool: str, iface: str) -> tuple[Path | None, str | None]:
    """(SQLite file, None) or (None, PostgreSQL URI) from the `leases` setting.

    A flag parsed as a `Path` (pxed's) arrives with `//` folded to `/`: the URI's
    authority is put back (`postgresql:/u@h/db` -> `postgresql://u@h/db`, and
    `postgresql:/db?host=/run` -> `postgresql:///db?host=/run`)."""
    if value is None:
        return default_leases_path(tool, iface), None
    if not isinstance(value, (str, Path)):
        raise ConfigError(f"leases: expected a path or a postgresql:// URI, got {value!r}")
    text = str(value)
    scheme = next((s for s in _DB_SCHEMES if text.startswith(s)), None)
    if scheme is None:
        return Path(text), None
    rest = text[len(scheme) :]
    if isinstance(value, Path) and not rest.startswith("//"):
        tail = rest.lstrip("/")
        first = tail.split("?", 1)[0]
        rest = ("//" if "/" in first else "///") + tail
    if not rest.startswith("//"):
        raise ConfigError(f"leases: {text!r} is not a postgresql://USER@HOST/DB URI")
    return None, scheme + rest


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


def check_root(tool: str, config: DhcpConfig) -> str | None:
    if config.port < 1024 and not privileges.can_bind_privileged_ports():
        return (
            f"needs root to bind UDP port {config.port} on {config.interface} "
            f"(run it as root, e.g. with sudo)"
        )
    return None


def serve(tool: str, args: argparse.Namespace, config: DhcpConfig) -> int:
    async def start() -> dhcp_service.DhcpService:
        server = DhcpServer(config)
        await server.start()
        rebuild = dhcp_service.rebuilder(lambda: build_config(args, tool), config)
        return dhcp_service.DhcpService(server, rebuild, count=args.metrics is not None)

    paths, files = dhcp_service.lease_paths(config), dhcp_service.lease_files(config)
    errors = (ServerStartError, StoreError)
    return runtime.run(tool, args, start, errors, writable=paths, owned_files=files)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = build_config(args, "dhcpd")
    except ConfigError as exc:
        parser.exit(USAGE_ERROR, f"dhcpd: error: {exc}\n")
    except InterfaceError as exc:
        parser.exit(1, f"dhcpd: error: {exc}\n")
    if args.print_config:
        return print_settings(args, "dhcpd")
    if args.init_db:
        return init_db("dhcpd", config)
    problem = check_root("dhcpd", config)
    if problem:
        parser.exit(1, f"dhcpd: error: {problem}\n")
    return serve("dhcpd", args, config)


if __name__ == "__main__":
    sys.exit(main())
