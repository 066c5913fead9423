"""Option negotiation (RFC 2347 framework; blksize 2348, timeout/tsize 2349, windowsize 7440).

Pure policy shared by server and client: the server decides what to grant, the client
checks that an OACK grants only what it asked for and within the ranges it can honour.
"""

from __future__ import annotations

from dataclasses import dataclass

from ptftpd.tftp.errors import UsageError

BLKSIZE_MIN, BLKSIZE_MAX = 8, 65464
TIMEOUT_MIN, TIMEOUT_MAX = 1, 255
WINDOWSIZE_MIN, WINDOWSIZE_MAX = 1, 65535
DEFAULT_BLKSIZE = 512
DEFAULT_TIMEOUT = 1.0
DEFAULT_RETRIES = 5
DEFAULT_WINDOWSIZE_MAX = 64  # what a server grants at most unless told otherwise
MODES = ("octet", "netascii")


class OptionError(ValueError):
    """An OACK the client cannot accept (unrequested option or out-of-range value)."""


@dataclass(frozen=True, slots=True)
class Negotiated:
    """The parameters a transfer runs with, and the OACK that announces them (empty when
    nothing was accepted: then no OACK is sent and RFC 1350 behaviour applies)."""

    blksize: int = DEFAULT_BLKSIZE
    windowsize: int = 1
    timeout: float | None = None
    tsize: int | None = None
    oack: tuple[tuple[str, str], ...] = ()


def _int(value: str) -> int | None:
    try:
        return int(value.strip(), 10)
    except ValueError:
        return None


def negotiate(
    options: tuple[tuple[str, str], ...],
    *,
    is_read: bool,
    file_size: int | None,
    blksize_max: int = BLKSIZE_MAX,
    windowsize_max: int = DEFAULT_WINDOWSIZE_MAX,
) -> Negotiated:
    """Server side. `file_size` is the size to announce for a read request with tsize
    (None when it is unknown, e.g. netascii, then tsize is left out of the OACK);
    larger blksize and windowsize requests are clamped to the maxima, not refused."""
    seen: set[str] = set()
    oack: list[tuple[str, str]] = []
    blksize, windowsize = DEFAULT_BLKSIZE, 1
    timeout: float | None = None
    tsize: int | None = None
    for name, value in options:
        key = name.lower()
        if key in seen:
            continue
        seen.add(key)
        number = _int(value)
        if number is None:
            continue
        if key == "blksize":
            if number < BLKSIZE_MIN:
                continue
            blksize = min(number, BLKSIZE_MAX, blksize_max)
            oack.append((name, str(blksize)))
        elif key == "timeout":
            if TIMEOUT_MIN <= number <= TIMEOUT_MAX:
                timeout = float(number)
                oack.append((name, str(number)))
        elif key == "tsize":
            if number < 0:
                continue
            if is_read:
                if file_size is None:
                    continue
                tsize = file_size
            else:
                tsize = number
            oack.append((name, str(tsize)))
        elif key == "windowsize":
            if number < WINDOWSIZE_MIN:
                continue
            windowsize = min(number, WINDOWSIZE_MAX, windowsize_max)
            oack.append((name, str(windowsize)))
    return Negotiated(blksize, windowsize, timeout, tsize, tuple(oack))


def accept_oack(requested: dict[str, int], granted: tuple[tuple[str, str], ...]) -> Negotiated:
    """Client side: validate an OACK against what was requested.

    `requested` maps lower-case option names to the values sent. The server may lower
    blksize and windowsize but never raise them, must echo timeout unchanged, and may
    not grant anything unrequested.
    """
    blksize, windowsize = DEFAULT_BLKSIZE, 1
    timeout: float | None = None
    tsize: int | None = None
    for name, value in granted:
        key = name.lower()
        if key not in requested:
            raise OptionError(f"server granted option {name!r} that was not requested")
        number = _int(value)
        if number is None:
            raise OptionError(f"server sent a non-numeric value for {name}: {value!r}")
        asked = requested[key]
        if key == "blksize":
            if not BLKSIZE_MIN <= number <= asked:
                raise OptionError(f"server granted blksize {number}, asked for {asked}")
            blksize = number
        elif key == "windowsize":
            if not WINDOWSIZE_MIN <= number <= asked:
                raise OptionError(f"server granted windowsize {number}, asked for {asked}")
            windowsize = number
        elif key == "timeout":
            if number != asked:
                raise OptionError(f"server changed timeout to {number}, asked for {asked}")
            timeout = float(number)
        elif key == "tsize":
            if number < 0:
                raise OptionError(f"server sent a negative tsize {number}")
            tsize = number
    return Negotiated(blksize, windowsize, timeout, tsize, granted)


@dataclass(frozen=True, slots=True)
class TransferOptions:
    """What a client asks for, checked once when built (`UsageError` on a bad value).

    `blksize`/`windowsize` are asked for only when given (a default value given
    explicitly is still asked for: it makes the server answer with an OACK); `tsize`
    asks for (RRQ) or announces (WRQ) the size; `timeout` is the retransmission
    interval, also sent rounded as the RFC 2349 option from 1 s up; `retries` bounds
    the resends of each packet; `rfc1350` asks for no option at all.
    """

    mode: str = "octet"
    blksize: int | None = None
    windowsize: int | None = None
    tsize: bool = False
    timeout: float | None = None
    retries: int = DEFAULT_RETRIES
    rfc1350: bool = False

    def __post_init__(self) -> None:
        mode = self.mode.lower()
        if mode not in MODES:
            raise UsageError(f"unknown mode {self.mode!r}: use octet or netascii")
        object.__setattr__(self, "mode", mode)
        if self.blksize is not None and not BLKSIZE_MIN <= self.blksize <= BLKSIZE_MAX:
            raise UsageError(f"blksize must be {BLKSIZE_MIN}..{BLKSIZE_MAX}, not {self.blksize}")
        if self.windowsize is not None and not (
            WINDOWSIZE_MIN <= self.windowsize <= WINDOWSIZE_MAX
        ):
            raise UsageError(f"windowsize must be {WINDOWSIZE_MIN}..{WINDOWSIZE_MAX}")
        if self.timeout is not None and not 0 < self.timeout <= TIMEOUT_MAX:
            raise UsageError(f"timeout must be more than 0 and at most {TIMEOUT_MAX} seconds")
        if self.retries < 0:
            raise UsageError("retries must not be negative")

    @property
    def interval(self) -> float:
        """Seconds between retransmissions."""
        return self.timeout or DEFAULT_TIMEOUT

    def requested(self, *, is_read: bool, size: int | None) -> dict[str, int]:
        """The options to ask for, in wire order (`size`: the local file's, for a WRQ)."""
        if self.rfc1350:
            return {}
        options: dict[str, int] = {}
        if self.blksize is not None:
            options["blksize"] = self.blksize
        if self.windowsize is not None:
            options["windowsize"] = self.windowsize
        if self.tsize and self.mode == "octet":
            if is_read:
                options["tsize"] = 0
            elif size is not None:
                options["tsize"] = size
        if self.timeout is not None and self.timeout >= TIMEOUT_MIN:
            # RFC 2349 speaks whole seconds; a sub-second timeout stays a local matter.
            options["timeout"] = min(TIMEOUT_MAX, round(self.timeout))
        return options
