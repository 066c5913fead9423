"""The off-loop database lane: DHCPv4 and DHCPv6 leases in PostgreSQL, never waited
for in the event loop.

A store whose every call waits for the network (`blocking`, the PostgreSQL stores)
has its packets answered here instead of in the loop: `DbLane.submit(client, job)`
runs `job()` (the engine's `handle(...)` for one datagram) in a bounded pool of
threads, one packet at a time per client (a client's packets keep their order), at
most `per_client` packets waiting per client and `clients` clients waiting in all
(beyond that a packet is dropped: DHCP clients retransmit). A slow or unreachable
database then delays only the clients whose answer needs it, never TFTP, HTTP, the
other protocol or another scope in the same loop.

Group commit: a worker takes every packet that is ready (one per client, up to
`group_size`) and handles them inside one `batch()` transaction of the store, each
inside its own `savepoint()` (a failing statement costs its own packet only); the
replies are delivered, in the loop, only after the group's commit, so every reply
follows the commit of its lease, and under load one commit carries many leases. When
the commit fails, the group's replies are withheld: it costs only the grants it held.
The engine's lease events of a group are held until that commit too (`hold`, through
`ToLoop`): a grant the database refused is never announced. Without load a group is
one packet.

The lane knows nothing of DHCP: which policy runs inside `job` is the engine's
business; it needs only the store's `batch()` and `savepoint()` (`Transactions`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from typing import Generic, Protocol, TypeVar

from ptftpd.dhcp.store import StoreBusy, StoreError, StoreUnavailable
from ptftpd.events import Event, Lease6Event, LeaseEvent

__all__ = ["DbLane", "ToLoop", "Transactions", "hold"]

K = TypeVar("K", bound=Hashable)  # what a client is (v4: its hardware address)
T = TypeVar("T")  # one reply
GROUP = 64  # packets committed together at the most


class Transactions(Protocol):
    """What the lane needs of a store: one transaction for a group of packets, and a
    savepoint per packet inside it."""

    def batch(self) -> AbstractContextManager[object]: ...

    def savepoint(self) -> AbstractContextManager[object]: ...


class _Alone:
    """No transactions of its own (a store whose calls commit themselves)."""

    def batch(self) -> AbstractContextManager[object]:
        return nullcontext()

    def savepoint(self) -> AbstractContextManager[object]:
        return nullcontext()


# A lane thread handling a group holds the engine's events here until the group's
# COMMIT: a lease event of a grant the database refused must not be announced.
_held = threading.local()


def hold(event: Event) -> bool:
    """Keep `event` for after the current group's commit (True), when called from a
    lane thread inside a group; False anywhere else."""
    held: list[Event] | None = getattr(_held, "events", None)
    if held is None:
        return False
    held.append(event)
    return True


def _unrecorded(events: list[Event]) -> list[Event]:
    """A group whose commit failed: what it saw happen, without the grants it made."""
    return [e for e in events if not isinstance(e, LeaseEvent | Lease6Event)]


class ToLoop:
    """An engine's event sink that works from any thread: the events reach `deliver`
    in the event loop, in the order they happened; a lane thread's after its group's
    commit (`DbLane`). Before `start` (tests of the engine) they go straight through."""

    def __init__(self, deliver: Callable[[Event], None]) -> None:
        self.deliver = deliver
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.get_ident()

    def __call__(self, event: Event) -> None:
        if hold(event):
            return
        loop = self._loop
        if loop is None or threading.get_ident() == self._thread:
            self.deliver(event)
        else:
            loop.call_soon_threadsafe(self.deliver, event)


_Result = tuple[list[tuple[K, list[T]]], bool, list[Event]]


class DbLane(Generic[K, T]):
    """Runs jobs (`submit(client, job)`, job() -> replies) off the loop; `deliver`
    gets each job's replies in the loop, `events` the events held until a commit
    (see the module docstring). `name(client)` names a client in a log line."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        workers: int,
        deliver: Callable[[list[T]], None],
        *,
        store: Transactions | None = None,
        per_client: int = 4,
        clients: int = 1024,
        group_size: int = GROUP,
        events: Callable[[Event], None] | None = None,
        log: logging.Logger,
        name: Callable[[K], str] = str,
        threads: str = "dhcp-db",
    ) -> None:
        self.loop = loop
        self.deliver = deliver
        self.store: Transactions = store if store is not None else _Alone()
        self.per_client = per_client
        self.clients = clients
        self.workers = workers
        self.group_size = group_size
        self.events = events  # where held events go after the commit (in the loop)
        self.log = log
        self.name = name
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=threads)
        self.waiting: dict[K, deque[Callable[[], list[T]]]] = {}
        # Appended in the loop, taken in the workers.
        self.ready: deque[tuple[K, Callable[[], list[T]]]] = deque()
        self.running = 0  # workers started (loop thread only)
        self.dropped = 0
        self.commits = 0  # groups committed, and the packets they carried
        self.carried = 0
        self.closed = False

    def submit(self, client: K, job: Callable[[], list[T]]) -> bool:
        """Queue `job` behind `client`'s earlier ones; False when it was dropped."""
        queue = self.waiting.get(client)
        if queue is None:
            if len(self.waiting) >= self.clients:
                return self._drop("too many clients wait for the lease database")
            self.waiting[client] = deque()
            self._start(client, job)
        elif len(queue) >= self.per_client:
            return self._drop("this client's packets wait for the lease database already")
        else:
            queue.append(job)
        return True

    def _drop(self, why: str) -> bool:
        self.dropped += 1
        self.log.debug("packet dropped: %s", why)
        return False

    def _start(self, client: K, job: Callable[[], list[T]]) -> None:
        self.ready.append((client, job))
        self._wake()

    def _wake(self) -> None:
        """One more worker for the ready packets, while fewer than `workers` run."""
        if self.ready and self.running < self.workers:
            self.running += 1
            future = self.pool.submit(self._run_group)
            future.add_done_callback(
                lambda done: self.loop.call_soon_threadsafe(self._finished, done)
            )

    def _run_group(self) -> _Result[K, T]:
        """In a worker: the ready packets, one transaction, their replies after it."""
        taken: list[tuple[K, Callable[[], list[T]]]] = []
        while len(taken) < self.group_size:
            try:
                taken.append(self.ready.popleft())
            except IndexError:
                break
        if not taken:
            return [], False, []
        results: list[tuple[K, list[T]]] = []
        held: list[Event] = []
        _held.events = held
        try:
            with self.store.batch():
                for client, job in taken:
                    results.append((client, self._one(client, job, held)))
        except (StoreUnavailable, StoreBusy) as exc:
            self.log.debug("%d packets unanswered: %s", len(taken), exc)
            return [(client, []) for client, _ in taken], False, _unrecorded(held)
        except StoreError as exc:
            self.log.warning("%d replies withheld: %s", len(taken), exc)
            return [(client, []) for client, _ in taken], False, _unrecorded(held)
        finally:
            _held.events = None
        return results, True, held

    def _one(self, client: K, job: Callable[[], list[T]], held: list[Event]) -> list[T]:
        """One packet in its savepoint. When it fails, what it wrote is undone: the
        lease events it made are dropped from `held` with it."""
        mark = len(held)
        try:
            with self.store.savepoint():
                return job()
        except (StoreUnavailable, StoreBusy) as exc:
            self.log.debug("no reply: %s", exc)  # the store logged the state change once
        except StoreError as exc:
            self.log.warning("no reply to %s: %s", self.name(client) or "?", exc)
        except Exception:  # a bug must cost one packet, never the service
            self.log.exception("internal error handling a packet from %s", self.name(client) or "?")
        held[mark:] = _unrecorded(held[mark:])
        return []

    def _finished(self, done: Future[_Result[K, T]]) -> None:
        self.running -= 1
        if self.closed or done.cancelled():
            return
        try:
            results, committed, held = done.result()
        except Exception:  # the group itself failed unexpectedly (a bug)
            self.log.exception("internal error in a group of packets")
            results, committed, held = [], False, []
        if committed:
            self.commits += 1
            self.carried += len(results)
        if self.events is not None:
            for event in held:
                self.events(event)
        for client, outgoing in results:
            queue = self.waiting.get(client)
            if queue:
                self.ready.append((client, queue.popleft()))
            else:
                self.waiting.pop(client, None)
            self.deliver(outgoing)
        # The clients' next packets, and those that became ready while every worker
        # was busy.
        for _ in range(min(len(self.ready), self.workers - self.running)):
            self._wake()

    def close(self) -> None:
        self.closed = True
        self.waiting.clear()
        self.ready.clear()
        self.pool.shutdown(wait=False, cancel_futures=True)
