"""Issue 22 item 2 on real firmware: a kernel and initrd that the decision API names by
remote URL are streamed by pxed. SeaBIOS with QEMU's iPXE ROM; the pixiecore-format
test API (tests/pxe/pixie_api.py) answers Debian's kernel and a busybox initramfs as
http URLs on the test upstream (tests/pxe/remote_upstream.py), both on the lab
namespace's loopback, which the guest cannot reach: it boots only because pxed fetches
them and streams them from its own HTTP server. The initramfs prints its marker and
the command line; pxed's log has one cache-miss line per file and the upstream saw
each file asked once."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from fwfixtures import busybox_initramfs, signed_kernel
from fwlab import lan, record_boot_time
from test_machines_boot import accel, bios_argv, boot

pytestmark = [pytest.mark.qemu, pytest.mark.netns, pytest.mark.timeout(600)]

MAC = "52:54:00:22:02:71"
MARKER = "STREAMED-INITRAMFS-" + "UP"
PXE = Path(__file__).resolve().parent.parent / "pxe"
UP = "http://127.0.0.1:8045"


def test_a_remote_kernel_streamed_by_pxed_boots(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "boot.0").write_bytes(b"never served: the guest is iPXE already")
    files = tmp_path / "files"
    files.mkdir()
    shutil.copyfile(signed_kernel(), files / "vmlinuz")
    busybox_initramfs(files / "initrd.gz", MARKER, show_cmdline=True)
    answer = {
        "kernel": f"{UP}/files/vmlinuz",
        "initrd": [f"{UP}/files/initrd.gz"],
        "cmdline": "console=ttyS0 panic=-1 pxed.streamed=yes",
    }
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({MAC: [0, 200, json.dumps(answer)]}))
    with lan(tmp_path) as net:
        net.router_advertisements()  # iPXE's IPv6 wait (15 s) ends at once
        net.start([sys.executable, str(PXE / "pixie_api.py"), "8044", str(rules)], "api")
        up = net.start([sys.executable, str(PXE / "remote_upstream.py"), "8045", str(files)], "up")
        pxed = net.pxed(
            root, "boot.0", "--http-port", "8080", "--boot-api", "http://127.0.0.1:8044/",
            "--leases", str(tmp_path / "leases.sqlite"),
        )  # fmt: skip
        result = boot(net, "streamed", bios_argv(net, "streamed", MAC), ">CMDLINE")
        pxed.stop()
        log = pxed.output()
        asked = up.output()
    record_boot_time("remote-streamed", result.seconds, accel=accel())
    tail = "\n".join(result.serial.splitlines()[-20:])
    assert result.outcome == "ok", f"{result.outcome}\n{tail}\n--- pxed:\n{log[-3000:]}"
    assert MARKER in result.serial
    found = re.search(r"CMDLINE<(.*)>CMDLINE", result.serial)
    assert found is not None and "pxed.streamed=yes" in found.group(1), tail
    # the guest asked pxed, pxed asked the upstream once per file
    assert "/pxed/remote/52-54-00-22-02-71/" in log, log[-3000:]
    for name in ("vmlinuz", "initrd.gz"):
        lines = [x for x in log.splitlines() if f"remote {UP}/files/{name}:" in x]
        assert len(lines) == 1 and "cache miss, cached" in lines[0], lines
        assert asked.splitlines().count(f"/files/{name}") == 1, asked
