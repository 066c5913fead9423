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

Every flag is a key (``--no-all`` turns off ``all = true``); flags win over the file.
Usage errors (bad flags, bad settings) print one line and exit 2. The shared `main` is
`ptftpd.cli.dhcp_family`; the settings model is `ptftpd.dhcp.server_settings`.
"""

from __future__ import annotations

import argparse
import sys

from ptftpd.cli import dhcp_family

__all__ = ["DHCPD", "FIELDS", "build_parser", "main"]

DHCPD = dhcp_family.DhcpTool(
    prog="dhcpd",
    description="DHCP server for network boot on IFACE (RFC 2131, 2132, 4578). "
    "Without -a it answers PXE clients only.",
    epilog="example: dhcpd -a -v -n 10.0.0.53 eth1 pxelinux.0. The --config TOML file "
    "takes the long flags as keys (authoritative = true, ...) and [[subnet]] tables "
    "for subnets behind relays (network, range, gateway, dns, domain, bootfile, "
    "tftp-server, ipxe-bootfile, hosts, exclude, lease-time, [subnet.options]). "
    "Usage errors exit 2.",
)


FIELDS = dhcp_family.table(DHCPD)


def build_parser() -> argparse.ArgumentParser:
    return dhcp_family.build_parser(DHCPD)


def main(argv: list[str] | None = None) -> int:
    return dhcp_family.main(DHCPD, argv)


if __name__ == "__main__":
    sys.exit(main())
