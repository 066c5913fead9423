"""The event-loop side of requests pxed holds while a machine's decision is asked for
(``--boot-api``): where they wait (`held.HeldRequests`, pure), the timer for the next
deadline, and the hops from the threads that answer DHCP (PostgreSQL leases are
answered in threads) into the loop.

Three sources hold a request: the DHCPv4 engine (its `on_wait`, after the boot policy
said WAIT in the same thread), the DHCPv6 engine (the same, with `Pxe6Policy`) and the
proxyDHCP / 4011 responder (in the loop). Each request is kept under its family's key
for its machine (`MAC`, `v6 MAC`, `proxy MAC`) and fed again once: when the machine's
API answer comes (`wake`) or at its deadline (the engine then answers with the cache or
the default).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Collection

from ptftpd.pxe.held import HeldRequests

__all__ = ["HeldDriver"]

log = logging.getLogger("ptftpd.pxe")

Feed = Callable[[], None]
FAMILIES = ("", "v6 ", "proxy ")  # the key prefixes of `HeldDriver.hold`


class HeldDriver:
    """Held requests with their timer. `deadline()` is how long a request waits when its
    policy named no deadline; `inflight()` the MACs whose API answer is still out (None
    without an API); `in_loop` runs a step in the event loop from any thread."""

    def __init__(
        self,
        deadline: Callable[[], float],
        inflight: Callable[[], Collection[str] | None],
        in_loop: Callable[[Feed], None],
    ) -> None:
        self.held: HeldRequests[Feed] = HeldRequests()
        self._deadline = deadline
        self._inflight = inflight
        self._in_loop = in_loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        # (mac, deadline) from a boot policy to the engine's on_wait that follows in the
        # same thread, per family: one slot per thread (a WAIT no on_wait follows keeps
        # nothing, so made-up MACs cannot grow it).
        self._slots = threading.local()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def policy_waits(self, family: str, mac: str, until: float) -> None:
        """A boot policy said WAIT for `mac` until `until` (any thread)."""
        setattr(self._slots, family, (mac, until))

    def _claim(self, family: str) -> tuple[str, float] | None:
        found: tuple[str, float] | None = getattr(self._slots, family, None)
        setattr(self._slots, family, None)
        return found

    def engine_held4(self, mac: str, feed: Feed) -> None:
        """The DHCPv4 engine held `mac`'s request (any thread)."""
        found = self._claim("v4")
        until = found[1] if found is not None and found[0] == mac else None
        self._in_loop(lambda: self.hold("", mac, feed, until))

    def engine_held6(self, feed: Feed) -> None:
        """The DHCPv6 engine held the message its policy just said WAIT to (any thread)."""
        found = self._claim("v6")
        if found is not None:
            mac, until = found
            self._in_loop(lambda: self.hold("v6 ", mac, feed, until))

    def hold(self, family: str, mac: str, feed: Feed, until: float | None) -> None:
        """Keep `feed` (the held request fed again) for `mac` in `family` until its
        decision comes or `until` (in the loop)."""
        now = time.monotonic()
        inflight = self._inflight()
        if until is None or inflight is None:
            until = now + self._deadline()
        elif mac not in inflight:  # decided meanwhile (a database thread)
            feed()
            return
        if not self.held.hold(family + mac, feed, until):
            log.debug("%s: %d requests held already; its retransmission asks again",
                      mac, len(self.held))  # fmt: skip
            return
        self._arm()

    def wake(self, mac: str) -> None:
        """`mac`'s decision came: its held requests are answered now."""
        for family in FAMILIES:
            feed = self.held.take(family + mac)
            if feed is not None:
                feed()

    def _arm(self) -> None:
        """Wake up at the next held request's deadline."""
        deadline = self.held.next_deadline()
        timer = self._timer
        if timer is not None:
            if deadline is not None and self._timer_at <= deadline:
                return
            timer.cancel()
            self._timer = None
        if deadline is None or self._loop is None:
            return
        self._timer_at = deadline
        delay = max(0.0, deadline - time.monotonic()) + 0.001  # past it, not just before
        self._timer = self._loop.call_later(delay, self._due)

    def _due(self) -> None:
        """The API did not answer in time: the held requests get the cache or default."""
        self._timer = None
        for feed in self.held.due(time.monotonic()):
            feed()
        self._arm()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
