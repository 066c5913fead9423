"""The one start-up error of the suite, and how a tool reports it.

Every problem found while a server starts (address, port, interface, root, lease
store, privileges, a setting only checkable at start) is a `StartError`: a one-line
message and the exit status the tool ends with, chosen where the problem is found
(1 by default, 2 for a usage problem such as a --user that does not exist).
`report()` prints it as `PROG: error: MESSAGE` and returns that status.
"""

from __future__ import annotations

import errno
import sys
from typing import NoReturn

USAGE_ERROR = 2
"""Exit status of a usage or settings error (argparse's too)."""

START_FAILED = 1
"""Exit status of a start-up problem: the settings were fine, the machine said no."""

# The DHCP servers' `bind_error` hint: they bind privileged ports and add ARP entries.
ROOT_OR_CAPABILITIES = "run as root (or with CAP_NET_BIND_SERVICE and CAP_NET_RAW)"


class StartError(Exception):
    """A start-up problem, reported as one line; `status` is the tool's exit status."""

    def __init__(self, message: str, status: int = START_FAILED) -> None:
        super().__init__(message)
        self.status = status


def fail(prog: str, message: str, status: int = START_FAILED) -> int:
    """Print `PROG: error: MESSAGE` on stderr and return `status` (the exit status)."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return status


def bad_setting(prog: str, message: str) -> NoReturn:
    """A value or usage error, in the one style of every tool: ``PROG: WHERE: key: what
    is wrong (try --help)`` on one line (WHERE is FILE:LINE or the flag), exit 2."""
    sys.stderr.write(f"{prog}: {message} (try --help)\n")
    raise SystemExit(USAGE_ERROR)


def report(prog: str, exc: StartError) -> int:
    """`fail` for a `StartError`: its message and its own exit status."""
    return fail(prog, str(exc), exc.status)


def bind_error(exc: OSError, proto: str, host: str, port: int, hint: str) -> str:
    """The one-line reason a server could not bind `proto` (TCP/UDP) `port` on `host`.

    Every server words the same three cases alike (no permission, port taken, anything
    else) and raises `StartError` with this line; `hint` says how to get the
    permission (root, a capability, another port)."""
    if isinstance(exc, PermissionError):
        return f"no permission to bind {proto} port {port} on {host}: {hint}"
    if exc.errno == errno.EADDRINUSE:
        return f"{proto} port {port} on {host} is already in use"
    return f"cannot bind {host} {proto} port {port}: {exc.strerror}"
