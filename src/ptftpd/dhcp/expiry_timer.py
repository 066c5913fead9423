"""The asyncio side of the lease core's "lease expired" event (`events.LeaseExpiry`).

`ExpiryTimer` keeps one loop timer at the watch's `next_deadline()`: the DHCPv4 and
DHCPv6 drivers call `arm()` after the lease events of a burst have passed through the
watch; when the timer fires, the watch emits its EXPIRED events for `clock()` and the
timer is armed again for the next binding's end. Nothing polls: with no live binding
no timer is pending. `clock` is wall time (the engines' `now`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ptftpd.events import LeaseExpiry

__all__ = ["ExpiryTimer"]


class ExpiryTimer:
    def __init__(self, watch: LeaseExpiry, clock: Callable[[], float]) -> None:
        self.watch = watch
        self.clock = clock
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for: float | None = None

    @property
    def pending(self) -> float | None:
        """The deadline the timer waits for (None: no timer)."""
        return self._armed_for

    def arm(self) -> None:
        """(Re)arm the timer at the watch's next deadline; a no-op when it stands."""
        deadline = self.watch.next_deadline()
        if deadline == self._armed_for:
            return
        self.close()
        if deadline is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside a loop (tests of the engine): no timer
            return
        self._armed_for = deadline
        self._timer = loop.call_later(max(0.0, deadline - self.clock()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._armed_for = None
        self.watch.expire(self.clock())
        self.arm()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._armed_for = None
