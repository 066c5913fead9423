"""A `ServerConfig` from settings in their TOML form (``blksize-max = 1468``, ...).

ptftpd and pxed both hold their settings as one mapping keyed like the long flags (the
``--config`` file, then the flags over it), already checked against each flag's type and
range; this turns the transfer limits of that mapping into the TFTP server's settings,
so both tools read them alike and no argparse Namespace reaches the TFTP layer.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from ptftpd.fields import Field, int_value, number_value
from ptftpd.tftp.options import BLKSIZE_MAX, BLKSIZE_MIN, TIMEOUT_MAX
from ptftpd.tftp.server import ServerConfig
from ptftpd.values import RETRIES, SESSIONS, WINDOWSIZE, Seconds, positive_int

__all__ = ["RFC1350", "TRANSFER_FIELDS", "blksize", "timeout_seconds", "transfer_config"]


def blksize(text: str) -> int:
    """An RFC 2348 block size, for every tool that takes one."""
    value = positive_int(text)
    if not BLKSIZE_MIN <= value <= BLKSIZE_MAX:
        raise argparse.ArgumentTypeError(f"must be {BLKSIZE_MIN}..{BLKSIZE_MAX}")
    return value


timeout_seconds = Seconds(0, TIMEOUT_MAX, open_low=True)
"""A retransmission timeout in seconds, at most RFC 2349's 255."""


RFC1350 = Field(
    "rfc1350",
    "strict RFC 1350: no option negotiation; --no-rfc1350 negotiates (the default, also "
    "over rfc1350 = true in a settings file)",
    short="-r",
    negatable=True,
    default=False,
)

# The TFTP limits, shared by ptftpd and pxed so both spell and check them alike.
TRANSFER_FIELDS = (
    Field(
        "blksize-max",
        "largest block size granted; 1468 fits a 1500-byte MTU for clients that cannot "
        "reassemble IP fragments (65464)",
        blksize,
        "int",
        BLKSIZE_MAX,
        metavar="N",
    ),
    Field(
        "windowsize-max", "largest RFC 7440 window granted (64)", WINDOWSIZE, "int", 64, metavar="N"
    ),
    Field(
        "timeout",
        "retransmission timeout when the client sets none (1.0)",
        timeout_seconds,
        "number",
        1.0,
        metavar="SECONDS",
    ),
    Field(
        "retries",
        "retransmissions before a transfer is abandoned (5)",
        RETRIES,
        "int",
        5,
        metavar="N",
    ),
    Field(
        "max-sessions",
        "concurrent transfers; more are refused with an error (4096)",
        SESSIONS,
        "int",
        4096,
        metavar="N",
    ),
)

_DEFAULTS = ServerConfig(root=Path("."))


def transfer_config(settings: Mapping[str, object], root: Path, *, read_only: bool) -> ServerConfig:
    """The TFTP limits of `settings` (keys ``rfc1350``, ``blksize-max``,
    ``windowsize-max``, ``timeout``, ``retries``, ``max-sessions``; absent ones keep the
    server's defaults) for serving `root`."""
    return ServerConfig(
        root=root,
        read_only=read_only,
        rfc1350=settings.get("rfc1350") is True,
        blksize_max=int_value(settings, "blksize-max", _DEFAULTS.blksize_max),
        windowsize_max=int_value(settings, "windowsize-max", _DEFAULTS.windowsize_max),
        timeout=number_value(settings, "timeout", _DEFAULTS.timeout),
        retries=int_value(settings, "retries", _DEFAULTS.retries),
        max_sessions=int_value(settings, "max-sessions", _DEFAULTS.max_sessions),
    )
