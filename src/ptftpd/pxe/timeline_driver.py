"""pxed's driver of the boot timeline (`ptftpd.pxe.timeline`, issue 23).

The timeline is sans-IO; this is its one thin driver in pxed's event loop:

- `feed(event)` reads the monotonic clock once and hands the event to the timeline. pxed
  calls it from the typed events of `ptftpd.events` (the DHCP engine's messages and
  leases, the proxyDHCP and boot server messages, the TFTP transfers) and the HTTP
  server's `Served` records, always in the loop (the DHCP server moves its database
  threads' events there).
- The stall timer is armed from `Timeline.get_timer()` (no polling). A pending timer is
  never later than needed: every new deadline is `now + stall` or later, so it stands
  until it fires; then `handle_timer` runs and the next one is armed.
- `watch(callback)`: the attempts that changed are handed to every watcher in one batch
  at most `flush_delay` seconds after the change (the API's event stream, retention).
  A watcher runs in the loop and must not block.
- `offset()`: add it to the timeline's monotonic times to get wall-clock seconds
  (`Attempt.view(driver.offset())`); the same value while the clocks agree within a
  second, so the same record reads the same in every answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ptftpd.events import Event
from ptftpd.http import Served
from ptftpd.pxe.timeline import Attempt, Timeline

__all__ = ["TimelineDriver", "Watcher"]

log = logging.getLogger("ptftpd.pxe")

Watcher = Callable[[list[Attempt]], None]


@dataclass(eq=False)
class TimelineDriver:
    timeline: Timeline
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    flush_delay: float = 0.1
    _watchers: list[Watcher] = field(default_factory=list, init=False, repr=False)
    _timer: asyncio.TimerHandle | None = field(default=None, init=False, repr=False)
    _flush: asyncio.TimerHandle | None = field(default=None, init=False, repr=False)
    _offset: float | None = field(default=None, init=False, repr=False)

    def feed(self, event: Event | Served) -> None:
        """One event as it happened (in the loop, or without one in tests)."""
        self.timeline.feed(event, self.clock())
        self._arm()
        self._schedule_flush()

    def offset(self) -> float:
        """Seconds to add to a timeline time to get wall-clock (epoch) seconds. Kept
        while the clocks agree within a second, so a record reads the same every time;
        a stepped wall clock is followed."""
        now = self.wall() - self.clock()
        if self._offset is None or abs(now - self._offset) > 1.0:
            self._offset = now
        return self._offset

    def watch(self, watcher: Watcher) -> Callable[[], None]:
        """Call `watcher` with each batch of changed attempts; returns the unwatch."""
        if not self._watchers:
            self.timeline.take_changed()  # nobody heard of those: start afresh
        self._watchers.append(watcher)
        return lambda: self.unwatch(watcher)

    def unwatch(self, watcher: Watcher) -> None:
        """Stop calling `watcher` (nothing when it does not watch)."""
        if watcher in self._watchers:
            self._watchers.remove(watcher)

    def _loop(self) -> asyncio.AbstractEventLoop | None:
        try:
            return asyncio.get_running_loop()
        except RuntimeError:  # fed without a loop (tests): nothing to wake
            return None

    def _arm(self) -> None:
        if self._timer is not None:
            return
        deadline = self.timeline.get_timer()
        loop = self._loop()
        if deadline is None or loop is None:
            return
        delay = max(0.0, deadline - self.clock())
        self._timer = loop.call_at(loop.time() + delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.timeline.handle_timer(self.clock())
        self._arm()
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush is not None or not self._watchers:
            return
        loop = self._loop()
        if loop is not None:
            self._flush = loop.call_later(self.flush_delay, self._tell)

    def flush(self) -> None:
        """Tell the watchers of what changed now, not after `flush_delay` (a stop)."""
        if self._flush is not None:
            self._flush.cancel()
        self._tell()

    def _tell(self) -> None:
        self._flush = None
        changed = self.timeline.take_changed()
        if not changed:
            return
        for watcher in list(self._watchers):
            try:
                watcher(changed)
            except Exception:  # a watcher's bug must not stop the timeline
                log.exception("boot timeline watcher failed")

    def close(self) -> None:
        for handle in (self._timer, self._flush):
            if handle is not None:
                handle.cancel()
        self._timer = self._flush = None
