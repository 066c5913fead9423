"""The database lane's own rules (dhcp/db_lane.py), with a real event loop and real
threads, jobs that wait on events instead of a database: one packet at a time per
client in arrival order while other clients run, the bounds on what waits, groups of
ready packets in one transaction, and a failing packet costing its own reply and
lease events only. (tests/dhcp_pg/ shows the same with PostgreSQL and real clients.)"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address

from ptftpd.dhcp.balance import Balancer
from ptftpd.dhcp.db_lane import DbLane, ToLoop
from ptftpd.dhcp.lease_store import Lease
from ptftpd.dhcp.shared_expiry import SharedExpiry
from ptftpd.dhcp.store import StoreError
from ptftpd.events import Event, LeaseEvent, LeaseKind, ignore

log = logging.getLogger("test.db_lane")


class Counted:
    """A store's transactions, counted: groups opened and committed, savepoints."""

    def __init__(self) -> None:
        self.groups = 0
        self.savepoints = 0

    @contextmanager
    def batch(self) -> Iterator[None]:
        self.groups += 1
        yield

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        self.savepoints += 1
        yield


def lane(
    deliver: Callable[[list[str]], None], workers: int, **kw: object
) -> DbLane[str, str]:
    return DbLane(asyncio.get_running_loop(), workers, deliver, log=log, **kw)  # type: ignore[arg-type]


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_one_packet_at_a_time_per_client_in_order_while_others_run() -> None:
    async def scenario() -> None:
        replies: list[str] = []
        gate = threading.Event()
        running: list[str] = []
        the_lane = lane(replies.extend, 4)

        def job(name: str, wait: bool = False) -> Callable[[], list[str]]:
            def run() -> list[str]:
                running.append(name)
                if wait:
                    assert gate.wait(5)
                return [name]

            return run

        try:
            the_lane.submit("a", job("a1", wait=True))
            the_lane.submit("a", job("a2"))
            the_lane.submit("a", job("a3"))
            await until(lambda: "a1" in running)
            the_lane.submit("b", job("b1"))
            await until(lambda: replies == ["b1"])  # b is not held up behind a
            assert running == ["a1", "b1"]  # a2 waits for a1, though workers are free
            gate.set()
            await until(lambda: len(replies) == 4)
            assert replies == ["b1", "a1", "a2", "a3"]
            assert the_lane.waiting == {}
        finally:
            gate.set()
            the_lane.close()

    asyncio.run(scenario())


def test_what_waits_is_bounded_per_client_and_in_all() -> None:
    async def scenario() -> None:
        replies: list[str] = []
        gate = threading.Event()
        the_lane = lane(replies.extend, 2, per_client=2, clients=3)

        def blocked(name: str) -> Callable[[], list[str]]:
            return lambda: [name] if gate.wait(5) else []

        try:
            for n in range(5):  # one running, two waiting, two dropped
                the_lane.submit("a", blocked(f"a{n}"))
            the_lane.submit("b", blocked("b0"))
            the_lane.submit("c", blocked("c0"))
            the_lane.submit("d", blocked("d0"))  # a fourth client: dropped
            assert the_lane.dropped == 3
            assert sorted(the_lane.waiting) == ["a", "b", "c"]
            gate.set()
            await until(lambda: len(replies) == 5)
            assert sorted(replies) == ["a0", "a1", "a2", "b0", "c0"]
        finally:
            gate.set()
            the_lane.close()

    asyncio.run(scenario())


def test_ready_packets_go_in_one_group_and_a_failing_one_costs_only_itself() -> None:
    """One worker busy with a first packet; five clients' packets wait, one of which
    fails: when the worker is free they are one group (one transaction, a savepoint
    each); four replies and their lease events, nothing of the failing one's."""

    async def scenario() -> None:
        replies: list[str] = []
        delivered: list[Event] = []
        gate = threading.Event()
        store = Counted()
        the_lane = lane(replies.extend, 1, store=store, events=delivered.append)
        emit = ToLoop(delivered.append)
        emit.start(asyncio.get_running_loop())

        def job(n: int, fail: bool = False) -> Callable[[], list[str]]:
            def run() -> list[str]:
                if n == 0:
                    assert gate.wait(5)
                emit(LeaseEvent(LeaseKind.BOUND, IPv4Address(f"10.0.0.{n}"), f"m{n}", 60.0))
                if fail:
                    raise StoreError("refused")
                return [f"r{n}"]

            return run

        try:
            the_lane.submit("c0", job(0))
            await until(lambda: the_lane.running == 1 and not the_lane.ready)
            for n in range(1, 6):
                the_lane.submit(f"c{n}", job(n, fail=n == 3))
            await asyncio.sleep(0.2)
            assert replies == [] and delivered == []  # held until the group's commit
            gate.set()
            await until(lambda: len(replies) == 5)
            assert replies == ["r0", "r1", "r2", "r4", "r5"]
            assert (the_lane.commits, the_lane.carried) == (2, 6)
            assert (store.groups, store.savepoints) == (2, 6)
            bound = [e.mac for e in delivered if isinstance(e, LeaseEvent)]
            assert bound == ["m0", "m1", "m2", "m4", "m5"]
        finally:
            gate.set()
            the_lane.close()

    asyncio.run(scenario())


class NoRows:
    """A shared store with nothing bound."""

    def ended(self, since: float, now: float) -> tuple[list[Lease], float | None]:
        return [], None


def test_a_sweep_the_full_lane_drops_is_tried_again() -> None:
    """Shared-database expiry (dhcp/shared_expiry.py) sweeps through the lane; when
    the lane is full and drops the sweep, the next one is armed anyway (else lease
    ends would never be announced again)."""

    async def scenario() -> None:
        gate = threading.Event()
        the_lane = lane(lambda replies: None, 1, clients=1)
        sweeps = SharedExpiry(
            NoRows(), Balancer("127.0.0.1"), the_lane, ignore, time.time,
            asyncio.get_running_loop(), cap=0.05,
        )  # fmt: skip
        try:
            assert the_lane.submit("busy", lambda: [str(gate.wait(5))])
            sweeps.start()
            await until(lambda: the_lane.dropped == 1)  # the sweep: no room
            pending = sweeps.pending
            assert pending is not None and pending > time.time() + 1, pending
            assert sweeps.sweeps == 0
        finally:
            gate.set()
            sweeps.close()
            the_lane.close()

    asyncio.run(scenario())
