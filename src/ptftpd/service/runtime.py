"""The service life cycle every server CLI shares: flags, start-up order, signals.

A CLI adds the service fields (`service_settings.SERVICE_FIELDS`) and hands :func:`run` an async
``start()`` that binds its sockets and returns a :class:`Running` server. :func:`run` then
keeps the order the building blocks need (see :mod:`ptftpd.service.privileges`)::

    resolve --user/--group  ->  make the writable paths USER's  ->  start() binds
    ->  metrics.serve (a port below 1024 still works)  ->  privileges.drop  ->  READY=1

and handles the signals (:func:`serve`): SIGHUP calls ``reload()`` between RELOADING=1 and
READY=1 (an error is logged and the old settings stay); the first SIGTERM or SIGINT sends
STOPPING=1, calls ``stop_accepting()`` and waits up to ``--drain`` seconds for
``active()`` to reach 0; then (or at a second signal) ``close()`` ends what is left, which
tells the peers of running transfers with an ERROR packet. The exit status is 0.

A worker pool (``ptftpd --workers N``, :mod:`ptftpd.service.tftp_pool`) runs the same
pieces: :func:`prepare`, :func:`serve_metrics` and :func:`drop_privileges` in the parent,
:func:`serve` with ``in_pool=True`` in each worker (the parent speaks to systemd).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from ptftpd.errors import USAGE_ERROR, StartError, report
from ptftpd.log import setup_logging
from ptftpd.service import address_lock, metrics, notify, privileges
from ptftpd.service.service_settings import (
    ServiceSettings,
)

log = logging.getLogger("ptftpd.service")

T = TypeVar("T")
S = TypeVar("S")  # a started server
C = TypeVar("C")  # its settings


class Running(Protocol):
    """What :func:`run` needs from a started server."""

    def active(self) -> int:
        """Work still in flight (running transfers); 0 when stopping loses nothing."""

    def stop_accepting(self) -> None:
        """Refuse new work (a TFTP request gets an ERROR), finish what runs."""

    def reload(self) -> str:
        """Re-read what can change live; returns a one-line summary, raises on error."""

    def close(self) -> None:
        """End now: release the sockets, tell running transfers' peers."""


class Reloadable(Generic[S, C]):
    """The part of a `Running` adapter every server shares: `rebuild` re-reads the
    server's settings (flags + TOML file) for SIGHUP; `also_kept` names the service
    settings the re-read wanted changed, which wait for a restart too; `count`
    (--metrics) has the adapter subscribe the metrics (`count_metrics`)."""

    def __init__(
        self,
        server: S,
        rebuild: Callable[[], C],
        *,
        count: bool = False,
        also_kept: Callable[[], list[str]] = list,
    ) -> None:
        self.server = server
        self.rebuild = rebuild
        self.also_kept = also_kept
        self.count = count
        if count:
            self.count_metrics()

    def count_metrics(self) -> None:
        """Feed the metrics from the server's events (with --metrics)."""

    def reloaded(self, summary: str, kept: list[str]) -> str:
        """The reloaded: line: what now applies, then what waits for a restart."""
        kept = [*kept, *(name for name in self.also_kept() if name not in kept)]
        return f"{summary}; kept until a restart: {', '.join(kept)}" if kept else summary


def prepare(
    service: ServiceSettings, writable: Iterable[Path] = (), uploads: Iterable[Path] = ()
) -> privileges.Identity | None:
    """The start-up steps before any socket exists: resolve --user/--group (a bad name
    is a `StartError` with the usage status 2), give the `writable` directories (the
    server's own state, e.g. the lease database's) to USER, check that USER can write
    the `uploads` roots (never changed: a `StartError` naming the fix), set up logging
    and the fd limit. Returns the identity :func:`drop_privileges` takes on."""
    try:
        identity = privileges.resolve(service.user, service.group)
        for path in writable:
            privileges.make_writable(identity, path)
    except privileges.PrivilegeError as exc:
        raise StartError(str(exc), USAGE_ERROR) from None
    try:
        for path in uploads:
            privileges.check_upload_root(identity, path)
    except privileges.PrivilegeError as exc:
        raise StartError(str(exc)) from None
    try:
        setup_logging(service.verbose, service.debug, service.log_target)
    except OSError as exc:
        raise StartError(f"--log-target {service.log_target}: {exc}") from None
    raise_fd_limit()
    return identity


def warn_if_root(identity: privileges.Identity | None, uploads: Iterable[Path] = ()) -> None:
    """Root without --user keeps every privilege for life: say so once, when the start
    has succeeded (a failed start stays one line), with the flags that change it
    (--read-only too when uploads are on)."""
    if identity is not None or os.geteuid() != 0:
        return
    fix = "--user USER (e.g. --user nobody) drops them once the sockets are bound"
    if list(uploads):
        fix += "; uploads are on: --read-only refuses them"
    log.warning("running as root with every privilege kept: %s", fix)


def check_identity(service: ServiceSettings) -> None:
    """--user and --group name someone (what --print-config checks without starting):
    a `StartError` with the usage status 2 if not."""
    try:
        privileges.resolve(service.user, service.group)
    except privileges.PrivilegeError as exc:
        raise StartError(str(exc), USAGE_ERROR) from None


def serve_metrics(service: ServiceSettings) -> None:
    """Start --metrics' HTTP server (after binding, before the drop: a port below 1024
    still works); `StartError` if it cannot listen."""
    serve_metrics_at(service.metrics)


def serve_metrics_at(address: tuple[str, int] | None) -> None:
    """`serve_metrics` for a parsed `--metrics` ADDR:PORT (None: none)."""
    if address is None:
        return
    host, port = address
    try:
        metrics.serve(host, port)
    except OSError as exc:
        raise StartError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None


def drop_privileges(
    identity: privileges.Identity | None,
    owned_files: Iterable[Path] = (),
    uploads: Iterable[Path] = (),
) -> None:
    """Give `owned_files` that exist to USER, then keep no privilege (`StartError`);
    root without --user: the one warning (`warn_if_root`)."""
    for path in owned_files:
        if path.exists():
            privileges.make_writable(identity, path)
    if identity is not None:  # USER removes the pool's lock files at exit
        address_lock.give_held_locks(identity.uid, identity.gid)
    privileges.drop(identity)
    warn_if_root(identity, uploads)


def run(
    prog: str,
    service: ServiceSettings,
    start: Callable[[], Awaitable[Running]],
    known_errors: tuple[type[Exception], ...] = (),
    writable: Iterable[Path] = (),
    owned_files: Iterable[Path] = (),
    uploads: Iterable[Path] = (),
) -> int:
    """Run a server as a service until a signal stops it; returns the exit status.

    A `StartError` (or one of `known_errors`, exit 1) is one line. `writable`
    directories are given to --user before `start()`; `owned_files` (a lease database
    `start()` created as root) after it, those that exist; `uploads` (ROOT when uploads
    are on) must be writable by --user as they are."""
    try:
        identity = prepare(service, writable, uploads)
    except StartError as exc:
        return report(prog, exc)

    async def main() -> None:
        # A SIGHUP, SIGTERM or SIGINT after the ports are bound (they look ready, the
        # "serving" line is out) but before serve()'s handlers must not end the server
        # by the default action: it is held, then served (a stop drains nothing and
        # exits 0). A second stop signal while still starting ends it, also when start()
        # is stuck in a blocking call: so the stop signals get plain handlers, which run
        # between bytecodes, not loop callbacks, which would wait for start() to await.
        held: list[int] = []
        loop = asyncio.get_running_loop()

        def hold(sig: int, _frame: object = None) -> None:
            if sig != signal.SIGHUP and any(s != signal.SIGHUP for s in held):
                signal.signal(sig, signal.SIG_DFL)
                signal.raise_signal(sig)
            held.append(sig)

        loop.add_signal_handler(signal.SIGHUP, hold, signal.SIGHUP)
        stops = (signal.SIGTERM, signal.SIGINT)
        before = {sig: signal.signal(sig, hold) for sig in stops}
        try:
            server = await start()
        except BaseException:
            for sig, handler in before.items():
                signal.signal(sig, handler)
            raise
        try:
            serve_metrics(service)
            drop_privileges(identity, owned_files, uploads)
            await serve(server, service.drain, held=held)
        finally:
            server.close()

    return run_until_stopped(prog, main, known_errors)


def run_until_stopped(
    prog: str,
    main: Callable[[], Coroutine[Any, Any, None]],
    known_errors: tuple[type[Exception], ...],
) -> int:
    """`asyncio.run(main())`; a `StartError` or one of `known_errors` is one line."""
    try:
        asyncio.run(main())
    except StartError as exc:
        return report(prog, exc)
    except known_errors as exc:
        return report(prog, StartError(str(exc)))
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were in place
        return 130
    logging.getLogger("ptftpd").info("%s stopped", prog)
    return 0


def raise_fd_limit() -> None:
    """Each transfer has its own socket: thousands of sessions need thousands of fds."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def run_service(
    prog: str,
    args: argparse.Namespace,
    body: Callable[[asyncio.Event], Awaitable[None]],
    known_errors: tuple[type[Exception], ...] = (),
) -> int:
    """Run `body(stop)` until it returns or SIGINT/SIGTERM sets `stop`, without the
    service life cycle (`python -m ptftpd.http`, `python -m ptftpd.dhcp6`)."""
    setup_logging(args.verbose, args.debug)
    raise_fd_limit()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await body(stop)

    return run_until_stopped(prog, main, known_errors)


def reload_or_keep(reload: Callable[[], T]) -> T | None:
    """`reload()` for SIGHUP, or None when it failed (a bad file must not stop the
    server): said in one line, and the running settings stay."""
    try:
        return reload()
    except Exception as exc:
        log.error("reload failed, keeping the running settings: %s", exc)
        return None


async def serve(
    server: Running,
    drain: float,
    *,
    ready: Callable[[], object] = notify.ready,
    in_pool: bool = False,
    held: Iterable[int] = (),
    reloaded: Callable[[str], Awaitable[None]] | None = None,
) -> None:
    """Serve until stopped: SIGHUP reloads, the first stop signal drains for up to
    `drain` seconds, a second one (or the drain's end) returns; the caller closes.

    `ready()` runs once the signal handlers are in place and after every reload. In a
    worker of a pool (`in_pool`) the parent speaks to systemd and logs the reload, and
    only SIGTERM stops (the parent forwards SIGINT as SIGTERM), SIGUSR1 ends at once (the
    parent's second stop signal). A good reload is an info line (an error a warning);
    the drain's start and end are info lines (a worker's: debug, the parent says it).
    `reloaded(summary)`, if given, says the good reload's line instead (pxed --workers:
    once its workers applied it); `ready()` then runs after it. A stop signal does not
    wait for it: `stop_accepting()` must say a line still waiting, then it is cancelled."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals: asyncio.Queue[int] = asyncio.Queue()
    stop_signals = (signal.SIGTERM,) if in_pool else (signal.SIGINT, signal.SIGTERM)
    end_now = (signal.SIGUSR1,) if in_pool else ()  # the pool's `TftpWorkers.END_NOW`
    handled = (*stop_signals, signal.SIGHUP, *end_now)
    for sig in handled:
        loop.add_signal_handler(sig, signals.put_nowait, sig)
    for sig in held:  # arrived while the server was starting: reloaded once it serves
        signals.put_nowait(sig)
    ready()
    settling: set[asyncio.Task[None]] = set()  # `reloaded` lines still waiting

    async def settle(summary: str) -> None:
        assert reloaded is not None
        await reloaded(summary)
        ready()

    async def handle() -> None:
        while True:
            sig = await signals.get()
            if sig == signal.SIGHUP and not stop.is_set():
                if not in_pool:
                    notify.reloading()
                summary = reload_or_keep(server.reload)
                if summary is not None and reloaded is not None:
                    task = asyncio.create_task(settle(summary))
                    settling.add(task)
                    task.add_done_callback(settling.discard)
                    continue
                if summary is not None:
                    # a worker's line is debug: the pool's parent says it once
                    log.log(logging.DEBUG if in_pool else logging.INFO, "reloaded: %s", summary)
                ready()
            elif sig != signal.SIGHUP:
                if stop.is_set() or sig in end_now:
                    stop.set()
                    level = logging.DEBUG if in_pool else logging.WARNING  # parent says it
                    log.log(level, "second stop signal: ending running transfers now")
                    server.close()
                    return
                stop.set()

    handler = asyncio.create_task(handle())
    try:
        await stop.wait()
        if not in_pool:
            notify.stopping()
        server.stop_accepting()  # says a reload line still waiting (`reloaded`'s duty)
        for task in list(settling):
            task.cancel()
        level = logging.DEBUG if in_pool else logging.INFO
        running = server.active()
        log.log(level, "stopping: new requests refused, draining %d running transfer(s) "
                "for up to %g s", running, drain)  # fmt: skip
        began = loop.time()
        deadline = began + drain
        while server.active() and loop.time() < deadline and not handler.done():
            await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))
        if server.active():
            log.warning("drain time over: ending %d running transfer(s)", server.active())
        else:
            log.log(level, "drained: %d transfer(s) finished in %.1f s", running,
                    loop.time() - began)  # fmt: skip
    finally:
        handler.cancel()
        for task in list(settling):
            task.cancel()
        for sig in handled:
            loop.remove_signal_handler(sig)
