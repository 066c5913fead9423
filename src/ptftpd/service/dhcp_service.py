"""A running `DhcpServer` as the service runtime sees it: metrics, SIGHUP reload.

Hooks through the server's public surface only: the sans-IO engine's `handle` is wrapped
to count messages in and out by type, and a reload builds a new engine from the re-read
settings on the same lease store (leases survive; the socket is kept).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from ptftpd.dhcp.engine import DhcpConfig, DhcpEngine
from ptftpd.dhcp.leases import LeaseSummary
from ptftpd.dhcp.packet import Message, PacketError, decode
from ptftpd.dhcp.reply import Outgoing
from ptftpd.dhcp.server import DhcpServer
from ptftpd.service import metrics

log = logging.getLogger("ptftpd.service")

_LIVE = ("interface", "port", "server_ip", "network", "leases_path")


def message_label(message: Message) -> str:
    """``discover``..``inform``, or ``bootrequest``/``bootreply`` for plain BOOTP."""
    kind = message.message_type
    if kind is not None:
        return kind.name.lower()
    return "bootrequest" if message.op == 1 else "bootreply"


def count_message(direction: Literal["in", "out"], data: bytes, message: Message | None) -> None:
    """Count one DHCP/BOOTP message by type (`message`, or decoded from `data`)."""
    if message is None:
        try:
            message = decode(data)
        except PacketError:
            return
    metrics.dhcp_message(direction, message_label(message))


def publish_leases(engine: DhcpEngine) -> None:
    """Set the lease gauges from every scope's policy (local pool and relayed subnets)."""
    total = LeaseSummary()
    for scope in engine.scopes:
        total += scope.policy.summary()
    metrics.dhcp_leases(
        metrics.LeaseCounts(total.active, total.offered, total.declined, total.free)
    )


class LeaseGauges:
    """Refreshes the lease gauges once after a burst, and at most once per `interval`
    seconds: a summary is one pass over the leases in use (one query for PostgreSQL),
    too much per packet in a boot storm. Scheduled with call_soon, so it runs after the
    server's `_on_readable` has committed the burst."""

    def __init__(self, engine: DhcpEngine, interval: float = 1.0) -> None:
        self.engine = engine
        self.interval = interval
        self._last = -interval
        self._pending = False

    def refresh(self) -> None:
        self._pending = False
        self._last = time.monotonic()
        try:
            publish_leases(self.engine)
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


def count_messages(engine: DhcpEngine) -> DhcpEngine:
    """Wrap `engine.handle` so that every message in and out is counted by type, and
    the lease gauges follow (refreshed after each burst, at most once a second)."""
    handle = engine.handle
    gauges = LeaseGauges(engine)
    gauges.touched()  # soon: after `start()` returns and `metrics.serve` enables them

    def counted(data: bytes, source: tuple[str, int] = ("0.0.0.0", 68)) -> list[Outgoing]:
        count_message("in", data, None)
        replies = handle(data, source)
        for out in replies:
            count_message("out", out.payload, out.message)
        gauges.touched()
        return replies

    setattr(engine, "handle", counted)  # noqa: B010 (an instance hook, not a method)
    return engine


class DhcpService:
    """Adapts a started `DhcpServer` to `ptftpd.service.runtime.Running`; `rebuild`
    re-reads the settings (flags + TOML file) for SIGHUP."""

    def __init__(
        self, server: DhcpServer, rebuild: Callable[[], DhcpConfig], *, count: bool = False
    ) -> None:
        self.server = server
        self.rebuild = rebuild
        self.count = count  # --metrics: decode every message once more to count it
        if count and server.engine is not None:
            count_messages(server.engine)

    def active(self) -> int:
        return 0  # every exchange is one datagram each way, committed before the reply

    def stop_accepting(self) -> None:
        pass

    def reload(self) -> str:
        new = self.rebuild()
        old = self.server.config
        fixed = [name for name in _LIVE if getattr(new, name) != getattr(old, name)]
        if fixed:
            raise ValueError(f"cannot change {', '.join(fixed)} without a restart")
        self.server.config = new
        engine = self.server.build_engine()
        self.server.engine = count_messages(engine) if self.count else engine
        return f"{len(new.static_hosts)} static host(s), lease time {new.lease_time} s"

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
