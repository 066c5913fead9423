"""A running `PxeService` (pxed) as the service runtime sees it: drain, reload, metrics.

pxed's servers already report to its boot log (the TFTP and HTTP servers' callbacks, the
DHCP boot policy), so metrics subscribe beside them, never instead: the TFTP events are
fanned out to both, the DHCP server's engine events are counted as dhcpd's are (every
engine a reload builds reports to the same place), and the sockets pxed owns itself
(proxyDHCP on 67, the boot server on 4011) report through `PxeService.events`.
"""

from __future__ import annotations

from ptftpd.http import HttpServer, Served
from ptftpd.pxe.bootlog import BootRecord
from ptftpd.pxe.config import PxeConfig
from ptftpd.pxe.decision import Decision
from ptftpd.pxe.service import PxeService
from ptftpd.service import metrics
from ptftpd.service.dhcp_service import count_messages
from ptftpd.service.runtime import Reloadable
from ptftpd.service.tftp_service import count_transfers

__all__ = ["PxeRunning"]


def _boot(record: BootRecord) -> None:
    metrics.pxe_boot(-1 if record.arch is None else record.arch, record.outcome, record.seconds)


def _decision(decision: Decision) -> None:
    metrics.pxe_decision(decision.source.value, decision.kind.value)


def count_http(server: HttpServer) -> None:
    """--metrics for pxed's HTTP server: requests by status, bytes, open and refused
    connections; each answered request still reaches the boot log's callback."""
    served = server.on_served

    def on_served(record: Served) -> None:
        metrics.http_request(record.status, record.bytes_sent)
        if served is not None:
            served(record)

    server.on_served = on_served
    server.on_connections = metrics.http_connections
    server.on_refused = metrics.http_refused
    metrics.http_connections(server.active_connections)


class PxeRunning(Reloadable[PxeService, PxeConfig]):
    """Adapts a started `PxeService` to `ptftpd.service.runtime.Running`; `rebuild`
    re-reads the settings (flags + TOML file) for SIGHUP; `count` (--metrics) feeds the
    TFTP, DHCP and boot metrics."""

    def count_metrics(self) -> None:
        service = self.server
        service.boot_log.on_boot = _boot
        service.machines.on_decision = _decision
        if service.boot_api is not None:
            service.boot_api.on_request = metrics.pxe_boot_api
        if service.remote_files is not None:
            service.remote_files.on_fetch = metrics.pxe_remote
        service.events = metrics.record_event
        if service.tftp_server is not None:
            count_transfers(service.tftp_server)
        if service.http_server is not None:
            count_http(service.http_server)
        if service.dhcp_server is not None:
            count_messages(service.dhcp_server)

    def active(self) -> int:
        return self.server.active()

    def stop_accepting(self) -> None:
        self.server.stop_accepting()

    def reload(self) -> str:
        summary = self.server.reload(self.rebuild())
        head, marker, names = summary.partition("; kept until a restart: ")
        return self.reloaded(head, names.split(", ") if marker else [])

    def close(self) -> None:
        self.server.close()
