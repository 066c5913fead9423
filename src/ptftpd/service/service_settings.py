"""How a server runs as a service, apart from what it serves: one settings object.

The service flags (``--user``, ``--group``, ``--metrics``, ``--drain``, ``-v``/``-D``,
``--workers``) are read from the parsed command line (flags over the ``--config`` file)
once, here; the service runtime and the worker pools take this object, so no argparse
Namespace travels past the command-line modules.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from ptftpd.fields import Field
from ptftpd.values import WORKERS, Seconds

__all__ = ["DEFAULT_DRAIN", "LOG_FIELDS", "SERVICE_FIELDS", "ServiceSettings", "workers_field"]

DEFAULT_DRAIN = 10.0


def metrics_address(text: str) -> tuple[str, int]:
    """``ADDR:PORT`` (``[v6]:PORT`` for IPv6) for ``--metrics``."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or len(port) > 5 or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(
            f"expected ADDR:PORT, e.g. 127.0.0.1:9469, not {text[:60]!r}"
        )
    return host, int(port)


def address_text(value: tuple[str, int]) -> str:
    """``ADDR:PORT`` (``[v6]:PORT``) of a parsed ``--metrics``."""
    host, port = value
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


drain_seconds = Seconds(0, 3600)


def log_target(text: str) -> str:
    if text not in ("stderr", "syslog", "journal"):
        raise argparse.ArgumentTypeError(f"expected stderr, syslog or journal, not {text[:40]!r}")
    return text


# How every server runs, whatever it serves: none of it changes on SIGHUP.
SERVICE_FIELDS = (
    Field(
        "user",
        "after binding every socket as root, run as USER (name or uid) with no capability "
        "left (-u as tftpd-hpa spells it)",
        str,
        short="-u",
        metavar="USER",
        live=False,
        group="service",
    ),
    Field(
        "group",
        "with --user: run with this group (USER's own)",
        str,
        metavar="GROUP",
        live=False,
        group="service",
    ),
    Field(
        "metrics",
        "serve Prometheus metrics at http://ADDR:PORT/metrics",
        metrics_address,
        metavar="ADDR:PORT",
        show=address_text,
        live=False,
        group="service",
    ),
    Field(
        "log-target",
        "where log lines go: stderr (the default; no own timestamps under journald), "
        "syslog (/dev/log) or journal (systemd's native journal socket)",
        log_target,
        default="stderr",
        metavar="TARGET",
        live=False,
        group="service",
    ),
    Field(
        "drain",
        "on SIGTERM, let running transfers finish for up to SECONDS; new requests are "
        f"refused meanwhile ({DEFAULT_DRAIN:g})",
        drain_seconds,
        "number",
        DEFAULT_DRAIN,
        metavar="SECONDS",
        live=False,
        group="service",
    ),
)

LOG_FIELDS = (
    Field("verbose", "log one line per transfer or lease", short="-v", default=False, live=False),
    Field("debug", "log every packet decision", short="-D", default=False, live=False),
)


# The keys of the fields above (and workers): how a server runs, set up once at start.
SERVICE_KEYS = frozenset({f.key for f in (*SERVICE_FIELDS, *LOG_FIELDS)} | {"workers"})


def workers_field(help_text: str, group: str | None = None) -> Field:
    """--workers: its default (one per CPU) comes from the machine, so it is None here."""
    return Field("workers", help_text, WORKERS, "int", metavar="N", live=False, group=group)


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
    log_target: str = "stderr"

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
            log_target=str(getattr(args, "log_target", None) or "stderr"),
        )
