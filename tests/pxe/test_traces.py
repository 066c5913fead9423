"""Issue 23 item 6: each boot attempt as an OpenTelemetry trace (`pxed --otlp URL`).

The exporter is the SDK's OTLP/HTTP one; the receiver is a small HTTP server in the
test that decodes the protobuf body (opentelemetry-proto's ExportTraceServiceRequest)
and keeps the spans. pxed's own path: proxyDHCP on 67, the boot server on 4011, a real
TftpServer on loopback with tftp-hpa as the client."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from pxe_requests import FILES, SERVER, request

from ptftpd.dhcp import DhcpConfig, MessageType, encode
from ptftpd.pxe import PxeConfig, PxeService
from ptftpd.pxe.settings import pxe_config
from ptftpd.pxe.traces import BootTraces, open_traces
from ptftpd.tftp.server import ServerConfig, TftpServer
from support import require_tool, script

MAC = "52:54:00:12:34:56"
EDK2 = "PXEClient:Arch:00007:UNDI:003000"


def value(any_value: Any) -> object:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


class Receiver:
    """An OTLP/HTTP traces endpoint on loopback: every span received, decoded."""

    def __init__(self, port: int = 0) -> None:
        self.spans: list[dict[str, Any]] = []
        self.resources: list[dict[str, object]] = []
        self.posts = 0
        spans, resources = self.spans, self.resources
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                assert self.path == "/v1/traces"
                assert self.headers["Content-Type"] == "application/x-protobuf"
                decoded = ExportTraceServiceRequest.FromString(body)
                receiver.posts += 1
                for rs in decoded.resource_spans:
                    resources.append({a.key: value(a.value) for a in rs.resource.attributes})
                    for ss in rs.scope_spans:
                        for span in ss.spans:
                            spans.append(
                                {
                                    "name": span.name,
                                    "trace": span.trace_id.hex(),
                                    "id": span.span_id.hex(),
                                    "parent": span.parent_span_id.hex(),
                                    "start": span.start_time_unix_nano / 1e9,
                                    "end": span.end_time_unix_nano / 1e9,
                                    "error": span.status.code == 2,
                                    "attributes": {a.key: value(a.value) for a in span.attributes},
                                }
                            )
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    try:
        yield made
    finally:
        made.close()


def proxy_service(root: Path, **changes: object) -> PxeService:
    dhcp = DhcpConfig(server_ip=SERVER, network=IPv4Network("10.78.0.0/24"), bootfile="default.0")
    config = PxeConfig(dhcp=dhcp, tftp=ServerConfig(root=root), files=FILES, proxy=True)
    return PxeService(dataclasses.replace(config, **changes))  # type: ignore[arg-type]


def test_a_boot_is_one_trace_with_a_span_per_step(tmp_path: Path, receiver: Receiver) -> None:
    """Proxy DISCOVER on 67, boot server REQUEST on 4011, then ipxe.efi over TFTP with
    tftp-hpa; once the attempt is quiet (boot idle 0.3 s) it goes out as one trace: a
    root span with the verdict and one child per step, in order, with the details."""
    tftp = require_tool("tftp")
    root = tmp_path / "root"
    root.mkdir()
    (root / "ipxe.efi").write_bytes(b"x" * 20000)
    svc = proxy_service(root, boot_idle=0.3, otlp=receiver.url)
    work = tmp_path / "client"
    work.mkdir()

    async def run() -> None:
        traces = open_traces(svc.timeline, svc.config.otlp, svc.config.boot_idle)
        assert traces is not None
        svc.traces = traces
        traces.start()
        server = TftpServer(
            svc.config.tftp,
            on_started=svc._tracker.started,
            on_finished=svc._tracker.finished,
            on_refused=svc._tracker.refused,
        )
        await server.start(["127.0.0.1"], 0)
        port = server.bound[0][1]
        try:
            svc._received(encode(request(arch=7, vendor=EDK2)), ("0.0.0.0", 68), port=67)
            boot = request(MessageType.REQUEST, arch=7, vendor=EDK2, ciaddr="127.0.0.1")
            svc._received(encode(boot), ("127.0.0.1", 68), port=4011)
            get = ["sh", "-c", f"cd {work} && {tftp} 127.0.0.1 {port} -m octet -c get ipxe.efi"]
            done = await asyncio.to_thread(subprocess.run, get, timeout=20)
            assert done.returncode == 0
            # Quiet for boot idle: exported by the exporter's own timer, sent by the
            # SDK's batch thread within its 1 s schedule.
            deadline = time.monotonic() + 8
            while not receiver.spans and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert traces.exported == 1
        finally:
            server.close()
            svc.close()

    asyncio.run(run())
    [attempt] = svc.timeline.timeline.attempts(MAC)
    roots = [s for s in receiver.spans if not s["parent"]]
    assert [r["name"] for r in roots] == [f"boot {MAC}"]
    root_span = roots[0]
    assert root_span["attributes"]["boot.state"] == "completed"
    assert root_span["attributes"]["boot.mac"] == MAC and not root_span["error"]
    children = [s for s in receiver.spans if s["parent"]]
    assert {s["trace"] for s in receiver.spans} == {root_span["trace"]}
    assert {s["parent"] for s in children} == {root_span["id"]}
    children.sort(key=lambda s: s["end"])
    assert [s["name"] for s in children] == [step.kind for step in attempt.steps]
    ports = [s["attributes"].get("step.port") for s in children if s["name"].startswith("dhcp")]
    assert ports == [67, 4011]  # the DISCOVER to 67, the REQUEST to the boot server
    [done_span] = [s for s in children if s["name"] == "tftp.done"]
    assert done_span["attributes"]["step.bytes"] == 20000
    assert done_span["attributes"]["step.file"] == "ipxe.efi"
    assert done_span["start"] <= done_span["end"]
    assert abs(done_span["end"] - time.time()) < 60  # wall-clock times
    assert root_span["start"] <= children[0]["start"] and root_span["end"] >= done_span["end"]
    assert receiver.resources[0]["service.name"] == "pxed"


def test_a_failed_boot_is_an_error_trace_with_its_diagnosis(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A file that is not there: the root span is an error with the reason and the
    diagnosis; exported at close even before boot idle passed."""
    root, work = tmp_path / "root", tmp_path / "client"
    root.mkdir()
    work.mkdir()
    svc = proxy_service(root, boot_idle=30.0, otlp=receiver.url)

    async def run() -> None:
        traces = open_traces(svc.timeline, receiver.url, 30.0)
        assert traces is not None
        svc.traces = traces
        traces.start()
        server = TftpServer(
            svc.config.tftp,
            on_started=svc._tracker.started,
            on_finished=svc._tracker.finished,
            on_refused=svc._tracker.refused,
        )
        await server.start(["127.0.0.1"], 0)
        try:
            svc._received(encode(request(arch=7, vendor=EDK2)), ("0.0.0.0", 68), port=67)
            boot = request(MessageType.REQUEST, arch=7, vendor=EDK2, ciaddr="127.0.0.1")
            svc._received(encode(boot), ("127.0.0.1", 68), port=4011)
            tftp = require_tool("tftp")
            get = f"cd {work} && {tftp} 127.0.0.1 {server.bound[0][1]} -c get nothere.efi"
            await asyncio.to_thread(subprocess.run, ["sh", "-c", get], timeout=20)
            await asyncio.sleep(0.3)
            assert traces.exported == 0  # not quiet yet
        finally:
            server.close()
            svc.close()  # exports what is open and flushes the SDK's queue

    asyncio.run(run())
    [root_span] = [s for s in receiver.spans if not s["parent"]]
    assert root_span["error"] and root_span["attributes"]["boot.state"] == "failed"
    assert "nothere.efi" in str(root_span["attributes"]["boot.reason"])
    diagnosis = root_span["attributes"]["boot.diagnosis"]
    assert isinstance(diagnosis, list) and any("nothere.efi" in d for d in diagnosis)
    [refused] = [s for s in receiver.spans if s["name"] == "tftp.refused"]
    assert refused["error"]


def test_the_setting_reaches_the_config() -> None:
    dhcp = DhcpConfig(server_ip=SERVER, network=IPv4Network("10.78.0.0/24"), bootfile="x")
    url = "http://collector:4318/v1/traces"
    assert pxe_config({"otlp": url}, dhcp, Path("/srv"), "x").otlp == url
    assert pxe_config({}, dhcp, Path("/srv"), "x").otlp is None


def test_without_the_extra_otlp_is_one_line(tmp_path: Path) -> None:
    """The SDK hidden (a package that refuses to import, first on the path): pxed
    --otlp says which extra to install, in one line, exit 1; a bad URL is a usage
    error (2)."""
    hide = tmp_path / "hide" / "opentelemetry"
    hide.mkdir(parents=True)
    (hide / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    root = tmp_path / "root"
    root.mkdir()
    (root / "ipxe.efi").write_bytes(b"x")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "hide"))
    argv = [script("pxed"), "--otlp", "http://127.0.0.1:4318/v1/traces", "lo", str(root)]
    done = subprocess.run([*argv, "ipxe.efi"], capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 1, done.stderr
    assert done.stderr == ("pxed: error: --otlp needs the otel extra: pip install 'ptftpd[otel]'\n")
    bad = [script("pxed"), "--otlp", "collector:4318", "lo", str(root), "ipxe.efi"]
    done = subprocess.run(bad, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "not an http:// or https:// URL" in done.stderr and "Traceback" not in done.stderr


def test_every_attempt_of_a_storm_is_exported_once(receiver: Receiver) -> None:
    """1,000 machines booting 5 times each with 2,048 attempts kept, the watcher told
    in batches of 100: each of the 5,000 attempts is exported once, when the machine's
    next attempt replaces it or it is dropped (an attempt freed and a new one made at
    the same address must not be taken for one already exported)."""
    from ptftpd.events import DhcpMessage, TransferFinished, TransferStarted
    from ptftpd.pxe.timeline import Timeline
    from ptftpd.pxe.timeline_driver import TimelineDriver

    now = [0.0]
    driver = TimelineDriver(Timeline(max_attempts=2048), clock=lambda: now[0])
    traces = open_traces(driver, receiver.url, quiet=3600.0)
    assert traces is not None
    driver.watch(traces.changed)
    for _ in range(5):
        for n in range(1000):
            mac, ip = f"52:54:00:00:{n >> 8:02x}:{n & 255:02x}", f"10.0.{n >> 8}.{n & 255}"
            driver.feed(DhcpMessage("in", "discover", mac))
            driver.feed(DhcpMessage("in", "request", mac, IPv4Address(ip)))
            driver.feed(TransferStarted(ip, "ipxe.efi"))
            driver.feed(TransferFinished(ip, "ipxe.efi", True, 10, 0.1, None))
            now[0] += 0.01
            if n % 100 == 99:  # batches, as the driver hands them out every 0.1 s
                driver.flush()
    assert (traces.exported, traces.late) == (4000, 0)  # the last 1,000 still going on
    assert len(traces._done) <= 2048 and len(traces._open) <= 2048
    traces.close()
    assert traces.exported == 5000


def test_a_collector_that_does_not_answer_is_one_line(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing listens at the URL: one warning when sending starts failing (none per
    batch, none of the SDK's retry lines), one when a collector answers again."""
    import logging
    import socket

    from ptftpd.events import DhcpMessage
    from ptftpd.pxe.timeline import Timeline
    from ptftpd.pxe.timeline_driver import TimelineDriver

    with socket.socket() as probe_socket:  # a free port, then nobody on it
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1/traces"
    now = [0.0]
    driver = TimelineDriver(Timeline(), clock=lambda: now[0])
    traces = BootTraces(driver, url, quiet=3600.0, timeout=1.0)
    driver.watch(traces.changed)
    caplog.set_level(logging.DEBUG)

    def boot(n: int) -> None:
        driver.feed(DhcpMessage("in", "discover", f"52:54:00:00:00:{n:02x}"))
        driver.flush()
        traces._export(next(iter(traces._open.values())))
        traces._provider.force_flush(timeout_millis=5000)

    boot(1)
    boot(2)
    lines = [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    down = f"boot traces not sent to {url}: the collector does not answer"
    assert lines == [("ptftpd.pxe", down)]
    again = Receiver(port)
    try:
        boot(3)
    finally:
        again.close()
    assert [s["name"] for s in again.spans if not s["parent"]] == ["boot 52:54:00:00:00:03"]
    lines = [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert lines[1:] == [("ptftpd.pxe", f"boot traces sent to {url} again")]
    traces.close()
