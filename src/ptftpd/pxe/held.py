"""Requests pxed holds while a machine's boot decision is asked for (``--boot-api``).

A machine whose decision API has not answered yet gets no reply (`ptftpd.dhcp.engine.
WAIT`); its request is kept here, one per machine (the newest: a retransmission
replaces it), at most `MAX_HELD` in all (made-up MACs cannot grow it: beyond, a request
is not held and the machine's retransmission asks again). The driver takes a machine's
request back when its decision comes (`take`) and feeds it to the engine again, or at
its deadline (`due`: the engine then answers with the cache or the default); either
way a request is fed once and is gone. Pure: `now` in, no clock, no timers.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["MAX_HELD", "HeldRequests"]

MAX_HELD = 1024  # requests held at once (as many as API requests out, bootapi.MAX_IN_FLIGHT)

T = TypeVar("T")


class HeldRequests(Generic[T]):
    """mac -> (request, deadline); see the module docstring."""

    def __init__(self, limit: int = MAX_HELD) -> None:
        self.limit = limit
        self.items: dict[str, tuple[T, float]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def hold(self, mac: str, request: T, until: float) -> bool:
        """Keep `request` until `until` (replacing the machine's older one); False when
        `limit` requests of other machines are held already."""
        if mac not in self.items and len(self.items) >= self.limit:
            return False
        self.items[mac] = (request, until)
        return True

    def take(self, mac: str) -> T | None:
        """The machine's held request (its decision came), gone from here."""
        found = self.items.pop(mac, None)
        return None if found is None else found[0]

    def due(self, now: float) -> list[T]:
        """The requests whose deadline has come, gone from here."""
        macs = [mac for mac, (_, until) in self.items.items() if until <= now]
        return [self.items.pop(mac)[0] for mac in macs]

    def next_deadline(self) -> float | None:
        return min((until for _, until in self.items.values()), default=None)
