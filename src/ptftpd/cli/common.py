"""Pieces every console script shares: flags that mean the same everywhere, one-line
errors instead of tracebacks, and a clean exit on Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import resource
import signal
import stat
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NoReturn

from ptftpd.log import setup_logging
from ptftpd.tftp.options import BLKSIZE_MAX, BLKSIZE_MIN, TIMEOUT_MAX

if TYPE_CHECKING:  # the client never starts an event loop: keep its start-up light
    import asyncio


USAGE_ERROR = 2


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes are reported like every other bad input: one line, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see --help)\n")


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


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return value


def port_number(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a UDP port: {value}")
    return value


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
        type=positive_int,
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
        type=positive_int,
        default=5,
        metavar="N",
        help="retransmissions before a transfer is abandoned (5)",
    )
    parser.add_argument(
        "--max-sessions",
        type=positive_int,
        default=4096,
        metavar="N",
        help="concurrent transfers; more are refused with an error (4096)",
    )


def raise_fd_limit() -> None:
    """Each transfer has its own socket: thousands of sessions need thousands of fds."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def root_problem(root: str | os.PathLike[str]) -> str | None:
    """Why a directory cannot be served, in words, or None when it can."""
    try:
        st = os.stat(root)
    except FileNotFoundError:
        return f"root {root} does not exist"
    except PermissionError:
        return f"cannot access root {root}: permission denied"
    except OSError as exc:
        return f"cannot access root {root}: {exc.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return f"root {root} is not a directory"
    if not os.access(root, os.R_OK | os.X_OK):
        return f"root {root} is not readable by this user"
    return None


def fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 1


def run_service(
    prog: str,
    args: argparse.Namespace,
    body: Callable[[asyncio.Event], Awaitable[None]],
    known_errors: tuple[type[Exception], ...],
) -> int:
    """Run `body(stop)` until it returns or a signal sets `stop`; map known errors to
    one line and exit 1."""
    import asyncio

    setup_logging(args.verbose, args.debug)
    raise_fd_limit()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await body(stop)

    try:
        asyncio.run(main())
    except known_errors as exc:
        return fail(prog, str(exc))
    except KeyboardInterrupt:
        return 130
    logging.getLogger("ptftpd").info("%s stopped", prog)
    return 0
