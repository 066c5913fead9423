"""Boot attempts as OpenTelemetry traces (issue 23 item 6): `pxed --otlp URL`.

One trace per boot attempt: a root span `boot MAC` from the attempt's first step to its
last, with the verdict (`boot.state`, `boot.reason`, `boot.diagnosis`), and one child
span per step named by its kind (`dhcp.discover`, `tftp.done`...) with the step's
details as attributes; a transfer's span lasts the transfer (its `seconds`), other
steps are instants. The OpenTelemetry SDK builds the spans and its OTLP/HTTP exporter
sends them from its own thread (`BatchSpanProcessor`: a bounded queue, spans beyond it
are dropped by the SDK, never queued without bound); nothing is hand-rolled here.

An attempt is exported once, when it is over: quiet for `quiet` seconds (pxed's
--boot-idle), replaced by the machine's next attempt, dropped from the timeline, or at
shutdown. Steps it takes after that are not exported again (counted in `late`).

The SDK is optional: the `otel` extra (`pip install 'ptftpd[otel]'`). Without it,
`open_traces` raises `TracesUnavailable` with the one line pxed prints.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ptftpd.log import Outage
from ptftpd.pxe.timeline import COMPLETED, IN_PROGRESS

if TYPE_CHECKING:
    from ptftpd.pxe.timeline import Attempt
    from ptftpd.pxe.timeline_driver import TimelineDriver

__all__ = ["BootTraces", "TracesUnavailable", "check_available", "open_traces"]

log = logging.getLogger("ptftpd.pxe")

EXTRA = "pip install 'ptftpd[otel]'"
_NS = 1_000_000_000


class TracesUnavailable(Exception):
    """--otlp cannot be used (the otel extra is missing): one line for the CLI."""


def _attribute(value: object) -> str | bool | int | float | None:
    """A step detail as an OpenTelemetry attribute value (None: left out)."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


def _attributes(prefix: str, details: Mapping[str, Any]) -> dict[str, Any]:
    found = {f"{prefix}{key}": _attribute(value) for key, value in details.items()}
    return {key: value for key, value in found.items() if value is not None}


class BootTraces:
    """Exports each finished attempt of `driver`'s timeline as one trace."""

    def __init__(
        self,
        driver: TimelineDriver,
        url: str,
        *,
        service: str = "pxed",
        quiet: float = 30.0,
        timeout: float = 5.0,
    ) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            raise TracesUnavailable(f"--otlp needs the otel extra: {EXTRA}") from None
        self.driver = driver
        self.quiet = quiet
        resource = Resource.create({"service.name": service, "host.name": socket.gethostname()})
        self._provider = TracerProvider(resource=resource)
        exporter = OTLPSpanExporter(endpoint=url, timeout=timeout)
        outage = Outage(log, f"boot traces not sent to {url}", f"boot traces sent to {url} again")
        send = exporter.export

        def export(spans: Any) -> Any:
            """The SDK's export, its outcome said in one line when it changes (the
            SDK's own per-batch retry lines are muted)."""
            result = send(spans)
            if result.name == "SUCCESS":
                outage.worked()
            else:
                outage.failed("the collector does not answer")
            return result

        exporter.export = export  # type: ignore[method-assign,unused-ignore]
        for name in ("opentelemetry.exporter.otlp", "opentelemetry.sdk.trace.export"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        self._provider.add_span_processor(
            BatchSpanProcessor(exporter, max_queue_size=4096, schedule_delay_millis=1000)
        )
        self._tracer = self._provider.get_tracer("ptftpd.pxe.timeline")
        # Attempts changed and not exported yet (identity -> attempt), bounded by the
        # timeline's attempts: an attempt dropped from it is exported at once.
        self._open: dict[int, Attempt] = {}
        # Exported and still in the timeline (identity -> attempt, bounded like it): the
        # reference keeps the identity from being reused by a new attempt meanwhile.
        self._done: dict[int, Attempt] = {}
        self.exported = 0
        self.late = 0
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.driver.watch(self.changed)

    # -- which attempts are over (no clock reads: `now` is the driver's) ---------------

    def changed(self, attempts: list[Attempt]) -> None:
        """The driver's watcher (in the loop)."""
        for attempt in attempts:
            key = id(attempt)
            if self._done.get(key) is attempt:
                self.late += 1
                continue
            self._open[key] = attempt
        self.export_over(self.driver.clock())
        self._arm()

    def over(self, attempt: Attempt, now: float) -> bool:
        timeline = self.driver.timeline
        if timeline.current(attempt.mac) is not attempt:  # replaced or dropped
            return True
        if attempt.state == IN_PROGRESS and attempt.running:
            return False
        return now - attempt.last_progress >= self.quiet

    def export_over(self, now: float) -> int:
        """Export the attempts that are over at `now`; how many."""
        over = [a for a in self._open.values() if self.over(a, now)]
        for attempt in over:
            self._export(attempt)
        # Forget exported attempts the timeline no longer keeps.
        kept = {id(a) for a in self.driver.timeline.attempts()}
        for key in [k for k in self._done if k not in kept]:
            del self._done[key]
        return len(over)

    def _arm(self) -> None:
        if self._timer is not None or not self._open:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        due = min(a.last_progress for a in self._open.values()) + self.quiet
        delay = max(0.05, due - self.driver.clock())
        self._timer = loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.export_over(self.driver.clock())
        self._arm()

    # -- spans -------------------------------------------------------------------------

    def _export(self, attempt: Attempt) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import Status, StatusCode

        key = id(attempt)
        self._open.pop(key, None)
        self._done[key] = attempt
        view = attempt.view(self.driver.offset())
        steps = view["steps"]
        start = float(view["started"])
        end = max([start, *(float(s["time"]) for s in steps)])
        attributes: dict[str, Any] = {
            "boot.mac": attempt.mac,
            "boot.attempt": attempt.number,
            "boot.state": attempt.state,
            "boot.steps_dropped": attempt.steps_dropped,
            "boot.diagnosis": list(view["diagnosis"]),
        }
        for name in ("reason", "stalled_at"):
            if view.get(name) is not None:
                attributes[f"boot.{name}"] = view[name]
        root = self._tracer.start_span(
            f"boot {attempt.mac}",
            attributes=attributes,
            start_time=int(start * _NS),
        )
        if attempt.state not in (IN_PROGRESS, COMPLETED):
            root.set_status(Status(StatusCode.ERROR, view.get("reason") or attempt.state))
        context = trace.set_span_in_context(root)
        for step in steps:
            details = {k: v for k, v in step.items() if k not in ("time", "kind")}
            at = float(step["time"])
            seconds = step.get("seconds")
            began = at - float(seconds) if isinstance(seconds, int | float) else at
            span = self._tracer.start_span(
                str(step["kind"]),
                context=context,
                attributes=_attributes("step.", details),
                start_time=int(max(began, start) * _NS),
            )
            if step.get("error") is not None or (step.get("status") or 0) >= 400:
                span.set_status(Status(StatusCode.ERROR, str(step.get("error") or "")))
            span.end(end_time=int(at * _NS))
        root.end(end_time=int(end * _NS))
        self.exported += 1

    def close(self) -> None:
        """Export every attempt still open, send what is queued (bounded), stop (call
        the driver's `flush` first, so the last changes are heard)."""
        self.driver.unwatch(self.changed)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for attempt in list(self._open.values()):
            self._export(attempt)
        self._provider.force_flush(timeout_millis=5000)
        self._provider.shutdown()


def check_available() -> None:
    """`TracesUnavailable` (one line naming the extra) when the SDK is not installed."""
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        raise TracesUnavailable(f"--otlp needs the otel extra: {EXTRA}") from None


def open_traces(driver: TimelineDriver, url: str | None, quiet: float) -> BootTraces | None:
    """pxed's --otlp: None without a URL; `TracesUnavailable` without the extra."""
    if url is None:
        return None
    return BootTraces(driver, url, quiet=quiet)
