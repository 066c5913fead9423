"""The contract between pxed's service and the worker processes that serve its TFTP
(`pxed --workers N`): `ptftpd.service.pxe_pool` implements it; `pxe.service` only
knows this protocol, so pxe/ never imports service/."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from ptftpd.pxe.bootlog import BootTracker
from ptftpd.tftp.server import ServerConfig

__all__ = ["TftpPool", "TftpPoolFactory"]


class TftpPool(Protocol):
    """TFTP served by worker processes (`pxed --workers N`,
    `ptftpd.service.pxe_pool`): bound by the factory, reporting transfers to the
    boot tracker in this process's loop."""

    def attach(self, loop: asyncio.AbstractEventLoop, tracker: BootTracker) -> None: ...

    def active(self) -> int: ...

    def stop_accepting(self) -> None: ...

    def reload(self, config: ServerConfig) -> None: ...

    def close(self) -> None: ...


# (TFTP settings, addresses, port) -> a pool with its sockets bound (StartError)
TftpPoolFactory = Callable[[ServerConfig, list[str], int], TftpPool]
