"""Run one `TftpServer` in N worker processes: every core serves transfers.

Python runs one core per process, and a boot storm is hundreds of lock-step transfers
at once, so ptftpd forks workers. Each worker owns a request socket bound to the same
address and port with SO_REUSEPORT (the kernel spreads the requests by client address
and port, so a client's resent request reaches the worker already serving it) and
the transfers it accepts. The parent only supervises: it binds every socket before
forking (so a bad address is one error line, once), restarts a worker that dies,
forwards SIGTERM/SIGINT (as SIGTERM; a second one as `END_NOW`: end the transfers at
once) and SIGHUP, and sums the workers' counters. Workers write to the parent's
stderr: one log stream. A worker ignores SIGINT (Ctrl-C reaches a terminal's whole
process group; the parent forwards it once) and holds SIGTERM, SIGHUP and `END_NOW`
blocked until its server is serving.

The parent knows when its workers serve: each copies the parent's generation number
from the shared map into its own slot once it serves (at start) and after each reload,
so `await_workers` can wait for "every worker serves the newest settings" before
systemd hears READY=1.

A second, unrelated ptftpd must not join the SO_REUSEPORT group of a running one (it
would silently take a share of the requests): the parent holds an exclusive flock on
a file named after the address and port from before it binds until it exits, and
removes the file then (`ptftpd.service.address_lock`: how, safely).

The session limit holds across workers: each worker's active transfers, finished
transfers, failures and bytes live in one shared memory map; a new transfer is
admitted under a POSIX record lock on that map's file (per process, released by the
kernel if a worker dies holding it) when the sum of the active counts is below the
limit. The parent zeroes a dead worker's active count before it restarts it.

Reuse: `pool = TftpWorkers(config, hosts, port, n)`; `pool.open()` (binds, raises
`StartError`); then either `pool.spawn()` and `pool.run()` before any event loop
runs (blocking supervision with sigwait, returns the exit status: ptftpd), or, from a
running event loop whose process does other work (pxed), `pool.spawn_in(loop)` (SIGCHLD
through `loop.add_signal_handler` -> `reap`), `await pool.await_serving()`,
`pool.begin_stop()` and `pool.stop()` at the end (a bounded wait, no sigwait). A worker
forked while the parent's loop runs inherits that loop and its signal wakeup fd:
`_worker` forgets both before its own loop starts. A subclass changes
what a worker runs (`serve`) and how the parent reacts (`hangup`, `stop`,
`worker_ended`): `ptftpd.service.tftp_pool` (ptftpd) and `ptftpd.service.pxe_pool`
(pxed) add the service life cycle that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence

from ptftpd.errors import StartError
from ptftpd.log import tag_lines
from ptftpd.service import runtime
from ptftpd.service.address_lock import AddressLock, lock_address, lock_path
from ptftpd.service.shared_counters import SharedCounters, WorkerGate
from ptftpd.tftp.driver import clock, listening_socket
from ptftpd.tftp.server import ServerConfig, TftpServer

__all__ = [
    "SharedCounters",
    "TftpWorkers",
    "WorkerGate",
    "default_workers",
    "lock_address",
    "lock_path",
]

log = logging.getLogger("ptftpd.service.workers")
service_log = logging.getLogger("ptftpd.service")  # the service's own lines (reloaded)

_PR_SET_PDEATHSIG = 1
_QUICK_DEATH = 2.0  # a worker dying this soon after its start...
_QUICK_DEATHS_MAX = 5  # ...this many times in a row means it cannot run: give up
_STOP_WAIT = 10.0  # after the drain time: then SIGKILL
_READY_WAIT = 30.0  # workers answering a start or reload (a loaded machine is slow)


def default_workers() -> int:
    """One worker per CPU this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _die_with_parent() -> None:
    """A worker must not outlive a parent killed with SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class TftpWorkers:
    """N worker processes serving `config` on `hosts`:`port` (see the module doc).

    `drain`: how long a stopping worker may take (its running transfers) before the
    parent kills it; the parent waits that long plus a margin."""

    _SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    # The parent's order to end transfers now (a second stop signal): a signal of its
    # own, so it cannot merge with a still-pending first SIGTERM. Blocked in the parent
    # too, so a worker is born with it blocked.
    END_NOW = signal.SIGUSR1
    _BLOCKED = (*_SIGNALS, END_NOW)
    _HELD = (signal.SIGTERM, signal.SIGHUP, END_NOW)  # in a worker, until it serves

    def __init__(
        self,
        config: ServerConfig,
        hosts: Sequence[str],
        port: int,
        workers: int,
        *,
        drain: float = 0.0,
    ) -> None:
        self.config = config
        self.hosts = list(hosts)
        self.port = port
        self.workers = max(1, workers)
        self.drain = drain
        self.counters = SharedCounters(self.workers, config.max_sessions)
        self.sockets: list[list[socket.socket]] = []  # [worker][host]
        self.pids: dict[int, int] = {}  # pid -> worker index
        self.started: dict[int, float] = {}  # worker index -> start time
        self.stopping = False
        self._locks: list[AddressLock] = []
        self._quick_deaths = 0
        self._blocked = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.failed: str | None = None

    # -- set-up (parent, before any event loop) -----------------------------------------
    def open(self) -> None:
        """Lock each address, bind one SO_REUSEPORT socket per worker and address."""
        per_host: list[list[socket.socket]] = []
        try:
            for host in self.hosts:
                if self.port:
                    self._locks.append(lock_address(host, self.port))
                first = listening_socket(host, self.port, reuse_port=True)
                group = [first]
                per_host.append(group)
                port = int(first.getsockname()[1])
                if not self.port:
                    self._locks.append(lock_address(host, port))
                for _ in range(self.workers - 1):
                    group.append(listening_socket(host, port, reuse_port=True))
        except StartError:
            for group in per_host:
                for sock in group:
                    sock.close()
            self._unlock()
            raise
        self.sockets = [[group[i] for group in per_host] for i in range(self.workers)]

    def bound(self) -> list[tuple[str, int]]:
        return [(str(s.getsockname()[0]), int(s.getsockname()[1])) for s in self.sockets[0]]

    def spawn(self) -> None:
        """Start every worker (SIGCHLD and the stop signals are blocked in the parent
        from here on: `run` takes them with sigwait)."""
        signal.pthread_sigmask(signal.SIG_BLOCK, self._BLOCKED)
        self._blocked = True
        for index in range(self.workers):
            self._start(index)

    def spawn_in(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start every worker from a running event loop, which reaps them (SIGCHLD)."""
        self._loop = loop
        loop.add_signal_handler(signal.SIGCHLD, self.reap)
        for index in range(self.workers):
            self._start(index)

    async def await_serving(
        self, generation: int | None = None, timeout: float = _READY_WAIT
    ) -> bool:
        """`await_workers` for a parent running an event loop (its SIGCHLD handler
        restarts dead workers meanwhile)."""
        target = self.counters.generation if generation is None else generation
        end = clock() + timeout
        while not self.stopping and clock() < end:
            if all(self.counters.serves(i, target) for i in self.pids.values()):
                return True
            await asyncio.sleep(0.02)
        return False

    def begin_stop(self) -> None:
        """SIGTERM every worker (each drains its transfers); `stop` waits for them."""
        if not self.stopping:
            self.stopping = True
            self._forward(signal.SIGTERM)

    def _start(self, index: int) -> None:
        self.counters.forget_active(index)  # not serving until it says so
        if not self._blocked:
            # A worker is born with the stop signals blocked (see the module doc); in
            # an event-loop parent only for the fork itself.
            old = signal.pthread_sigmask(signal.SIG_BLOCK, self._BLOCKED)
            pid = -1
            try:
                pid = os.fork()
            finally:
                if pid != 0:
                    signal.pthread_sigmask(signal.SIG_SETMASK, old)
        else:
            pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                code = self._worker(index)
            except BaseException:  # never return into the parent's code
                log.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        self.pids[pid] = index
        self.started[index] = clock()
        log.debug("worker %d started (pid %d)", index, pid)

    # -- supervision (parent) ---------------------------------------------------------
    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT; 0 on a clean stop, 1 if workers cannot run."""
        try:
            while self.pids:
                sig = signal.sigwait(self._SIGNALS)
                if sig == signal.SIGCHLD:
                    self.reap()
                elif sig == signal.SIGHUP:
                    self.hangup()
                else:
                    self.stop()
        finally:
            self.stop()
        return 1 if self.failed else 0

    def await_workers(self, generation: int | None = None, timeout: float = _READY_WAIT) -> bool:
        """Wait (bounded, restarting dead workers meanwhile) until every worker serves
        `generation` (default: the newest); False if some did not in time."""
        target = self.counters.generation if generation is None else generation
        end = clock() + timeout
        while not self.stopping:
            if all(self.counters.serves(i, target) for i in self.pids.values()):
                return True
            left = end - clock()
            if left <= 0:
                return False
            if signal.sigtimedwait((signal.SIGCHLD,), min(left, 0.02)) is not None:
                self.reap()
        return False

    def hangup(self) -> None:
        """SIGHUP: every worker reloads (the default `serve` reloads nothing)."""
        generation = self.counters.new_generation()
        self._forward(signal.SIGHUP)
        if not self.await_workers(generation):
            log.warning("not every worker answered the reload in time")
        self.log_totals("status")

    def worker_ended(self, pid: int) -> None:
        """Hook: worker `pid` is gone (reaped), whether it is restarted or not."""

    def reap(self) -> None:
        """Collect dead workers; restart them unless stopping (or dying in a loop)."""
        while self.pids:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            index = self.pids.pop(pid, None)
            if index is None:
                continue
            self.counters.forget_active(index)
            self.worker_ended(pid)
            if self.stopping:
                # Its sockets leave the SO_REUSEPORT group, so requests reach a worker
                # still draining (which refuses them) instead of an unread queue.
                for sock in self.sockets[index] if self.sockets else ():
                    sock.close()
                continue
            how = (
                f"signal {os.WTERMSIG(status)}"
                if os.WIFSIGNALED(status)
                else f"status {os.waitstatus_to_exitcode(status)}"
            )
            quick = clock() - self.started.get(index, 0.0) < _QUICK_DEATH
            self._quick_deaths = self._quick_deaths + 1 if quick else 0
            if self._quick_deaths >= _QUICK_DEATHS_MAX:
                self.failed = f"workers keep dying at start (last: {how})"
                log.error("%s: giving up", self.failed)
                self.stop()
                return
            log.warning("worker %d (pid %d) ended with %s: restarting it", index, pid, how)
            self._start(index)

    def _forward(self, sig: int) -> None:
        for pid in list(self.pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def stop(self) -> None:
        """SIGTERM every worker and wait for them to drain (up to `drain` plus a margin;
        a second SIGTERM/SIGINT is forwarded: they end their transfers now), then
        SIGKILL what is left."""
        self.begin_stop()
        began = clock()
        draining = bool(self.pids)  # a second call (cleanup) has nothing left to say
        if draining:
            log.info("stopping: %d worker(s) draining their transfers for up to %g s",
                     len(self.pids), self.drain)  # fmt: skip
        end = began + self.drain + _STOP_WAIT
        if self._loop is not None:
            self._loop.remove_signal_handler(signal.SIGCHLD)
            self._loop = None
            self._wait_polling(end)
        while self.pids and self._blocked:
            left = end - clock()
            if left <= 0:
                log.warning("%d worker(s) still running after %.0f s: killing them",
                            len(self.pids), self.drain + _STOP_WAIT)  # fmt: skip
                break
            info = signal.sigtimedwait(self._SIGNALS, min(left, 1.0))
            if info is None or info.si_signo == signal.SIGHUP:
                continue
            if info.si_signo == signal.SIGCHLD:
                self.reap()
            else:
                log.warning("second stop signal: ending running transfers now")
                self._forward(self.END_NOW)
        self._forward(signal.SIGKILL)
        for pid in list(self.pids):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            self.worker_ended(pid)
        self.pids.clear()
        if draining:
            log.info("drained: every worker ended in %.1f s", clock() - began)
        if self.sockets:
            self.log_totals("stopped")
            for group in self.sockets:
                for sock in group:
                    sock.close()
            self.sockets = []
        self._unlock()
        if self._blocked:
            # Signals still pending (a late SIGTERM) must not kill the process once
            # unblocked: their default action is to terminate.
            while signal.sigtimedwait(self._BLOCKED, 0) is not None:
                pass
            signal.pthread_sigmask(signal.SIG_UNBLOCK, self._BLOCKED)
            self._blocked = False

    def _wait_polling(self, end: float) -> None:
        """`stop` without sigwait (an event-loop parent): poll the workers' exits."""
        while self.pids and clock() < end:
            self.reap()
            if self.pids:
                time.sleep(0.02)
        if self.pids:
            log.warning("%d worker(s) still running after %.0f s: killing them",
                        len(self.pids), self.drain + _STOP_WAIT)  # fmt: skip

    def serving_count(self, generation: int | None = None) -> int:
        """How many running workers serve `generation` (default: the newest)."""
        target = self.counters.generation if generation is None else generation
        return sum(1 for i in self.pids.values() if self.counters.serves(i, target))

    def how_many(self, serving: int) -> str:
        """The words for `serving` workers: "N workers", or "K of N workers"."""
        if serving == self.workers:
            return f"{self.workers} workers"
        return f"{serving} of {self.workers} workers"

    def announce_serving(self) -> None:
        """The parent's one "serving" line per address (each worker's is debug), with
        how many workers said they serve."""
        workers = self.how_many(self.serving_count())
        root = os.path.realpath(self.config.root)
        for host, port in self.bound():
            log.info("serving %s on %s port %d (%s)", root, host, port, workers)

    def announce_reloaded(self, summary: str, generation: int) -> None:
        """The parent's one "reloaded" line (each worker's is debug), said once the
        workers applied reload `generation` or the wait for them ended: how many did
        (ptftpd --workers and pxed --workers both say it here)."""
        serving = self.serving_count(generation)
        if serving == self.workers:
            service_log.info("reloaded: %s (%s)", summary, self.how_many(serving))
        else:
            service_log.warning("reloaded: %s; not every worker answered in time (%s)",
                                summary, self.how_many(serving))  # fmt: skip

    def log_totals(self, when: str) -> None:
        active, finished, failed, sent = self.counters.totals()
        log.info(
            "%d workers %s: %d transfers (%d failed), %d bytes, %d active",
            self.workers,
            when,
            finished,
            failed,
            sent,
            active,
        )

    def _unlock(self) -> None:
        """Remove the lock files (after every socket is closed): the port is free."""
        for lock in self._locks:
            lock.release()
        self._locks = []

    # -- a worker ---------------------------------------------------------------------
    def _worker(self, index: int) -> int:
        # Forked from a running event loop (pxed): that loop is not this process's.
        # asyncio already ignores a running loop recorded by another pid; forget it all
        # the same, and the signal wakeup fd (the parent's self-pipe: a signal handled
        # here before our own loop sets its own would wake the parent). Never touch or
        # close the parent's loop: its epoll set is shared with the parent.
        asyncio.events._set_running_loop(None)
        signal.set_wakeup_fd(-1)
        self._loop = None
        _die_with_parent()
        tag_lines(f"worker {index}")
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards Ctrl-C
        for sig in (signal.SIGCHLD, *self._HELD):
            signal.signal(sig, signal.SIG_DFL)
        # SIGTERM and SIGHUP stay blocked (pending) until `serving`: their default
        # action would end a worker still starting.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGCHLD, signal.SIGINT))
        self._blocked = False
        for lock in self._locks:
            lock.forget()  # the lock stays the parent's alone (never removed here)
        self._locks = []
        self.pids = {}
        mine = self.sockets[index]
        for i, group in enumerate(self.sockets):
            if i != index:
                for sock in group:
                    sock.close()
        if os.getppid() == 1:
            return 0  # the parent died before prctl took effect
        self.forked(index, mine)
        asyncio.run(self.serve(index, mine))
        return 0

    def forked(self, index: int, sockets: list[socket.socket]) -> None:
        """In worker `index`, before its event loop starts: what a subclass must drop
        of the parent's state (nothing here)."""

    def serving(self, index: int) -> None:
        """In worker `index`, once its signal handlers are in place and it serves (at
        start and after each reload): take signals, tell the parent."""
        signal.pthread_sigmask(signal.SIG_UNBLOCK, self._HELD)
        self.counters.serving(index)

    async def run_worker(
        self,
        index: int,
        sockets: list[socket.socket],
        server: TftpServer,
        running: runtime.Running,
        close: Callable[[], None],
    ) -> None:
        """A subclass's worker `index`: `server` on the parent's `sockets`, served as
        `running` (SIGHUP, SIGTERM's drain) until it ends, then `close()`."""
        try:
            await server.start_on(sockets, announce=False)  # the parent says it once
            await runtime.serve(
                running, self.drain, ready=lambda: self.serving(index), in_pool=True
            )
        finally:
            close()

    async def serve(self, index: int, sockets: list[socket.socket]) -> None:
        """What worker `index` runs: a `TftpServer` on `sockets` until SIGTERM."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(self.END_NOW, stop.set)
        server = TftpServer(self.config, gate=self.counters.gate(index))

        def hangup() -> None:
            log.info("worker %d: %d transfers active", index, len(server.transfers))
            self.serving(index)

        loop.add_signal_handler(signal.SIGHUP, hangup)
        try:
            await server.start_on(sockets, announce=False)
            self.serving(index)
            await stop.wait()
        finally:
            server.close()
