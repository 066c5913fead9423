"""Issue 23: pxed's boot timeline is fed by its servers' events and wakes itself up.

The service's own wiring: the proxyDHCP / boot server path (`PxeService._received`),
the boot tracker's TFTP callbacks from a real `TftpServer` on loopback with tftp-hpa as
the client, the stall timer armed from `Timeline.get_timer()` (no polling), and the
watchers told of changed attempts."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import time
from ipaddress import IPv4Network
from pathlib import Path

from pxe_requests import FILES, SERVER, request

from ptftpd.dhcp import DhcpConfig, MessageType, encode
from ptftpd.events import DhcpMessage
from ptftpd.pxe import PxeConfig, PxeService
from ptftpd.pxe.timeline import Attempt, Timeline
from ptftpd.pxe.timeline_driver import TimelineDriver
from ptftpd.tftp.server import ServerConfig, TftpServer
from support import require_tool

MAC = "52:54:00:12:34:56"
EDK2 = "PXEClient:Arch:00007:UNDI:003000"


def proxy_service(root: Path, **changes: object) -> PxeService:
    dhcp = DhcpConfig(server_ip=SERVER, network=IPv4Network("10.78.0.0/24"), bootfile="default.0")
    config = PxeConfig(dhcp=dhcp, tftp=ServerConfig(root=root), files=FILES, proxy=True)
    return PxeService(dataclasses.replace(config, **changes))  # type: ignore[arg-type]


def test_proxy_dhcp_and_a_real_tftp_download_make_one_completed_attempt(
    tmp_path: Path,
) -> None:
    tftp = require_tool("tftp")
    root = tmp_path / "root"
    root.mkdir()
    (root / "ipxe.efi").write_bytes(b"x" * 5000)
    svc = proxy_service(root, boot_idle=0.3, boot_records=2)
    told: list[list[Attempt]] = []
    svc.timeline.watch(told.append)
    work = tmp_path / "client"
    work.mkdir()

    async def run() -> None:
        server = TftpServer(
            svc.config.tftp,
            on_started=svc._tracker.started,
            on_finished=svc._tracker.finished,
            on_refused=svc._tracker.refused,
        )
        await server.start(["127.0.0.1"], 0)
        port = server.bound[0][1]
        try:
            # The firmware's proxy DISCOVER on 67, then its boot server REQUEST on 4011
            # from the address it got elsewhere (127.0.0.1 here: the TFTP peer).
            discover = request(arch=7, vendor=EDK2)
            svc._received(encode(discover), ("0.0.0.0", 68), port=svc.config.dhcp.port)
            boot = request(MessageType.REQUEST, arch=7, vendor=EDK2, ciaddr="127.0.0.1")
            svc._received(encode(boot), ("127.0.0.1", 68), port=svc.config.boot_server_port)
            get = ["sh", "-c", f"cd {work} && {tftp} 127.0.0.1 {port} -m octet -c get ipxe.efi"]
            done = await asyncio.to_thread(subprocess.run, get, timeout=20)
            assert done.returncode == 0
            await asyncio.sleep(0.2)  # the watchers' batch
        finally:
            server.close()

    asyncio.run(run())
    [attempt] = svc.timeline.timeline.machine(MAC)
    kinds = [s["kind"] for s in attempt["steps"]]
    assert kinds == ["dhcp.discover", "dhcp.request", "tftp.request", "tftp.done"], kinds
    assert attempt["state"] == "completed"
    assert attempt["steps"][-1]["bytes"] == 5000
    assert [a.mac for batch in told for a in batch] == [MAC]


def test_the_stall_timer_is_armed_from_the_timeline_and_never_polls(tmp_path: Path) -> None:
    svc = proxy_service(tmp_path, boot_idle=0.3)
    driver = svc.timeline
    told: list[str] = []
    driver.watch(lambda batch: told.extend(a.state for a in batch))

    async def run() -> None:
        assert driver._timer is None  # nothing in progress: nothing scheduled
        t0 = time.monotonic()
        svc._received(encode(request(arch=7, vendor=EDK2)), ("0.0.0.0", 68), port=67)
        timer = driver._timer
        assert timer is not None
        assert abs(timer.when() - (asyncio.get_running_loop().time() + 0.3)) < 0.05
        await asyncio.sleep(0.15)
        [attempt] = driver.timeline.attempts(MAC)
        assert attempt.state == "in_progress"
        await asyncio.sleep(0.5)
        assert attempt.state == "stalled" and attempt.stalled_at == "dhcp.discover"
        assert time.monotonic() - t0 < 2
        assert driver._timer is None  # a stalled attempt cannot stall again

    asyncio.run(run())
    assert told == ["in_progress", "stalled"]


def test_a_reload_bounds_the_attempts_kept(tmp_path: Path) -> None:
    for name in FILES.configured():
        (tmp_path / name[1]).write_bytes(b"boot")
    svc = proxy_service(tmp_path, boot_records=3)
    for n in range(3):
        mac = bytes.fromhex(f"5254000000{n:02x}")
        msg = request(arch=7, vendor=EDK2)
        msg.chaddr = mac + b"\x00" * 10
        svc._received(encode(msg), ("0.0.0.0", 68), port=67)
    assert len(svc.timeline.timeline) == 3
    svc.reload(dataclasses.replace(svc.config, boot_records=1))
    assert [a.mac for a in svc.timeline.timeline.attempts()] == ["52:54:00:00:00:02"]


def test_a_reload_changes_the_api_token_and_keeps_the_api_address(tmp_path: Path) -> None:
    for name in FILES.configured():
        (tmp_path / name[1]).write_bytes(b"boot")
    svc = proxy_service(tmp_path, api=("127.0.0.1", 9470), api_token="a" * 16)
    router = svc.api_routes()
    new = dataclasses.replace(svc.config, api=("127.0.0.1", 9471), api_token="b" * 16)
    summary = svc.reload(new)
    assert "kept until a restart: api" in summary
    assert svc.config.api == ("127.0.0.1", 9470)
    assert router.token() == "b" * 16  # the running API's table reads the new one


def test_a_watcher_that_stops_watching_hears_nothing_more() -> None:
    """What the boot records and the OTLP traces do when they close: the driver calls
    them no more, however they stop (by `unwatch`, or the function `watch` returned)."""
    now = [100.0]
    driver = TimelineDriver(Timeline(), clock=lambda: now[0])
    first: list[str] = []
    second: list[str] = []

    def hear_first(batch: list[Attempt]) -> None:
        first.extend(a.mac for a in batch)

    stop_second = driver.watch(lambda batch: second.extend(a.mac for a in batch))
    driver.watch(hear_first)
    driver.feed(DhcpMessage("in", "discover", "52:54:00:00:00:01"))
    driver.flush()
    driver.unwatch(hear_first)
    driver.unwatch(hear_first)  # a second time: nothing
    stop_second()
    driver.feed(DhcpMessage("in", "discover", "52:54:00:00:00:02"))
    driver.flush()
    assert first == second == ["52:54:00:00:00:01"]
