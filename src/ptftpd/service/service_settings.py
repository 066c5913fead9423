"""How a server runs as a service, apart from what it serves: one settings object.

The service flags (``--user``, ``--group``, ``--metrics``, ``--drain``, ``-v``/``-D``,
``--workers``) are read from the parsed command line (flags over the ``--config`` file)
once, here; the service runtime and the worker pools take this object, so no argparse
Namespace travels past the command-line modules.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

__all__ = ["DEFAULT_DRAIN", "ServiceSettings"]

DEFAULT_DRAIN = 10.0


def workers_for(value: object) -> int:
    """--workers as given, or (None: not set) one per CPU this process may use: derived
    from the machine, so never written by --print-config."""
    if value is None:
        from ptftpd.service.workers import default_workers

        return default_workers()
    return value if isinstance(value, int) else 1


@dataclass(frozen=True)
class ServiceSettings:
    """`user`/`group`: who the server runs as once every socket is bound (None: stay);
    `metrics`: where Prometheus scrapes it (None: no metrics); `drain`: seconds running
    transfers get after SIGTERM; `verbose`/`debug`: the log level; `workers`: processes
    serving TFTP (1: this process)."""

    user: str | None = None
    group: str | None = None
    metrics: tuple[str, int] | None = None
    drain: float = DEFAULT_DRAIN
    verbose: bool = False
    debug: bool = False
    workers: int = 1

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServiceSettings:
        """The service flags of a parsed command line (a tool without one of them, e.g.
        dhcpd without --workers, gets its default)."""
        return cls(
            user=getattr(args, "user", None),
            group=getattr(args, "group", None),
            metrics=getattr(args, "metrics", None),
            drain=float(getattr(args, "drain", DEFAULT_DRAIN)),
            verbose=bool(getattr(args, "verbose", False)),
            debug=bool(getattr(args, "debug", False)),
            workers=workers_for(getattr(args, "workers", 1)),
        )
