"""A running `DhcpServer` as the service runtime sees it: metrics, SIGHUP reload.

Hooks through the server's public surface only: the sans-IO engine's `handle` is wrapped
to count messages in and out by type, and a reload builds a new engine from the re-read
settings on the same lease store (leases survive; the socket is kept).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from ptftpd.dhcp.engine import DhcpConfig, DhcpEngine
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


def _count(direction: Literal["in", "out"], data: bytes, message: Message | None) -> None:
    if message is None:
        try:
            message = decode(data)
        except PacketError:
            return
    metrics.dhcp_message(direction, message_label(message))


def count_messages(engine: DhcpEngine) -> DhcpEngine:
    """Wrap `engine.handle` so that every message in and out is counted by type."""
    handle = engine.handle

    def counted(data: bytes, source: tuple[str, int] = ("0.0.0.0", 68)) -> list[Outgoing]:
        _count("in", data, None)
        replies = handle(data, source)
        for out in replies:
            _count("out", out.payload, out.message)
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
