"""Logging set-up shared by every tool, so `-v` and `-D` mean the same everywhere."""

from __future__ import annotations

import logging
import sys


def setup_logging(verbose: bool = False, debug: bool = False) -> None:
    """Warnings by default, one line per transfer or lease with `-v`, packets with `-D`."""
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    root = logging.getLogger("ptftpd")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


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
