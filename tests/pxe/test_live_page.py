"""Issue 23 item 4: the live page at `/` in a real headless browser (Debian's chromium).

The API listener runs in a thread of this process on loopback, its timeline fed the
typed events of a few realistic boots (a completed BIOS one, a UEFI HTTP one, a missing
file, a TFTP stall with retransmissions, an offer never requested) on a fixed clock, so
the screenshot is the same on every run. chromium is driven with the Chrome DevTools
protocol over `--remote-debugging-pipe` (JSON messages ending in NUL on fds 3 and 4):
the page loads, the test feeds a new machine's DISCOVER and then its download, and
reads the DOM until the page shows each (the event stream, not a reload); the state
filter is exercised; the screenshot goes to docs/img/boot-timeline.png (the README's).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from ptftpd.events import (
    DhcpMessage,
    Failure,
    LeaseEvent,
    LeaseKind,
    TransferFinished,
    TransferRefused,
    TransferStarted,
)
from ptftpd.http import Served
from ptftpd.pxe.api import ApiServer, EventHub, Router, add_boot_routes, api_config
from ptftpd.pxe.timeline import Timeline
from ptftpd.pxe.timeline_driver import TimelineDriver
from support import require_tool

pytestmark = pytest.mark.timeout(120)

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "boot-timeline.png"
START = 1_796_371_200.0  # 2026-12-04 08:00:00 UTC: the fake clock's zero
BIOS = "PXEClient:Arch:00000:UNDI:002001"
EFI = "PXEClient:Arch:00007:UNDI:003016"
NEW_MAC = "52:54:00:6b:01:0f"
OTHER = {
    "mac": "52:54:00:6b:01:0a", "attempt": 1, "started": START - 0.5, "updated": START - 0.3,
    "state": "in_progress", "reason": None, "stalled_at": None, "diagnosis": [],
    "steps": [{"time": START - 0.5, "kind": "dhcp.discover", "direction": "in", "port": 67},
              {"time": START - 0.3, "kind": "dhcp.offer", "direction": "out", "port": 67,
               "address": "10.78.1.40"}],
    "steps_dropped": 0, "server": "pxe-b",
}  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def dora(feed: Callable[[object, float], None], mac: str, ip: str, vendor: str, t: float) -> float:
    address = IPv4Address(ip)
    feed(DhcpMessage("in", "discover", mac, vendor_class=vendor, port=67), t)
    feed(LeaseEvent(LeaseKind.OFFERED, address, mac), t + 0.01)
    feed(DhcpMessage("out", "offer", mac, address, port=67), t + 0.01)
    feed(DhcpMessage("in", "request", mac, address, vendor_class=vendor, port=67), t + 1.02)
    feed(LeaseEvent(LeaseKind.BOUND, address, mac), t + 1.03)
    feed(DhcpMessage("out", "ack", mac, address, port=67), t + 1.03)
    return t + 1.2


def history(feed: Callable[[object, float], None]) -> None:
    """Five machines, one of each shape the page must show."""
    ip = "10.78.0.101"
    t = dora(feed, "52:54:00:6b:01:0a", ip, BIOS, 0.0)
    feed(TransferStarted(ip, "undionly.kpxe", options=(("tsize", "0"), ("blksize", "1432"))), t)
    feed(TransferFinished(ip, "undionly.kpxe", True, 71_234, 0.4, None, blksize=1432), t + 0.4)
    ip = "10.78.0.102"
    t = dora(feed, "52:54:00:6b:01:0b", ip, "HTTPClient:Arch:00016:UNDI:003001", 20.0)
    feed(Served(ip, "GET", "/ipxe.efi", 200, 1_048_576, 0.3, True), t + 0.3)
    ip = "10.78.0.103"
    t = dora(feed, "52:54:00:6b:01:0c", ip, EFI, 41.0)
    feed(TransferRefused(ip, "grubx64.efi", "file not found", Failure.NOT_FOUND, 1), t)
    ip = "10.78.0.104"
    t = dora(feed, "52:54:00:6b:01:0d", ip, EFI, 63.0)
    feed(TransferStarted(ip, "vmlinuz", options=(("blksize", "8192"),)), t)
    stalled = TransferFinished(
        ip, "vmlinuz", True, 0, 15.0, "timeout", Failure.TIMEOUT, None,
        last_block=1, retransmissions=5, blksize=8192,
    )  # fmt: skip
    feed(stalled, t + 15.0)
    feed(DhcpMessage("in", "discover", "52:54:00:6b:01:0e", vendor_class=EFI, port=67), 90.0)
    feed(DhcpMessage("out", "offer", "52:54:00:6b:01:0e", IPv4Address(ip), port=67), 90.01)


class ApiThread:
    """The API listener and its timeline in their own event loop and thread."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.driver = TimelineDriver(
            Timeline(stall=30.0, http_port=8080),
            clock=self.clock,
            wall=lambda: START + self.clock.now,
        )
        router = Router()
        # Another server sharing the lease database saw 52:54:00:6b:01:0a's attempt 1
        # too (active-active): its record comes beside ours, never in its place.
        hub = EventHub(self.driver, server="pxe-a")
        add_boot_routes(router, self.driver, hub, lambda: [OTHER], "pxe-a")
        self.server = ApiServer(api_config(("127.0.0.1", 0)), router)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ApiThread:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    @property
    def url(self) -> str:
        assert self.server.bound is not None
        return f"http://127.0.0.1:{self.server.bound[1]}/"

    def feed(self, event: object, at: float) -> None:
        """`event` happens at `at` seconds on the fake clock, in the API's loop."""

        def step() -> None:
            self.clock.now = at
            self.driver.feed(event)  # type: ignore[arg-type]

        done = threading.Event()
        self.loop.call_soon_threadsafe(lambda: (step(), done.set()))
        assert done.wait(5)

    def stall_check(self, at: float) -> None:
        def check() -> None:
            self.clock.now = at
            self.driver.timeline.handle_timer(at)
            self.driver._schedule_flush()

        self.loop.call_soon_threadsafe(check)


class DevTools:
    """A minimal Chrome DevTools protocol client over --remote-debugging-pipe."""

    def __init__(self, to_browser: int, from_browser: int) -> None:
        self.out, self.inp = to_browser, from_browser
        self.next_id = 0
        self.buffer = b""
        self.session: str | None = None

    def call(self, method: str, timeout: float = 15.0, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if self.session is not None:
            message["sessionId"] = self.session
        os.write(self.out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self.next_id:
                    if "error" in reply:
                        raise AssertionError(f"{method}: {reply['error']}")
                    return dict(reply.get("result", {}))
            left = deadline - time.monotonic()
            assert left > 0, f"no answer to {method} within {timeout} s"
            ready, _, _ = select.select([self.inp], [], [], left)
            if ready:
                chunk = os.read(self.inp, 1 << 20)
                assert chunk, "chromium closed the pipe"
                self.buffer += chunk

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
            time.sleep(0.05)


@contextmanager
def chromium(tmp: Path) -> Iterator[DevTools]:
    exe = require_tool("chromium")
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    argv = [
        require_tool("bash"), "-c", f'exec "$0" "$@" 3<&{to_r} 4>&{from_w}', exe,
        "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
        "--no-first-run", "--disable-extensions", "--disable-background-networking",
        "--hide-scrollbars", "--font-render-hinting=none", f"--user-data-dir={tmp}",
        "--window-size=1280,860", "about:blank",
    ]  # fmt: skip
    log = open(tmp.parent / "chromium.log", "wb")  # noqa: SIM115
    env = {**os.environ, "TZ": "UTC", "LANG": "en_GB.UTF-8"}
    proc = subprocess.Popen(
        argv, pass_fds=(to_r, from_w), stdout=log, stderr=log, env=env, start_new_session=True
    )
    os.close(to_r)
    os.close(from_w)
    try:
        tools = DevTools(to_w, from_r)
        target = tools.call("Target.createTarget", url="about:blank")["targetId"]
        attached = tools.call("Target.attachToTarget", targetId=target, flatten=True)
        tools.session = attached["sessionId"]
        tools.call("Page.enable")
        tools.call("Runtime.enable")
        yield tools
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        os.close(to_w)
        os.close(from_r)
        log.close()


CARDS = "document.querySelectorAll('article.boot')"


def test_the_live_page_shows_boots_as_they_happen(tmp_path: Path) -> None:
    with ApiThread() as api, chromium(tmp_path / "profile") as tools:
        history(api.feed)
        api.stall_check(125.0)  # the offer never requested is stalled 30 s later
        tools.call(
            "Emulation.setDeviceMetricsOverride", width=1280, height=860, deviceScaleFactor=1,
            mobile=False,
        )  # fmt: skip
        tools.call("Page.navigate", url=api.url)
        tools.wait(f"{CARDS}.length === 6 && document.getElementById('live').className === 'on'",
                   10, "the six boots and the live stream")  # fmt: skip
        states = tools.evaluate(f"[...{CARDS}].map(c => c.dataset.mac + ' ' + c.dataset.state)")
        assert states == [
            "52:54:00:6b:01:0e stalled",
            "52:54:00:6b:01:0d failed",
            "52:54:00:6b:01:0c failed",
            "52:54:00:6b:01:0b completed",
            "52:54:00:6b:01:0a completed",
            "52:54:00:6b:01:0a in_progress",
        ]
        assert "seen by pxe-b" in tools.evaluate(f"{CARDS}[5].innerText")
        text = tools.evaluate("document.body.innerText")
        assert "TFTP stalled at block 1 of vmlinuz after 5 retransmissions" in text
        assert "grubx64.efi" in text and "offered" in text

        # Live: a new machine's DISCOVER, then its download, reach the page by themselves.
        card = f"document.querySelector('article.boot[data-mac=\"{NEW_MAC}\"]')"
        assert tools.evaluate(f"{card} === null")
        sent = time.monotonic()
        t = dora(api.feed, NEW_MAC, "10.78.0.105", EFI, 130.0)
        tools.wait(f"{card} !== null && {card}.dataset.state === 'in_progress'", 2.0,
                   "the new machine on the page")  # fmt: skip
        print(f"new machine on the page {time.monotonic() - sent:.2f} s after its events")
        api.feed(TransferStarted("10.78.0.105", "ipxe.efi", options=(("blksize", "1468"),)), t)
        api.feed(TransferFinished("10.78.0.105", "ipxe.efi", True, 1_032_192, 0.9, None), t + 0.9)
        tools.wait(f"{card}.dataset.state === 'completed'", 2.0, "the download on the page")
        assert tools.evaluate(f"{CARDS}.length") == 7

        # The state filter, then back to every state.
        select_failed = (
            "(() => { const s = document.getElementById('state'); s.value = 'failed';"
            " s.dispatchEvent(new Event('change')); return true; })()"
        )
        tools.evaluate(select_failed)
        shown = tools.evaluate(f"[...{CARDS}].map(c => c.dataset.state)")
        assert shown == ["failed", "failed"]
        tools.evaluate(select_failed.replace("'failed'", "''"))
        assert tools.evaluate(f"{CARDS}.length") == 7

        time.sleep(1.4)  # the newest card's highlight fades
        shot = tools.call("Page.captureScreenshot", format="png")
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        png = base64.b64decode(shot["data"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[16:24] == (1280).to_bytes(4, "big") + (
            860
        ).to_bytes(4, "big")
        SCREENSHOT.write_bytes(png)
