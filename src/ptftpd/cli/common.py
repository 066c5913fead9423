"""Pieces every console script shares: flags that mean the same everywhere and one-line
usage errors."""

from __future__ import annotations

import argparse
import re
from typing import NoReturn

from ptftpd.errors import bad_setting
from ptftpd.tftp.options import BLKSIZE_MAX, BLKSIZE_MIN, TIMEOUT_MAX
from ptftpd.values import RETRIES, SESSIONS, WINDOWSIZE, positive_int


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes are reported like every other bad setting: one line
    (``TOOL: --flag: what is wrong (try --help)``), exit 2, no usage block."""

    def error(self, message: str) -> NoReturn:
        bad_setting(self.prog, flag_message(message))


def flag_message(message: str) -> str:
    """argparse's "argument -p/--port: not a UDP port: 70000" as "--port: not a UDP
    port: 70000" (the long flag, as the settings file's key is spelled)."""
    found = re.match(r"argument (\S+): (.*)", message, re.S)
    if found is None:
        return message
    return f"{found.group(1).split('/')[-1]}: {found.group(2)}"


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-r",
        "--rfc1350",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="strict RFC 1350: no option negotiation; --no-rfc1350 negotiates (the default, "
        "also over rfc1350 = true in a settings file)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log one line per transfer or lease"
    )
    parser.add_argument("-D", "--debug", action="store_true", help="log every packet decision")


def blksize(text: str) -> int:
    """An RFC 2348 block size, for every tool that takes one."""
    value = positive_int(text)
    if not BLKSIZE_MIN <= value <= BLKSIZE_MAX:
        raise argparse.ArgumentTypeError(f"must be {BLKSIZE_MIN}..{BLKSIZE_MAX}")
    return value


def timeout_seconds(text: str) -> float:
    """A retransmission timeout in seconds, at most RFC 2349's 255."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= TIMEOUT_MAX:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {TIMEOUT_MAX} seconds")
    return value


def add_transfer_limits(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The TFTP limits, shared by ptftpd and pxed so both spell and check them alike."""
    parser.add_argument(
        "--blksize-max",
        type=blksize,
        default=BLKSIZE_MAX,
        metavar="N",
        help="largest block size granted; 1468 fits a 1500-byte MTU for "
        "clients that cannot reassemble IP fragments (65464)",
    )
    parser.add_argument(
        "--windowsize-max",
        type=WINDOWSIZE,
        default=64,
        metavar="N",
        help="largest RFC 7440 window granted (64)",
    )
    parser.add_argument(
        "--timeout",
        type=timeout_seconds,
        default=1.0,
        metavar="SECONDS",
        help="retransmission timeout when the client sets none (1.0)",
    )
    parser.add_argument(
        "--retries",
        type=RETRIES,
        default=5,
        metavar="N",
        help="retransmissions before a transfer is abandoned (5)",
    )
    parser.add_argument(
        "--max-sessions",
        type=SESSIONS,
        default=4096,
        metavar="N",
        help="concurrent transfers; more are refused with an error (4096)",
    )
