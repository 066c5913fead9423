"""`ptftpd --workers N` as a service: the single process's life cycle over a worker pool.

The parent keeps the order of :mod:`ptftpd.service.runtime`, with the pool's steps in it::

    resolve --user/--group  ->  make ROOT USER's  ->  lock + bind every socket (root)
    ->  metrics: a private PROMETHEUS_MULTIPROC_DIR, then the HTTP server
    ->  privileges.drop (in the parent, so every worker is born without any)
    ->  fork the workers  ->  they all serve  ->  READY=1

A restarted worker needs no privilege either: the sockets it serves were bound before.

Each worker runs :func:`ptftpd.service.runtime.serve` (``in_pool=True``) over its own
`TftpService`, so drain, second-signal and reload behave exactly as in one process.
The parent speaks to systemd and writes the one reload line:

- SIGHUP: RELOADING=1; the parent re-reads the settings itself first (--config and
  --map-file: a bad file is one error line and no worker is disturbed: the old settings
  stay everywhere); otherwise it keeps them for workers it restarts later, forwards
  SIGHUP, waits (bounded) until every worker has re-read them, and sends READY=1.
- SIGTERM/SIGINT: STOPPING=1, SIGTERM to every worker: each refuses new requests with
  an ERROR, drains its transfers for up to --drain seconds, ends what is left (ERROR to
  the peers) and exits 0; the parent waits for them (--drain plus a margin, then
  SIGKILL) and exits 0. A second SIGTERM/SIGINT is forwarded: transfers end now.
- --metrics: the workers record into prometheus-client's multiprocess files, the
  parent serves their sum and marks every ended worker dead (its live gauge goes).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ptftpd.errors import StartError, fail, report
from ptftpd.service import metrics, notify, privileges, runtime
from ptftpd.service.service_settings import ServiceSettings
from ptftpd.service.tftp_service import Reread, TftpService, reloaded, summary
from ptftpd.service.workers import TftpWorkers
from ptftpd.tftp.server import ServerConfig, TftpServer

log = logging.getLogger("ptftpd.service")


class ServicePool(TftpWorkers):
    """Workers that each run a `TftpService` with the service life cycle."""

    def __init__(
        self,
        settings: ServerConfig,
        reread: Reread,
        hosts: Sequence[str],
        port: int,
        workers: int,
        *,
        drain: float,
    ) -> None:
        # `config`: the newest good settings, a restarted worker starts with them.
        super().__init__(settings, hosts, port, workers, drain=drain)
        self.reread = reread
        self._announced_stop = False

    # -- a worker -----------------------------------------------------------------
    async def serve(self, index: int, sockets: list[socket.socket]) -> None:
        metrics.forget_http_server()
        server = TftpServer(self.config, gate=self.counters.gate(index))
        service = TftpService(server, self.reread, on_config=self.limit_sessions)
        await self.run_worker(index, sockets, server, service, service.close)

    # -- the parent ---------------------------------------------------------------
    def limit_sessions(self, config: ServerConfig) -> None:
        """This process's view of the limit shared by every worker."""
        self.counters.max_sessions = config.max_sessions

    def hangup(self) -> None:
        notify.reloading()
        new = runtime.reload_or_keep(self.reread)
        if new is not None:
            self.config, kept = reloaded(self.config, new)
            self.limit_sessions(self.config)
            line = summary(self.config, kept)
            generation = self.counters.new_generation()
            self._forward(signal.SIGHUP)
            self.await_workers(generation)
            self.announce_reloaded(line, generation)
        notify.ready()

    def stop(self) -> None:
        if not self._announced_stop:
            self._announced_stop = True
            notify.stopping()
        super().stop()

    def worker_ended(self, pid: int) -> None:
        metrics.worker_exited(pid)


def run(
    prog: str,
    service: ServiceSettings,
    settings: ServerConfig,
    reread: Reread,
    hosts: Sequence[str],
    port: int,
) -> int:
    """Serve `settings` on `hosts` and `port` with ``service.workers`` processes until
    stopped."""
    uploads = () if settings.read_only else (Path(settings.root),)
    try:
        identity = runtime.prepare(service, uploads=uploads)
    except StartError as exc:
        return report(prog, exc)
    pool = ServicePool(settings, reread, hosts, port, service.workers, drain=service.drain)
    folder: Path | None = None
    try:
        pool.open()
        if service.metrics is not None:
            folder = metrics_folder(identity)
            metrics.use_multiprocess(folder)
        runtime.serve_metrics(service)
        runtime.drop_privileges(identity, uploads=uploads)
        pool.spawn()
        if not pool.await_workers():
            log.warning("not every worker started in time")
        if pool.failed is None:
            pool.announce_serving()
        if pool.failed is None:
            notify.ready()
            code = pool.run()
        else:
            code = 1
    except StartError as exc:
        return report(prog, exc)
    finally:
        pool.stop()
        pool.counters.close()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    if pool.failed:
        return fail(prog, pool.failed)
    logging.getLogger("ptftpd").info("%s stopped", prog)
    return code


def metrics_folder(identity: privileges.Identity | None) -> Path:
    """An empty directory only this service (and USER) writes, for the workers' files."""
    # systemd's RuntimeDirectory= (the first, if several), else the temporary directory
    parent = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0] or None
    try:
        folder = Path(tempfile.mkdtemp(prefix="ptftpd-metrics-", dir=parent))
    except OSError as exc:
        where = parent or tempfile.gettempdir()
        msg = f"cannot make a metrics directory in {where}: {exc.strerror}"
        raise StartError(msg) from None
    try:
        privileges.make_writable(identity, folder)
    except StartError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder
