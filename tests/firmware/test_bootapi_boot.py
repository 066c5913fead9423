"""Issue 22 item 2 on real firmware: machines boot by pxed's decision API
(``--boot-api``, the pixiecore-format test API tests/pxe/pixie_api.py in the server's
namespace), all on one pxed, the guests side by side:

- first, at once: two SeaBIOS machines (QEMU's iPXE ROM) and an OVMF machine (its own
  PXE client gets ipxe.efi, whose iPXE then gets the script) each run the iPXE script
  the API gave for its MAC (the marker and the MAC on the serial line);
- the API turns slow for the first SeaBIOS machine (5 s, past the 2 s deadline): it
  boots again from its cached answer, which the log says;
- the API process is stopped: the second SeaBIOS machine boots again from its cached
  answer ("cannot reach the API" in the log). The stopped API's machine starts as soon
  as the slow one's deadline has passed, so the two second boots overlap.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from fwlab import Boot, fw_cfg_only, lan, ovmf_argv, record_boot_time, require_file
from test_machines_boot import LINE_END, accel, bios_argv, boot

from ptftpd.pxe.bootapi import FRESH
from support import Process

pytestmark = [pytest.mark.qemu, pytest.mark.netns, pytest.mark.timeout(600)]

MAC_SLOW = "52:54:00:22:02:41"  # SeaBIOS iPXE: the API, then the API slow
MAC_DOWN = "52:54:00:22:02:42"  # SeaBIOS iPXE: the API, then the API stopped
MAC_UEFI = "52:54:00:22:02:43"  # OVMF -> ipxe.efi: the API
MARKER = "BOOT-API-SCRIPT-" + "RAN"
API = Path(__file__).resolve().parent.parent / "pxe" / "pixie_api.py"
IPXE_EFI = Path("/usr/lib/ipxe/ipxe.efi")
EXIT = json.dumps({"ipxe-script": "#!ipxe\nexit\n"})


def script(tag: str) -> str:
    return json.dumps(
        {"ipxe-script": f"#!ipxe\necho {MARKER} {tag} ${{net0/mac}} {LINE_END}\nsleep 300\n"}
    )


def seen(proc: Process, text: str, timeout: float, until: Callable[[], bool]) -> float:
    """When `text` showed in `proc`'s output (time.monotonic()); AssertionError after
    `timeout` s or once `until()` says waiting is pointless."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in proc.output():
            return time.monotonic()
        if until():
            break
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not seen:\n{proc.output()[-3000:]}")


def last_seen(proc: Process, texts: tuple[str, ...], running: list[Future[Boot]]) -> float:
    """When one of `texts` last showed again in `proc`'s output (time.monotonic(),
    polled) while `running` boots go on; AssertionError if none ever showed."""
    count, when = 0, 0.0
    while True:
        done = all(f.done() for f in running)
        output = proc.output()
        now = sum(output.count(text) for text in texts)
        if now > count:
            count, when = now, time.monotonic()
        if done:
            break
        time.sleep(0.1)
    assert count, f"{texts!r} not seen:\n{proc.output()[-3000:]}"
    return when


def expect(result: Boot, name: str, tag: str, mac: str, log: str) -> None:
    tail = "\n".join(result.serial.splitlines()[-15:])
    assert result.outcome == "ok", f"{name}: {result.outcome}\n{tail}\n--- pxed:\n{log[-3000:]}"
    assert f"{MARKER} {tag} {mac} {LINE_END}" in result.serial, f"{name}:\n{tail}"
    record_boot_time(f"bootapi-{name}", result.seconds, accel=accel())


def test_the_api_decides_and_its_cache_stands_in_when_it_is_slow_or_down(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "boot.0").write_bytes(b"never served: the BIOS guests are iPXE already")
    shutil.copyfile(require_file(IPXE_EFI, "ipxe"), root / "ipxe.efi")
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps(
            {
                MAC_SLOW: [0, 200, script("slow")],
                MAC_DOWN: [0, 200, script("down")],
                MAC_UEFI: [0, 200, script("uefi")],
            }
        )
    )
    with lan(tmp_path) as net, ThreadPoolExecutor(3) as pool:
        net.router_advertisements()  # iPXE's IPv6 wait (15 s) ends at once
        api = net.start([sys.executable, str(API), "8041", str(rules)], "api")
        flags = ("--http-port", "8080", "--efi64-bootfile", "ipxe.efi")
        pxed = net.pxed(root, "boot.0", *flags, "--boot-api", "http://127.0.0.1:8041/")

        def start(name: str, mac: str) -> Future[Boot]:
            # about 4 s each with the RA: a minute is plenty, and a failure ends soon
            return pool.submit(boot, net, name, bios_argv(net, name, mac), LINE_END, 60)

        uefi_argv = ovmf_argv(net, "uefi", net.tap(), MAC_UEFI, False, *fw_cfg_only("IPv4PXE"))
        # about 15 s under TCG since pxed answers a held request on the API's answer
        # (was 31.5 s: EDK2's 4 s retransmissions): 90 s is plenty, a failure ends sooner
        uefi = pool.submit(boot, net, "uefi", uefi_argv, LINE_END, 90)
        slow1, down1 = start("slow-first", MAC_SLOW), start("down-first", MAC_DOWN)
        # an answer serves one boot's requests for FRESH s: the second boots ask again
        # (both machines' answers stale before either second boot starts)
        asked = (f"boot API: {MAC_SLOW}: ", f"boot API: {MAC_DOWN}: ")
        answered = last_seen(pxed, asked, [slow1, down1])
        first = {"slow-first": slow1.result(), "down-first": down1.result()}
        time.sleep(max(0.0, answered + FRESH + 0.5 - time.monotonic()))
        rules.write_text(
            json.dumps(
                {
                    MAC_SLOW: [5, 200, EXIT],
                    MAC_DOWN: [0, 200, EXIT],
                    MAC_UEFI: [0, 200, script("uefi")],
                }
            )
        )
        slow2 = start("slow-cached", MAC_SLOW)
        late = f"boot API: {MAC_SLOW}: no answer within the deadline; its last answer stands in"
        seen(pxed, late, 120, slow2.done)
        uefi_boot = uefi.result()  # its decision came from the running API
        api.stop()
        down2 = start("down-cached", MAC_DOWN)
        second = {"slow-cached": slow2.result(), "down-cached": down2.result()}
        pxed.stop()
        log = pxed.output()
    expect(first["slow-first"], "slow-first", "slow", MAC_SLOW, log)
    expect(first["down-first"], "down-first", "down", MAC_DOWN, log)
    expect(uefi_boot, "uefi", "uefi", MAC_UEFI, log)
    expect(second["slow-cached"], "slow-cached", "slow", MAC_SLOW, log)
    expect(second["down-cached"], "down-cached", "down", MAC_DOWN, log)
    # OVMF's own PXE client took ipxe.efi, whose iPXE ran the API's script
    for mac in (MAC_SLOW, MAC_DOWN, MAC_UEFI):
        assert f"boot API: {mac}: boot api (api)" in log, log
    uefi_lines = [li for li in log.splitlines() if f"boot {MAC_UEFI}" in li]
    assert any("ipxe.efi" in li for li in uefi_lines), uefi_lines
    down = f"boot API: {MAC_DOWN}: cannot reach the API"
    assert any(down in li and "its last answer stands in" in li for li in log.splitlines()), log
