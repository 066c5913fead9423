"""`bootpd`: the BOOTP server command line (RFC 951 with RFC 1497 vendor extensions).

It shares flags, configuration file, lease store format and its `main` with `dhcpd`
(`ptftpd.cli.dhcp_family`); BOOTP clients get a permanent address (or their static one)
and ignore DHCP, so the two can run side by side on one interface only if their pools do
not overlap. Its own key is ``root`` (``--root``): the TFTP root holding BOOTFILE, whose
size goes into option 13.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Mapping
from pathlib import Path

from ptftpd.cli import dhcp_family
from ptftpd.dhcp.engine import DhcpConfig
from ptftpd.fields import Field

__all__ = ["BOOTPD", "FIELDS", "build_parser", "main"]


ROOT = Field(
    "root", "TFTP root holding BOOTFILE, to send its size (option 13)", Path, metavar="DIR"
)


def boot_file_size(root: Path | None, bootfile: str) -> int | None:
    """bootpd's option 13: the size of BOOTFILE under ROOT (None without --root)."""
    candidate = (root / bootfile.lstrip("/")) if root else Path(bootfile)
    size = candidate.stat().st_size if candidate.is_file() else None
    if root is not None and size is None:
        raise dhcp_family.CannotServe(f"{bootfile} is not a file under {root}")
    return size


def as_bootp(config: DhcpConfig, settings: Mapping[str, object]) -> DhcpConfig:
    """BOOTP only, every client answered (BOOTP has no vendor class to select PXE
    clients by), and the boot file's size when --root names where it is."""
    root = settings.get("root")
    size = boot_file_size(None if root is None else Path(str(root)), config.bootfile)
    return dataclasses.replace(config, dhcp=False, bootp=True, answer_all=True, boot_file_size=size)


BOOTPD = dhcp_family.DhcpTool(
    prog="bootpd",
    description="BOOTP server for network boot on IFACE (RFC 951, 1497, 1542).",
    epilog="example: bootpd -v -t 10.0.0.2 eth1 pxelinux.0",
    dhcp=False,
    fields=(ROOT,),
    adjust=as_bootp,
)


FIELDS = dhcp_family.table(BOOTPD)


def build_parser() -> argparse.ArgumentParser:
    return dhcp_family.build_parser(BOOTPD)


def main(argv: list[str] | None = None) -> int:
    return dhcp_family.main(BOOTPD, argv)


if __name__ == "__main__":
    sys.exit(main())
