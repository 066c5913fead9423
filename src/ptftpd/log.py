"""Logging set-up shared by every tool, so `-v` and `-D` mean the same everywhere."""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import sys

_FORMAT = "%(asctime)s {tag}%(name)s %(levelname)s: %(message)s"
# journald and syslog stamp each line themselves: no own timestamp there
_BARE_FORMAT = "{tag}%(name)s %(levelname)s: %(message)s"

LOG_TARGETS = ("stderr", "syslog", "journal")
# Where syslog and journald listen; tests point these at sockets they bind themselves.
SYSLOG_SOCKET = os.environ.get("PTFTPD_SYSLOG_SOCKET", "/dev/log")
JOURNAL_SOCKET = os.environ.get("PTFTPD_JOURNAL_SOCKET", "/run/systemd/journal/socket")
_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


class JournalHandler(logging.Handler):
    """systemd's native journal protocol: one datagram of KEY=value lines per record."""

    def __init__(self, path: str, identifier: str) -> None:
        super().__init__()
        self.path = path
        self.identifier = identifier
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record).replace("\n", " ")
            fields = (
                f"MESSAGE={message}\nPRIORITY={_PRIORITY.get(record.levelname, 6)}\n"
                f"SYSLOG_IDENTIFIER={self.identifier}\nLOGGER={record.name}\n"
            )
            self.sock.sendto(fields.encode("utf-8", "replace"), self.path)
        except OSError:
            self.handleError(record)

    def close(self) -> None:
        self.sock.close()
        super().close()


def under_journald() -> bool:
    """Standard error goes to the journal (systemd sets $JOURNAL_STREAM)."""
    return bool(os.environ.get("JOURNAL_STREAM"))


def setup_logging(
    verbose: bool = False, debug: bool = False, target: str = "stderr", identifier: str = "ptftpd"
) -> None:
    """Warnings by default, one line per transfer or lease with `-v`, packets with `-D`;
    to standard error (no own timestamp under journald), syslog (/dev/log) or the journal
    (its native socket). An unreachable syslog or journal socket is an `OSError`."""
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    handler: logging.Handler
    if target == "journal":
        if not os.path.exists(JOURNAL_SOCKET):
            raise OSError(f"no journal socket at {JOURNAL_SOCKET}")
        handler = JournalHandler(JOURNAL_SOCKET, identifier)
        handler.setFormatter(logging.Formatter(_BARE_FORMAT.format(tag="")))
    elif target == "syslog":
        handler = logging.handlers.SysLogHandler(address=SYSLOG_SOCKET)
        handler.setFormatter(logging.Formatter(f"{identifier}: " + _BARE_FORMAT.format(tag="")))
    else:
        handler = logging.StreamHandler(sys.stderr)
        bare = under_journald()
        handler.setFormatter(logging.Formatter((_BARE_FORMAT if bare else _FORMAT).format(tag="")))
    root = logging.getLogger("ptftpd")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def tag_lines(tag: str) -> None:
    """Name this process in each of its lines (a --workers child: "worker 1"), so the
    one log stream the workers share still says who served what."""
    for handler in logging.getLogger("ptftpd").handlers:
        stamped = isinstance(handler, logging.StreamHandler) and not under_journald()
        fmt = _FORMAT if stamped else _BARE_FORMAT
        if isinstance(handler, logging.handlers.SysLogHandler):
            fmt = "ptftpd: " + fmt
        handler.setFormatter(logging.Formatter(fmt.format(tag=f"[{tag}] ")))


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


class OncePerKey:
    """Which keys (a client's MAC) to log now: each at most once per `interval` seconds
    of the caller's clock, so `-v` names every ignored client without a line per packet.

    Hostile input is normal input: at most `capacity` keys are remembered (each forgotten
    `interval` after it was logged); while the memory is full, further keys are counted,
    not logged, and `unlogged(now)` hands that count out at most once per interval, for
    one summary line. Memory and time per call are bounded (amortised O(1))."""

    def __init__(self, interval: float = 60.0, capacity: int = 1024) -> None:
        self.interval = interval
        self.capacity = capacity
        self._seen: dict[str, float] = {}  # key -> when logged, oldest first
        self._unlogged = 0
        self._told: float | None = None

    def admit(self, key: str, now: float) -> bool:
        """True: log `key` now (and not again for `interval` seconds)."""
        self._expire(now)
        if key in self._seen:
            return False
        if len(self._seen) >= self.capacity:
            self._unlogged += 1
            return False
        self._seen[key] = now
        return True

    def unlogged(self, now: float) -> int:
        """How many were not logged because the memory was full (then 0 for `interval`)."""
        if not self._unlogged or (self._told is not None and now - self._told < self.interval):
            return 0
        count, self._unlogged, self._told = self._unlogged, 0, now
        return count

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now: float) -> None:
        horizon = now - self.interval
        seen = self._seen
        while seen:
            oldest = next(iter(seen))
            if seen[oldest] > horizon:
                return
            del seen[oldest]


class Outage:
    """Something pxed depends on that can fail and recover (a database, a collector):
    one warning when it starts failing, one when it works again, nothing in between."""

    def __init__(self, logger: logging.Logger, down: str, back: str) -> None:
        self.logger = logger
        self.down = down  # "boot records not saved": the line says why after it
        self.back = back
        self.failing = False

    def failed(self, why: object) -> None:
        if not self.failing:
            self.logger.warning("%s: %s", self.down, why)
        self.failing = True

    def worked(self) -> None:
        if self.failing:
            self.logger.warning("%s", self.back)
        self.failing = False


def say_ignored(
    logger: logging.Logger, seen: OncePerKey, now: float, what: str, mac: str, why: str
) -> None:
    """A DHCP client we do not answer, and why: an info line once per MAC per
    `seen.interval` (memory bounded by `seen`), a debug line every time; when too many
    clients were ignored to name each, one summary line per interval."""
    if not logger.isEnabledFor(logging.INFO):
        return
    if seen.admit(mac, now):
        logger.info("ignoring %s from %s: %s; said once a minute per client", what, mac, why)
    else:
        logger.debug("ignore %s from %s: %s", what, mac, why)
    more = seen.unlogged(now)
    if more:
        logger.info(
            "ignored %d more requests from clients not named one by one "
            "(over %d ignored clients this minute)",
            more,
            seen.capacity,
        )
