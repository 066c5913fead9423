"""Closing what a server holds: every part that was made, in order, one call."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Closable", "close_all"]


class Closable(Protocol):
    def close(self) -> None: ...


def close_all(*parts: Closable | None) -> None:
    """Close each part, in order (None: that part was never made or started)."""
    for part in parts:
        if part is not None:
            part.close()
