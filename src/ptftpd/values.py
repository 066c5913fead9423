"""The kinds of value a setting takes, one parser each: a flag and a settings file's key
of the same kind accept and refuse the same text with the same words.

Each parser takes the text and returns the value or raises
`argparse.ArgumentTypeError` with what is wrong (argparse reports it for a flag).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass


def positive_int(text: str) -> int:
    value = _integer(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return value


def port_number(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a UDP port: {value}")
    return value


@dataclass(frozen=True)
class IntRange:
    """An integer `low`..`high` (a flag's type and a settings file's check): bounded
    above too, so that no setting asks for a million workers or endless retries."""

    low: int
    high: int

    def __call__(self, text: str) -> int:
        value = positive_int(text) if self.low > 0 else _integer(text)
        if not self.low <= value <= self.high:
            raise argparse.ArgumentTypeError(f"must be {self.low}..{self.high}, not {value}")
        return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text[:40]!r}") from None


WINDOWSIZE = IntRange(1, 65535)  # RFC 7440
RETRIES = IntRange(1, 1000)
SESSIONS = IntRange(1, 1_000_000)
WORKERS = IntRange(1, 4096)


@dataclass(frozen=True)
class Seconds:
    """A number of seconds `low`..`high` (more than `low` when `open_low`)."""

    low: float
    high: float
    open_low: bool = False

    def __call__(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text[:40]!r}") from None
        above = self.low < value if self.open_low else self.low <= value
        if not (above and value <= self.high):
            if self.open_low:
                what = f"more than {self.low:g} and at most {self.high:g} seconds"
            else:
                what = f"{self.low:g}..{self.high:g} seconds"
            raise argparse.ArgumentTypeError(f"must be {what}, not {text[:40]}")
        return value


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_seconds(text: str) -> int | None:
    """Seconds of a lease time as dnsmasq users write it: ``600``, ``30m``, ``12h``,
    ``7d``, ``1w`` (None when `text` is none of these)."""
    text = text.strip().lower()
    number, unit = (text[:-1], text[-1]) if text[-1:].isalpha() else (text, "")
    if unit not in _DURATION_UNITS or not number.isdigit() or len(number) > 20:
        return None
    return int(number) * _DURATION_UNITS[unit]


def is_duration(value: object) -> bool:
    """A TOML lease time: an integer, or a duration string (``"12h"``)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, str):
        return duration_seconds(value) is not None
    return isinstance(value, int)


def http_url(text: str) -> str:
    """An http:// or https:// URL with a host (an OTLP/HTTP endpoint, pxed --otlp)."""
    from urllib.parse import urlsplit

    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"not an http:// or https:// URL: {text!r}")
    return text.strip()
