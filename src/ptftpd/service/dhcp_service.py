"""A running `DhcpServer` as the service runtime sees it: metrics, SIGHUP reload.

Hooks through the server's public surface only: metrics subscribe to the engine's typed
events (`DhcpServer.events`: messages in and out by type), and a reload builds a new
engine from the re-read settings on the same lease store (leases survive; the socket is
kept) that reports to the same subscribers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

from ptftpd.dhcp.engine import DhcpConfig, DhcpEngine
from ptftpd.dhcp.leases import LeaseSummary
from ptftpd.dhcp.server import DhcpServer
from ptftpd.dhcp.server_settings import keep_restart_only
from ptftpd.events import DhcpMessage, Event
from ptftpd.service import metrics
from ptftpd.service.runtime import Reloadable

log = logging.getLogger("ptftpd.service")


def publish_leases(engine: DhcpEngine, now: float) -> None:
    """Set the lease gauges from every scope's policy (local pool and relayed subnets)."""
    total = LeaseSummary()
    for scope in engine.scopes:
        total += scope.policy.summary(now)
    metrics.dhcp_leases(
        metrics.LeaseCounts(total.active, total.offered, total.declined, total.free)
    )


class LeaseGauges:
    """Refreshes the lease gauges once after a burst, and at most once per `interval`
    seconds: a summary is one pass over the leases in use (one query for PostgreSQL),
    too much per packet in a boot storm. Scheduled with call_soon, so it runs after the
    server's `_on_burst` has committed the burst."""

    def __init__(self, engine: DhcpEngine, interval: float = 1.0) -> None:
        self.engine = engine
        self.interval = interval
        self._last = -interval
        self._pending = False

    def refresh(self) -> None:
        self._pending = False
        self._last = time.monotonic()
        if getattr(self.engine.policy.store, "blocking", False):
            # PostgreSQL: the summary query runs off the event loop, like the leases.
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                pass
            else:
                loop.run_in_executor(None, self._publish)
                return
        self._publish()

    def _publish(self) -> None:
        try:
            publish_leases(self.engine, time.time())
        except Exception as exc:  # a lost database must not cost the reply path
            log.debug("lease gauges not refreshed: %s", exc)

    def touched(self) -> None:
        if self._pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.refresh()
            return
        self._pending = True
        wait = self._last + self.interval - time.monotonic()
        if wait > 0:
            loop.call_later(wait, self.refresh)
        else:
            loop.call_soon(self.refresh)


def count_messages(server: DhcpServer) -> None:
    """--metrics: the server's engines (this one and those a reload builds) report
    every message in and out to the metrics; each burst touches the lease gauges
    (refreshed after it, at most once a second)."""
    chained = server.events

    def counted(event: Event) -> None:
        metrics.record_event(event)
        if isinstance(event, DhcpMessage) and event.direction == "in":
            engine = server.engine
            if engine is not None:
                gauges.engine = engine
            gauges.touched()
        chained(event)

    assert server.engine is not None
    gauges = LeaseGauges(server.engine)
    gauges.touched()  # soon: after `start()` returns and `metrics.serve` enables them
    server.events = counted


class DhcpService(Reloadable[DhcpServer, DhcpConfig]):
    """Adapts a started `DhcpServer` to `ptftpd.service.runtime.Running`; `rebuild`
    re-reads the settings (flags + TOML file) for SIGHUP, which apply but for the
    restart-only ones (named in the reloaded: line, with `also_kept`'s)."""

    def count_metrics(self) -> None:
        """The engine's message events are counted."""
        if self.server.engine is not None:
            count_messages(self.server)

    def active(self) -> int:
        return 0  # every exchange is one datagram each way, committed before the reply

    def stop_accepting(self) -> None:
        pass

    def reload(self) -> str:
        new, kept = keep_restart_only(self.server.config, self.rebuild())
        self.server.config = new
        self.server.engine = self.server.build_engine()
        summary = f"{len(new.static_hosts)} static host(s), lease time {new.lease_time} s"
        return self.reloaded(summary, kept)

    def close(self) -> None:
        self.server.close()


def rebuilder(build: Callable[[], DhcpConfig], first: DhcpConfig) -> Callable[[], DhcpConfig]:
    """`build` re-reads flags and file; bootpd's fixed protocol choices are kept."""

    def rebuild() -> DhcpConfig:
        new = build()
        if first.dhcp:
            return new
        return dataclasses.replace(
            new,
            dhcp=first.dhcp,
            bootp=first.bootp,
            answer_all=first.answer_all,
            boot_file_size=first.boot_file_size,
        )

    return rebuild


def lease_paths(config: DhcpConfig) -> list[Path]:
    """The lease directory, which --user must own before the store opens."""
    return [] if config.leases_path is None else [config.leases_path.parent]


def lease_files(config: DhcpConfig) -> list[Path]:
    """The SQLite files the store opened as root, which --user must own after it."""
    path = config.leases_path
    if path is None:
        return []
    return [path, *(path.with_name(path.name + end) for end in ("-wal", "-shm", "-journal"))]
