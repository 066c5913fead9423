"""`pxed --workers N`: pxed's TFTP in N worker processes, its parent an asyncio loop.

The parent keeps DHCP (or proxyDHCP), the 4011 boot server, HTTP, DHCPv6 and the boot
log in its event loop; only TFTP moves to the workers. The order::

    resolve --user/--group  ->  metrics: a private PROMETHEUS_MULTIPROC_DIR
    ->  start(): bind DHCP, 4011, HTTP, DHCPv6 and every worker's TFTP socket (root)
    ->  serve --metrics  ->  privileges.drop  ->  fork the workers  ->  they serve
    ->  READY=1

The workers are forked from the running loop after the drop, so no worker (nor a
restarted one) ever holds a privilege; `TftpWorkers._worker` forgets the parent's loop.
SIGCHLD reaches the parent's loop (`TftpWorkers.spawn_in`): a dead worker is restarted.

- Boot log: each worker's `TftpServer` callbacks (started, finished, refused) travel to
  the parent's `BootTracker` over `ptftpd.service.transfer_events`.
- SIGHUP: the parent reloads as in one process (`PxeService.reload`); the new TFTP
  settings go to every worker as one datagram on its control socket, then SIGHUP; a
  worker restarted later starts with them. The parent's one "reloaded" line (and
  READY=1) wait, bounded, until the workers applied it, and name how many did.
- SIGTERM: the parent stops accepting (SIGTERM to every worker: each refuses new
  requests and drains its transfers for up to --drain seconds, then exits 0), waits for
  the workers' active transfers (`SharedCounters`) to end, and exits 0.
- --metrics: each worker counts its transfers into the multiprocess files, the parent
  its DHCP and boot metrics; the parent serves the sum.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import shutil
import signal
import socket
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from ptftpd.errors import StartError, report
from ptftpd.pxe.bootlog import BootTracker
from ptftpd.service import metrics, notify, runtime
from ptftpd.service.service_settings import ServiceSettings
from ptftpd.service.tftp_pool import metrics_folder
from ptftpd.service.tftp_service import count_transfers
from ptftpd.service.transfer_events import EventReceiver, EventSender, event_pair
from ptftpd.service.workers import TftpWorkers
from ptftpd.tftp.server import ServerConfig, TftpServer

__all__ = ["PxeTftpWorkers", "run"]

log = logging.getLogger("ptftpd.pxe")

_MAX_CONTROL = 65_536  # one pickled `ServerConfig` (a few hundred bytes)


class PxeTftpWorkers(TftpWorkers):
    """pxed's TFTP workers: a `TftpPool` for `PxeService` (see the module doc)."""

    def __init__(
        self,
        config: ServerConfig,
        hosts: list[str],
        port: int,
        workers: int,
        *,
        drain: float,
        count: bool,
    ) -> None:
        super().__init__(config, hosts, port, workers, drain=drain)
        self.count = count
        self.events_in, self.events_out = event_pair()
        # (parent's end, worker's end) per worker: the parent sends new settings
        self.control = [
            socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(self.workers)
        ]
        for ends in self.control:
            for end in ends:
                end.setblocking(False)
        self.receiver: EventReceiver | None = None
        self._closed = False
        self._gave_up = False
        self.supervised = False  # the parent's stop signal handlers are in place
        self.reloading = 0  # the generation the newest reload asked the workers for
        self._unsaid: list[tuple[str, int]] = []  # reload lines waiting for the workers

    # -- the parent (TftpPool) --------------------------------------------------------
    def attach(self, loop: asyncio.AbstractEventLoop, tracker: BootTracker) -> None:
        self.receiver = EventReceiver(
            self.events_in, tracker.started, tracker.finished, tracker.refused
        )
        self.receiver.attach(loop)

    def active(self) -> int:
        return self.counters.totals()[0]

    def stop_accepting(self) -> None:
        self.say_reloaded()  # before the workers stop: who applied the reload by now
        self.begin_stop()

    def reload(self, config: ServerConfig) -> None:
        """New TFTP settings for every worker (and for those restarted later)."""
        self.config = config
        self.counters.max_sessions = config.max_sessions
        data = pickle.dumps(config)
        for parent_end, _ in self.control:
            try:
                parent_end.send(data)
            except OSError as exc:  # a full queue: that worker's old limits stay
                log.warning("cannot send the new TFTP settings to a worker: %s", exc)
        self.reloading = self.counters.new_generation()
        self._forward(signal.SIGHUP)

    async def settle(self, summary: str) -> None:
        """After `reload`: the one "reloaded" line once the workers applied it (bounded
        wait), naming how many did; a stop meanwhile says it at once (`stop_accepting`)."""
        line = (summary, self.reloading)
        self._unsaid.append(line)
        await self.await_serving(line[1])
        if line in self._unsaid:  # not yet said by a stop
            self._unsaid.remove(line)
            self.announce_reloaded(*line)

    def say_reloaded(self) -> None:
        """Every reload line still waiting, with how many workers applied each so far."""
        unsaid, self._unsaid = self._unsaid, []
        for summary, generation in unsaid:
            self.announce_reloaded(summary, generation)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.pids and self.active():
            # the drain is over (or a second stop signal): end the transfers now
            self._forward(self.END_NOW)
        self.stop()
        if self.receiver is not None:
            self.receiver.drain()  # the last transfers' ends reach the boot log
            self.receiver.close()
        else:
            self.events_in.close()
        self.events_out.close()
        for ends in self.control:
            for end in ends:
                end.close()
        self.counters.close()

    def worker_ended(self, pid: int) -> None:
        metrics.worker_exited(pid)
        if self.receiver is not None:
            self.receiver.worker_ended(pid)  # its clients are no longer busy

    def reap(self) -> None:
        super().reap()
        if self.failed and self.supervised and not self._gave_up:
            # Workers that cannot run (e.g. ROOT unreadable by --user): pxed without
            # TFTP is no boot server. Stop as on SIGTERM; `run` then exits 1.
            self._gave_up = True
            signal.raise_signal(signal.SIGTERM)

    # -- a worker ---------------------------------------------------------------------
    def forked(self, index: int, sockets: list[socket.socket]) -> None:
        """Close the parent's other sockets (DHCP, 4011, HTTP, DHCPv6, connections)
        before this worker's loop exists; the pool's own are closed in `serve`."""
        metrics.forget_http_server()  # closes its socket itself
        own = [*sockets, self.events_in, self.events_out]
        own += [end for pair in self.control for end in pair]
        close_inherited_sockets({sock.fileno() for sock in own if sock.fileno() >= 0})

    async def serve(self, index: int, sockets: list[socket.socket]) -> None:
        self.events_in.close()  # the parent's (its loop's registration stays its own)
        control = self.control[index][1]
        for i, (parent_end, worker_end) in enumerate(self.control):
            parent_end.close()
            if i != index:
                worker_end.close()
        sender = EventSender(self.events_out)
        server = TftpServer(
            self.config,
            on_started=sender.started,
            on_finished=sender.finished,
            on_refused=sender.refused,
            gate=self.counters.gate(index),
        )
        if self.count:
            count_transfers(server)
        running = _WorkerTftp(server, self, control)
        await self.run_worker(index, sockets, server, running, server.close)


class _WorkerTftp:
    """One worker's `TftpServer` as `runtime.serve` sees it (`runtime.Running`)."""

    def __init__(self, server: TftpServer, pool: PxeTftpWorkers, control: socket.socket) -> None:
        self.server = server
        self.pool = pool
        self.control = control

    def active(self) -> int:
        return self.server.answered()

    def stop_accepting(self) -> None:
        self.server.accepting = False

    def reload(self) -> str:
        """Apply the newest settings the parent sent (running transfers keep theirs)."""
        config: ServerConfig | None = None
        for _ in range(64):  # bounded: the parent sends one per reload
            try:
                data = self.control.recv(_MAX_CONTROL)
            except (BlockingIOError, InterruptedError):
                break
            loaded = pickle.loads(data)  # our own parent, over a private socketpair
            if isinstance(loaded, ServerConfig):
                config = loaded
        if config is None:
            return "TFTP settings unchanged"
        self.server.config = config
        self.server.rules.max_sessions = config.max_sessions
        self.pool.config = config
        self.pool.counters.max_sessions = config.max_sessions
        return f"TFTP max sessions {config.max_sessions}"

    def close(self) -> None:
        self.server.close()


def run(
    prog: str,
    service: ServiceSettings,
    start: Callable[
        [Callable[[ServerConfig, list[str], int], PxeTftpWorkers]], Awaitable[runtime.Running]
    ],
    known_errors: tuple[type[Exception], ...],
    writable: Iterable[Path] = (),
    owned_files: Iterable[Path] = (),
) -> int:
    """`runtime.run` for pxed with ``service.workers`` TFTP workers: `start(factory)` binds
    everything (the factory the TFTP workers' sockets); the workers are forked after the
    privileges are dropped."""
    try:
        identity = runtime.prepare(service, writable)
    except StartError as exc:
        return report(prog, exc)
    pools: list[PxeTftpWorkers] = []

    def factory(config: ServerConfig, hosts: list[str], port: int) -> PxeTftpWorkers:
        pool = PxeTftpWorkers(
            config,
            hosts,
            port,
            service.workers,
            drain=service.drain,
            count=service.metrics is not None,
        )
        try:
            pool.open()
        except BaseException:
            pool.close()
            raise
        pools.append(pool)
        return pool

    held = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def ready() -> None:
        """runtime.serve's handlers are in place: take the signals held meanwhile."""
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
        notify.ready()

    async def main() -> None:
        # A stop or reload signal sent while the workers start (ports are bound before
        # they serve) waits for runtime.serve's handlers instead of killing pxed.
        signal.pthread_sigmask(signal.SIG_BLOCK, held)
        try:
            server = await start(factory)
        except BaseException:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
            raise
        try:
            runtime.serve_metrics(service)
            runtime.drop_privileges(identity, owned_files)
            loop = asyncio.get_running_loop()
            for pool in pools:
                _check_root(pool.config.root, service.user)
                pool.spawn_in(loop)
                if not await pool.await_serving():
                    log.warning("not every TFTP worker started in time")
                if pool.failed:
                    raise StartError(f"TFTP {pool.failed}")
                pool.announce_serving()
                # runtime.serve installs its handlers before its first await, i.e.
                # before a SIGCHLD can reach `reap` again
                pool.supervised = True

            async def reloaded(summary: str) -> None:
                for pool in pools:
                    await pool.settle(summary)

            await runtime.serve(
                server, service.drain, ready=ready, reloaded=reloaded if pools else None
            )
        finally:
            # still pending (pxed failed before serving): handled by stopping anyway
            while signal.sigtimedwait(held, 0) is not None:
                pass
            signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
            server.close()
        for pool in pools:
            if pool.failed:
                raise StartError(f"TFTP {pool.failed}")

    folder: Path | None = None
    try:
        if service.metrics is not None:
            folder = metrics_folder(identity)
            metrics.use_multiprocess(folder)
    except StartError as exc:
        return report(prog, exc)
    try:
        return runtime.run_until_stopped(prog, main, known_errors)
    finally:
        for pool in pools:
            pool.close()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def close_inherited_sockets(keep: set[int]) -> None:
    """A worker closes every socket it inherited from pxed's parent but `keep`.

    It was forked from the parent's running loop, so it holds copies of the DHCP, 4011,
    HTTP and DHCPv6 sockets and of any HTTP or PostgreSQL connection open at that
    moment (a restarted worker is forked at any time). Kept, they would hold the ports
    after the parent died (while the worker drains), and a connection the parent
    closes would send no FIN until the worker exits. Raw `os.close`: the Python socket
    objects belong to the parent's loop, which the worker never runs (closing through
    them would unregister them from the epoll set the two processes share); it runs
    before the worker's own loop opens anything, and the worker ends with `os._exit`,
    so no finalizer closes those numbers again. Standard input,
    output and error stay (stderr may be journald's socket)."""
    fds = Path("/proc/self/fd")
    try:
        names = [int(name) for name in os.listdir(fds)]
    except OSError:
        return
    for fd in names:
        if fd <= 2 or fd in keep:
            continue
        try:
            if os.readlink(fds / str(fd)).startswith("socket:"):
                os.close(fd)
        except OSError:
            continue


def _check_root(root: Path, user: str | None) -> None:
    """The workers serve ROOT after the privilege drop: one error line if they cannot
    (rather than workers dying at start)."""
    if not os.access(root, os.R_OK | os.X_OK):
        who = f"user {user}" if user else "this process"
        raise StartError(f"ROOT {root} cannot be read by {who}")
