"""Issue 22 item 2 on real firmware: SeaBIOS with QEMU's iPXE ROM boots by pxed's
decision API (``--boot-api``, the pixiecore-format test API tests/pxe/pixie_api.py in
the server's namespace): the API's iPXE script runs (its marker on the serial line);
then the API turns slow (5 s, past the 2 s deadline) and the same machine boots again
from the cached answer, which the log says."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from fwlab import lan, record_boot_time
from test_machines_boot import LINE_END, accel, bios_argv, boot

pytestmark = [pytest.mark.qemu, pytest.mark.netns, pytest.mark.timeout(600)]

MAC = "52:54:00:22:02:41"
MARKER = "BOOT-API-SCRIPT-" + "RAN"
API = Path(__file__).resolve().parent.parent / "pxe" / "pixie_api.py"


def test_the_api_decides_and_its_cache_stands_in_for_a_slow_api(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "boot.0").write_bytes(b"never served: the guest is iPXE already")
    rules = tmp_path / "rules.json"
    script = f"#!ipxe\necho {MARKER} ${{net0/mac}} {LINE_END}\nsleep 300\n"
    rules.write_text(json.dumps({MAC: [0, 200, json.dumps({"ipxe-script": script})]}))
    with lan(tmp_path) as net:
        net.start([sys.executable, str(API), "8041", str(rules)], "api")
        pxed = net.pxed(
            root, "boot.0", "--http-port", "8080", "--boot-api", "http://127.0.0.1:8041/"
        )
        first = boot(net, "first", bios_argv(net, "first", MAC), LINE_END)
        assert first.outcome == "ok", first.serial[-2000:] + pxed.output()[-3000:]
        assert f"{MARKER} {MAC} {LINE_END}" in first.serial
        rules.write_text(json.dumps({MAC: [5, 200, '{"ipxe-script": "#!ipxe\\nexit\\n"}']}))
        time.sleep(10.5)  # past the first answer's freshness: the next boot asks again
        second = boot(net, "second", bios_argv(net, "second", MAC), LINE_END)
        pxed.stop()
        log = pxed.output()
    assert second.outcome == "ok", second.serial[-2000:] + log[-3000:]
    assert f"{MARKER} {MAC} {LINE_END}" in second.serial
    assert f"boot API: {MAC}: no answer within the deadline; its last answer stands in" in log
    record_boot_time("bootapi-first", first.seconds, accel=accel())
    record_boot_time("bootapi-cached", second.seconds, accel=accel())
