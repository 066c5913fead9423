"""`python -m ptftpd`: the suite's front door, listing the tools it installs."""

from __future__ import annotations

import argparse
import sys

from ptftpd import __version__

TOOLS = {
    "ptftpd": ("ptftpd.cli.ptftpd", "TFTP server (RFC 1350, 2347-2349, 7440)"),
    "dhcpd": ("ptftpd.cli.dhcpd", "DHCP server for network boot (RFC 2131, 4578)"),
    "bootpd": ("ptftpd.cli.bootpd", "BOOTP server (RFC 951, 1497)"),
    "ptftp": ("ptftpd.cli.ptftp", "TFTP client: interactive, one-shot and tftp:// URLs"),
    "pxed": ("ptftpd.cli.pxed", "PXE server: DHCP or proxyDHCP, boot server and TFTP"),
    "install": ("ptftpd.install", "install the servers as systemd services (ptftpd-install)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in TOOLS:
        module = __import__(TOOLS[argv[0]][0], fromlist=["main"])
        result: int = module.main(argv[1:])
        return result
    epilog = "tools:\n" + "\n".join(f"  {name:<8} {text}" for name, (_, text) in TOOLS.items())
    parser = argparse.ArgumentParser(
        prog="python -m ptftpd",
        description="pTFTPd network boot suite. Run a tool as `python -m ptftpd TOOL ...` "
        "or by its own command name.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ptftpd {__version__}")
    parser.add_argument("tool", nargs="?", choices=sorted(TOOLS), help="tool to run")
    args = parser.parse_args(argv)  # anything else is a usage error: exit 2
    if args.tool is None:
        parser.print_help()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
