"""pTFTPd: a pure-Python network boot suite (TFTP, DHCP, BOOTP, PXE)."""

__version__ = "2.0.0.dev0"
