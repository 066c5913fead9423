"""Logging set-up shared by every tool, so `-v` and `-D` mean the same everywhere."""

from __future__ import annotations

import logging
import sys

_FORMAT = "%(asctime)s {tag}%(name)s %(levelname)s: %(message)s"


def setup_logging(verbose: bool = False, debug: bool = False) -> None:
    """Warnings by default, one line per transfer or lease with `-v`, packets with `-D`."""
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT.format(tag="")))
    root = logging.getLogger("ptftpd")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def tag_lines(tag: str) -> None:
    """Name this process in each of its lines (a --workers child: "worker 1"), so the
    one log stream the workers share still says who served what."""
    for handler in logging.getLogger("ptftpd").handlers:
        handler.setFormatter(logging.Formatter(_FORMAT.format(tag=f"[{tag}] ")))


def format_rate(nbytes: int, seconds: float) -> str:
    """Human rate for the per-transfer log line; loopback transfers can take ~0 s."""
    if seconds <= 0:
        seconds = 1e-6
    rate = nbytes / seconds
    for unit in ("B/s", "KiB/s", "MiB/s", "GiB/s"):
        if rate < 1024 or unit == "GiB/s":
            return f"{rate:.1f} {unit}"
        rate /= 1024
    raise AssertionError("unreachable")
