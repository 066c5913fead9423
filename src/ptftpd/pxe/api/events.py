"""`GET /v1/events`: boot records as they change, as Server-Sent Events.

The hub watches the timeline driver only while someone subscribes; each batch of
changed attempts is turned into one message per attempt (its JSON view, built once for
every subscriber) and offered to each subscriber whose filter takes it. What waits for
a subscriber is bounded: one message per attempt (a newer record replaces an unsent
one) and `max_bytes` in all; one that does not keep up is dropped (its stream ends;
EventSource reconnects and the page reads `/v1/boots` again), never buffered for. At
most `max_subscribers` streams at once.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ptftpd.pxe.timeline import Attempt
from ptftpd.pxe.timeline_driver import TimelineDriver

__all__ = ["EventHub", "Subscriber", "sse_message"]

KEEPALIVE = b": keep-alive\n\n"
CHUNK = 50  # messages built between two looks at the event loop


def sse_message(event: str, data: object, ident: int | None = None) -> bytes:
    """One SSE message; JSON never holds a raw newline, so `data` is one line."""
    head = f"event: {event}\n" + (f"id: {ident}\n" if ident is not None else "")
    return head.encode() + b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


class Subscriber:
    """One stream's pending messages: at most one per attempt (a newer record of the
    same attempt replaces the one not sent yet), at most `max_bytes` in all."""

    def __init__(
        self, hub: EventHub, accept: Callable[[dict[str, Any]], bool], max_bytes: int
    ) -> None:
        self.hub = hub
        self.accept = accept
        self.max_bytes = max_bytes
        self.queue: dict[tuple[str, int], bytes] = {}
        self.pending = 0  # bytes in `queue`
        self.dropped = False
        self._ready = asyncio.Event()

    def offer(self, message: bytes, view: dict[str, Any]) -> None:
        if self.dropped or not self.accept(view):
            return
        key = (str(view["mac"]), int(view["attempt"]))
        self.pending += len(message) - len(self.queue.get(key, b""))
        self.queue[key] = message
        if self.pending > self.max_bytes:
            self.dropped = True  # too slow: its stream ends
            self.queue.clear()
            self.pending = 0
            self.hub.remove(self)
        self._ready.set()

    async def next(self, keepalive: float) -> bytes | None:
        """The next message, a keep-alive comment after `keepalive` seconds of none,
        or None once dropped."""
        if not self.queue and not self.dropped:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), keepalive)
            except TimeoutError:
                return KEEPALIVE
        if self.dropped:
            return None
        key = next(iter(self.queue))
        message = self.queue.pop(key)
        self.pending -= len(message)
        return message

    def close(self) -> None:
        self.hub.remove(self)


@dataclass(eq=False)
class EventHub:
    """`server`: the name this server's records carry when the API also shows other
    servers' (`GET /v1/boots` then names it in each record: so does the stream)."""

    driver: TimelineDriver
    max_subscribers: int = 16
    max_bytes: int = 4 << 20
    server: str | None = None
    subscribers: list[Subscriber] = field(default_factory=list, init=False)
    _unwatch: Callable[[], None] | None = field(default=None, init=False, repr=False)
    _sent: int = field(default=0, init=False, repr=False)
    # changed, message not built yet
    _waiting: dict[int, Attempt] = field(default_factory=dict, init=False, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    def subscribe(self, accept: Callable[[dict[str, Any]], bool]) -> Subscriber | None:
        """A new subscriber, or None when `max_subscribers` already listen."""
        if len(self.subscribers) >= self.max_subscribers:
            return None
        subscriber = Subscriber(self, accept, self.max_bytes)
        self.subscribers.append(subscriber)
        if self._unwatch is None:
            self._unwatch = self.driver.watch(self._changed)
        return subscriber

    def remove(self, subscriber: Subscriber) -> None:
        if subscriber in self.subscribers:
            self.subscribers.remove(subscriber)
        if not self.subscribers and self._unwatch is not None:
            self._unwatch()
            self._unwatch = None

    def _changed(self, attempts: list[Attempt]) -> None:
        for attempt in attempts:
            self._waiting[id(attempt)] = attempt
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        """Build and offer the waiting attempts' messages, `CHUNK` at a time with the
        loop free between: in a storm a batch is hundreds of attempts, and an attempt
        that changes again meanwhile is built once."""
        try:
            while self._waiting and self.subscribers:
                keys = list(itertools.islice(self._waiting, CHUNK))
                chunk = [self._waiting.pop(key) for key in keys]
                offset = self.driver.offset()
                for attempt in chunk:
                    view = attempt.view(offset)
                    if self.server is not None:
                        view["server"] = self.server
                    self._sent += 1
                    message = sse_message("boot", view, self._sent)
                    for subscriber in list(self.subscribers):
                        subscriber.offer(message, view)
                await asyncio.sleep(0)
        finally:
            self._task = None
            if not self.subscribers:
                self._waiting.clear()
