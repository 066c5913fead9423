"""Prometheus metrics (``--metrics ADDR:PORT``): one typed facade every server calls.

Servers never touch prometheus-client directly; they call the module functions below at
the points where they already write their one log line::

    metrics.tftp_started("read")                                # RRQ accepted
    metrics.record_event(TransferRefused(...))                  # ERROR before a transfer
    metrics.tftp_finished(TransferRecord("read", "completed", sent, 0, seconds))
    metrics.dhcp_message("in", "discover"); metrics.dhcp_message("out", "offer")
    metrics.dhcp_leases(LeaseCounts(active=..., offered=..., declined=..., free=...))
    metrics.pxe_boot(arch_code, "completed", seconds_discover_to_last_byte)

Until :func:`serve` (or :func:`enable`) is called every function is a cheap no-op, so
code paths are the same with and without ``--metrics``. Label values come from small
fixed sets (unknown ones become ``other``; architectures are the IANA names of
``ptftpd.dhcp.options.ARCHITECTURES``, e.g. ``efi-x64``), so a hostile client cannot
grow the number of series.

Several worker processes (``--workers``, the boot-storm issue) use prometheus-client's
multiprocess mode: the parent sets ``PROMETHEUS_MULTIPROC_DIR`` to an empty private
directory (e.g. under ``$RUNTIME_DIRECTORY``) *before* any worker imports this module;
each worker then writes its samples to memory-mapped files there, counters and
histograms are summed across workers, ``tftp_active_sessions`` uses ``livesum`` (only
live workers count), and the DHCP gauges, set by whichever process owns the lease store,
use ``mostrecent``. Only the parent calls :func:`serve`, which then collects from the
directory instead of from its own registry, and calls :func:`worker_exited` (prometheus-
client's ``mark_process_dead``) when a worker ends. tests/service/test_metrics.py runs
this with real processes.
"""

from __future__ import annotations

import glob
import os
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
)
from prometheus_client import values as _values
from prometheus_client.metrics_core import Metric

from ptftpd.dhcp.options import ARCHITECTURES
from ptftpd.events import (
    BalanceChanged,
    Dhcp6Message,
    Dhcp6Type,
    DhcpMessage,
    DhcpType,
    Event,
    Failure,
    Lease6Event,
    LeaseEvent,
    LeaseKind,
    TransferFinished,
    TransferRefused,
    TransferStarted,
)

Direction = Literal["read", "write"]
GaugeMode = Literal["livesum", "mostrecent"]

_NAMESPACE = "ptftpd"
# A multiprocess file starts with its used length (4 bytes, padded to 8).
_HEADER_BYTES = 8
FAILURE_REASONS = frozenset(kind.value for kind in Failure)
DHCP_TYPES = frozenset(get_args(DhcpType))
DHCP6_TYPES = frozenset(get_args(Dhcp6Type))
LEASE_KINDS = frozenset(kind.value for kind in LeaseKind)
BOOT_OUTCOMES = frozenset({"completed", "failed", "abandoned"})
# pxed's per-machine decisions (issue 22): where each came from, and what it was.
DECISION_SOURCES = frozenset({"local-state", "inventory", "api", "cache", "default", "builtin"})
DECISION_KINDS = frozenset({"boot", "local", "ignore"})
HTTP_STATUSES = frozenset(
    {"200", "206", "400", "403", "404", "405", "413", "414", "416", "431", "501", "503", "505"}
)

_TRANSFER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_BOOT_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
_API_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10)
API_OUTCOMES = frozenset({"ok", "rejected", "unreachable"})
REMOTE_OUTCOMES = frozenset({"hit", "miss", "shared", "failed"})


@dataclass(frozen=True)
class TransferRecord:
    """One finished TFTP transfer, as the server's log line describes it."""

    direction: Direction
    outcome: str  # "completed", or a FAILURE_REASONS value
    bytes_sent: int
    bytes_received: int
    seconds: float


@dataclass(frozen=True)
class LeaseCounts:
    active: int
    offered: int
    declined: int
    free: int


def _label(value: str, allowed: frozenset[str]) -> str:
    value = value.lower()
    return value if value in allowed else "other"


class Metrics:
    """Every metric family, in one registry (one per process; tests make their own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        counter, gauge, histogram = self._counter, self._gauge, self._histogram
        self.tftp_started = counter(
            "tftp_transfers_started", "TFTP transfers accepted", ["direction"]
        )
        self.tftp_completed = counter(
            "tftp_transfers_completed", "TFTP transfers that delivered every byte", ["direction"]
        )
        self.tftp_failed = counter(
            "tftp_transfers_failed",
            "TFTP transfers that ended without every byte",
            ["direction", "reason"],
        )
        self.tftp_refused = counter(
            "tftp_requests_refused",
            "TFTP requests answered with ERROR before any transfer began, by why",
            ["direction", "reason"],
        )
        self.tftp_bytes_sent = counter("tftp_sent_bytes", "File bytes sent in TFTP DATA packets")
        self.tftp_bytes_received = counter(
            "tftp_received_bytes", "File bytes received in TFTP DATA packets"
        )
        self.tftp_dropped = counter(
            "tftp_requests_dropped",
            "TFTP requests left unanswered: too many first replies to the source's address"
            " or network went unanswered (reflection budget)",
        )
        self.tftp_active = gauge("tftp_active_sessions", "TFTP transfers in progress", "livesum")
        self.tftp_duration = histogram(
            "tftp_transfer_duration_seconds",
            "Request to last ACK, per finished transfer",
            ["direction"],
            _TRANSFER_BUCKETS,
        )
        self.dhcp_messages = counter(
            "dhcp_messages", "DHCP/BOOTP messages by direction and type", ["direction", "type"]
        )
        self.dhcp6_messages = counter(
            "dhcp6_messages",
            "DHCPv6 messages by direction and type (read through relays)",
            ["direction", "type"],
        )
        self.dhcp_lease_events = counter(
            "dhcp_lease_events",
            "DHCP leases offered, bound or renewed, released, declined, expired",
            ["kind"],
        )
        self.dhcp6_lease_events = counter(
            "dhcp6_lease_events",
            "DHCPv6 bindings (IA_NA addresses) offered, bound or renewed, released, "
            "declined, expired",
            ["kind"],
        )
        # The DHCP gauges are set by whichever process owns the lease store.
        self.dhcp_leases = gauge("dhcp_leases", "Leases by state", "mostrecent", ["state"])
        self.dhcp_pool_free = gauge(
            "dhcp_pool_free", "Addresses of the pool nobody holds", "mostrecent"
        )
        self.dhcp_buckets = gauge(
            "dhcp_balance_buckets",
            "RFC 3074 hash buckets (of 256) this server answers, sharing a lease database",
            "mostrecent",
        )
        self.dhcp_servers = gauge(
            "dhcp_balance_servers",
            "Live servers sharing the lease database (this one included)",
            "mostrecent",
        )
        self.dhcp_left = gauge(
            "dhcp_balance_left",
            "Broadcasts left to the server owning their hash bucket, since the start",
            "mostrecent",
        )
        self.pxe_boots = counter(
            "pxe_boots", "PXE boots by client architecture and outcome", ["arch", "outcome"]
        )
        self.pxe_boot_seconds = histogram(
            "pxe_boot_seconds",
            "DHCP DISCOVER to the last byte of the boot file",
            ["arch"],
            _BOOT_BUCKETS,
        )
        self.pxe_decisions = counter(
            "pxe_decisions",
            "Per-machine boot decisions by source (inventory, default, api, cache, "
            "local-state, builtin) and kind (boot, local, ignore)",
            ["source", "kind"],
        )
        self.pxe_boot_api = histogram(
            "pxe_boot_api_seconds",
            "Decision API requests (pxed --boot-api) by outcome: ok, rejected (non-200 or "
            "malformed: the machine is ignored), unreachable (refused, timed out, broken)",
            ["outcome"],
            _API_BUCKETS,
        )
        self.pxe_remote = counter(
            "pxe_remote_files",
            "Requests of remote kernels/initrds pxed streams (--http-port) by outcome: hit "
            "(the cache), miss (fetched), shared (joined a fetch under way), failed",
            ["outcome"],
        )
        self.pxe_remote_bytes = counter(
            "pxe_remote_fetched_bytes", "Bytes of remote files fetched from their upstreams"
        )
        self.http_requests = counter(
            "http_requests", "HTTP requests answered, by status code", ["status"]
        )
        self.http_bytes_sent = counter("http_sent_bytes", "File bytes sent in HTTP responses")
        self.http_active = gauge("http_active_connections", "HTTP connections open", "livesum")
        self.http_refused = counter(
            "http_refused_connections", "HTTP connections refused (503: out of file descriptors)"
        )

    # One family each, in the ptftpd namespace of this set's registry.

    def _counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(name, documentation, labels, namespace=_NAMESPACE, registry=self.registry)

    def _gauge(
        self, name: str, documentation: str, mode: GaugeMode, labels: Sequence[str] = ()
    ) -> Gauge:
        """`mode` is how several --workers' values add up (see the module doc)."""
        return Gauge(
            name,
            documentation,
            labels,
            namespace=_NAMESPACE,
            registry=self.registry,
            multiprocess_mode=mode,
        )

    def _histogram(
        self, name: str, documentation: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> Histogram:
        return Histogram(
            name,
            documentation,
            labels,
            namespace=_NAMESPACE,
            registry=self.registry,
            buckets=buckets,
        )

    def record_http_request(self, status: int, bytes_sent: int) -> None:
        self.http_requests.labels(_label(str(status), HTTP_STATUSES)).inc()
        self.http_bytes_sent.inc(bytes_sent)

    def record_transfer_started(self, direction: Direction) -> None:
        self.tftp_started.labels(direction).inc()
        self.tftp_active.inc()

    def record_transfer_finished(self, record: TransferRecord) -> None:
        self.tftp_active.dec()
        if record.outcome == "completed":
            self.tftp_completed.labels(record.direction).inc()
        else:
            reason = _label(record.outcome, FAILURE_REASONS)
            self.tftp_failed.labels(record.direction, reason).inc()
        self.tftp_bytes_sent.inc(record.bytes_sent)
        self.tftp_bytes_received.inc(record.bytes_received)
        self.tftp_duration.labels(record.direction).observe(record.seconds)

    def record_dhcp_message(self, direction: Literal["in", "out"], message_type: str) -> None:
        self.dhcp_messages.labels(direction, _label(message_type, DHCP_TYPES)).inc()

    def record_leases(self, counts: LeaseCounts) -> None:
        self.dhcp_leases.labels("active").set(counts.active)
        self.dhcp_leases.labels("offered").set(counts.offered)
        self.dhcp_leases.labels("declined").set(counts.declined)
        self.dhcp_pool_free.set(counts.free)

    def record_pxe_boot(self, arch_code: int, outcome: str, seconds: float | None) -> None:
        name = ARCHITECTURES.get(arch_code)
        arch = "other" if name is None else "-".join(name.lower().split())
        self.pxe_boots.labels(arch, _label(outcome, BOOT_OUTCOMES)).inc()
        if seconds is not None:
            self.pxe_boot_seconds.labels(arch).observe(seconds)


_active: Metrics | None = None
_http: list[WSGIServer] = []  # the HTTP server of `serve`, closed in forked workers


def use_multiprocess(directory: Path) -> None:
    """Record into memory-mapped files in `directory` (an empty private directory),
    summed by the process that calls :func:`serve` (see the module doc). Call before any
    metric object exists, i.e. before :func:`enable` or :func:`serve`."""
    if _active is not None:
        raise RuntimeError("use_multiprocess() after metrics were enabled")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    # prometheus-client picks the value class when it is imported, which happened
    # before this process knew it would fork workers: pick again.
    _values.ValueClass = _values.get_value_class()  # type: ignore[no-untyped-call]


def enable(metrics: Metrics | None = None) -> Metrics:
    """Make the facade functions record into `metrics` (a new set by default)."""
    global _active
    _active = metrics if metrics is not None else Metrics()
    return _active


def disable() -> None:
    global _active
    _active = None


class WorkersCollector(multiprocess.MultiProcessCollector):
    """The workers' files summed, skipping a file a worker has just created and not yet
    sized: prometheus-client opens a new file, then extends it, and a scrape between the
    two would fail on the empty file (HTTP 500) instead of counting it next time. A file
    gone meanwhile (a dead worker's live gauge) is skipped too."""

    def collect(self) -> Iterable[Metric]:
        files = []
        for path in glob.glob(os.path.join(self._path, "*.db")):
            try:
                if os.path.getsize(path) >= _HEADER_BYTES:
                    files.append(path)
            except OSError:
                continue
        merged: Iterable[Metric] = self.merge(files, accumulate=True)  # type: ignore[no-untyped-call]
        return merged


def serve(address: str, port: int) -> Metrics:
    """Enable metrics and serve them at http://ADDRESS:PORT/metrics in a daemon thread.

    Call after binding the server's own sockets and before dropping privileges (a port
    below 1024 needs them). Raises OSError (e.g. address in use) for a one-line error.
    """
    metrics = _active if _active is not None else enable()
    registry = metrics.registry
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        WorkersCollector(registry)  # type: ignore[no-untyped-call]
    # The scrape thread must never take the process's signals (a thread inherits its
    # creator's mask): a --workers parent waits for SIGCHLD, SIGTERM and SIGHUP with
    # sigwait, and one delivered to this thread instead would never reach it.
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        server, _ = start_http_server(port, address, registry)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    _http.append(server)
    return metrics


def forget_http_server() -> None:
    """In a forked worker: close its copy of the parent's metrics listening socket."""
    for server in _http:
        server.socket.close()
    _http.clear()


def worker_exited(pid: int) -> None:
    """A --workers child ended: drop its live gauges (multiprocess mode only)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def record_event(event: Event) -> None:
    """The subscriber to the typed events of `ptftpd.events`: TFTP transfers started
    and finished (by failure kind), TFTP requests refused (by kind), DHCP and DHCPv6
    messages in and out (by type), DHCP lease and DHCPv6 binding events (by kind).
    Other events are not counted."""
    if _active is None:
        return
    if isinstance(event, TransferStarted):
        _active.record_transfer_started("read" if event.is_read else "write")
    elif isinstance(event, TransferFinished):
        _active.record_transfer_finished(transfer_record(event))
    elif isinstance(event, TransferRefused):
        direction = "read" if event.is_read else "write"
        _active.tftp_refused.labels(direction, _label(event.kind.value, FAILURE_REASONS)).inc()
    elif isinstance(event, DhcpMessage):
        _active.record_dhcp_message(event.direction, event.type)
    elif isinstance(event, Dhcp6Message):
        _active.dhcp6_messages.labels(event.direction, _label(event.type, DHCP6_TYPES)).inc()
    elif isinstance(event, LeaseEvent):
        _active.dhcp_lease_events.labels(_label(event.kind.value, LEASE_KINDS)).inc()
    elif isinstance(event, Lease6Event):
        _active.dhcp6_lease_events.labels(_label(event.kind.value, LEASE_KINDS)).inc()
    elif isinstance(event, BalanceChanged):
        _active.dhcp_buckets.set(event.buckets)
        _active.dhcp_servers.set(len(event.servers))
        _active.dhcp_left.set(event.left)


def transfer_record(done: TransferFinished) -> TransferRecord:
    """A finished transfer as the metrics count it: its kind is the failure label."""
    outcome = "completed"
    if done.failure is not None:
        outcome = (done.kind or Failure.OTHER).value
    sent, received = (done.bytes, 0) if done.is_read else (0, done.bytes)
    direction: Direction = "read" if done.is_read else "write"
    return TransferRecord(direction, outcome, sent, received, done.seconds)


def tftp_started(direction: Direction) -> None:
    if _active is not None:
        _active.record_transfer_started(direction)


def tftp_finished(record: TransferRecord) -> None:
    if _active is not None:
        _active.record_transfer_finished(record)


def tftp_dropped(peer_ip: str) -> None:
    if _active is not None:
        _active.tftp_dropped.inc()


def dhcp_message(direction: Literal["in", "out"], message_type: str) -> None:
    if _active is not None:
        _active.record_dhcp_message(direction, message_type)


def dhcp_leases(counts: LeaseCounts) -> None:
    if _active is not None:
        _active.record_leases(counts)


def pxe_boot(arch_code: int, outcome: str, seconds: float | None) -> None:
    if _active is not None:
        _active.record_pxe_boot(arch_code, outcome, seconds)


def pxe_decision(source: str, kind: str) -> None:
    if _active is not None:
        _active.pxe_decisions.labels(
            _label(source, DECISION_SOURCES), _label(kind, DECISION_KINDS)
        ).inc()


def pxe_boot_api(outcome: str, seconds: float) -> None:
    """One decision API request (pxed --boot-api) and how long it took."""
    if _active is not None:
        _active.pxe_boot_api.labels(_label(outcome, API_OUTCOMES)).observe(seconds)


def pxe_remote(outcome: str, size: int) -> None:
    """One request of a remote file (`ptftpd.pxe.remote`): its outcome and bytes."""
    if _active is not None:
        _active.pxe_remote.labels(_label(outcome, REMOTE_OUTCOMES)).inc()
        if outcome in ("miss", "failed"):
            _active.pxe_remote_bytes.inc(size)


def http_request(status: int, bytes_sent: int) -> None:
    if _active is not None:
        _active.record_http_request(status, bytes_sent)


def http_connections(open_now: int) -> None:
    if _active is not None:
        _active.http_active.set(open_now)


def http_refused() -> None:
    if _active is not None:
        _active.http_refused.inc()
