"""Errors shared by every server of the suite."""

from __future__ import annotations

import errno

# The DHCP servers' `bind_error` hint: they bind privileged ports and add ARP entries.
ROOT_OR_CAPABILITIES = "run as root (or with CAP_NET_BIND_SERVICE and CAP_NET_RAW)"


class ServerStartError(Exception):
    """A start-up problem (address, port, interface, root, store) that a command line
    tool reports as one line and exit status 1."""


def bind_error(exc: OSError, proto: str, host: str, port: int, hint: str) -> str:
    """The one-line reason a server could not bind `proto` (TCP/UDP) `port` on `host`.

    Every server words the same three cases alike (no permission, port taken, anything
    else) and raises its own start-up error with this line; `hint` says how to get
    the permission (root, a capability, another port)."""
    if isinstance(exc, PermissionError):
        return f"no permission to bind {proto} port {port} on {host}: {hint}"
    if exc.errno == errno.EADDRINUSE:
        return f"{proto} port {port} on {host} is already in use"
    return f"cannot bind {host} {proto} port {port}: {exc.strerror}"
