"""sd_notify: tell systemd (``Type=notify``) that the server is ready, reloading or stopping.

The protocol is one datagram of ``KEY=VALUE`` lines to the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (``@name`` is an abstract socket). Without that variable every call is
a no-op, so the servers call these unconditionally. A failed send is never fatal: a
server that cannot reach systemd keeps serving (systemd will then time the start out).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping


def _address(environ: Mapping[str, str]) -> str | None:
    name = environ.get("NOTIFY_SOCKET", "")
    if name.startswith("@"):
        return "\0" + name[1:]
    if name.startswith("/"):
        return name
    return None  # unset, or a transport we do not speak (vsock:)


def notify(*fields: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send `fields` (``"READY=1"``, ``"STATUS=..."``) to systemd; True when sent."""
    address = _address(environ)
    if address is None or not fields:
        return False
    payload = "\n".join(field.replace("\n", " ") for field in fields).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(payload, address)
    except OSError:
        return False
    return True


def ready(status: str | None = None) -> bool:
    """Every socket is bound and privileges are dropped: systemd may start dependants."""
    return notify("READY=1", *([f"STATUS={status}"] if status else []))


def reloading() -> bool:
    """A SIGHUP reload starts (``Type=notify-reload`` needs the monotonic timestamp)."""
    return notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")


def stopping() -> bool:
    """SIGTERM received: the server drains and exits."""
    return notify("STOPPING=1")


def status(text: str) -> bool:
    """A one-line status shown by ``systemctl status``."""
    return notify(f"STATUS={text}")
