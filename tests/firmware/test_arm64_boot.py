"""ARM64 UEFI through `pxed --arm64-bootfile`: AAVMF (qemu-efi-aarch64, EDK2 for QEMU's
virt machine) under TCG, two guests side by side in one namespace: one over PXE (IPv4,
TFTP; architecture 11), one over UEFI HTTP boot (IPv4; architecture 19, its PXE entries
switched off through fw_cfg). Each loads an arm64 grub built here from Debian's arm64
modules, which reads grub/grub.cfg from where it came from (TFTP or HTTP) and prints a
marker. The DHCP capture must show arch 11 answered with the file name and arch 19 with
its URL and vendor class HTTPClient.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fwfixtures import network_grub, readable
from fwlab import SERVER_IP, Boot, aavmf_argv, fw_cfg_only, lan, qemu_boot, record_boot_time

pytestmark = [pytest.mark.qemu, pytest.mark.netns, pytest.mark.timeout(600)]

MARKER = "ARM64-GRUB-" + "MARKER"
MAC_PXE = "52:54:00:a6:00:0b"
MAC_HTTP = "52:54:00:a6:00:13"


def test_aavmf_pxe_and_http_boot_get_the_arm64_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "grub").mkdir(parents=True)
    network_grub(root / "grubaa64.efi", tmp_path, "arm64-efi")
    (root / "default.0").write_bytes(b"not for ARM64")
    (root / "grub" / "grub.cfg").write_text(f"echo {MARKER} root=$root\nsleep 600\n")
    readable(root)
    results: dict[str, Boot] = {}
    with lan(tmp_path) as net:
        flags = ("--arm64-bootfile", "grubaa64.efi", "--http-port", "8080")
        pxed = net.pxed(root, "default.0", *flags)
        capture = net.capture()
        guests = {
            "pxe": aavmf_argv(net, "pxe", net.tap(), MAC_PXE),
            "http": aavmf_argv(net, "http", net.tap(), MAC_HTTP, *fw_cfg_only()),
        }

        def boot(name: str) -> None:
            results[name] = qemu_boot(
                net,
                guests[name],
                name,
                [MARKER],
                failures=["Shell>", "No bootable option or device was found"],
            )

        threads = [threading.Thread(target=boot, args=(name,)) for name in guests]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(600)
        dhcp = capture.dhcp()
        pxed.stop()
        log = pxed.output()
    for name, result in results.items():
        tail = result.serial[-2500:]
        assert result.outcome == "ok", f"{name}: {result.outcome} ({result.seconds:.0f} s)\n{tail}"
        record_boot_time(f"arm64-{name}", result.seconds, firmware="AAVMF")
    assert f"{MARKER} root=tftp,{SERVER_IP}" in results["pxe"].serial
    assert f"{MARKER} root=http,{SERVER_IP}:8080" in results["http"].serial
    # The capture: what each architecture asked and what it was told.
    # (Both guests' EDK2 may pick the same xid: match on the MAC too.)
    asked = {(m.xid, m.mac): m.arch for m in dhcp if m.op == 1}
    answers = {
        (asked.get((m.xid, m.mac)), m.file_str, m.options.get(60)) for m in dhcp if m.op == 2
    }
    assert (11, "grubaa64.efi", b"PXEClient") in answers, answers
    assert (19, f"http://{SERVER_IP}:8080/grubaa64.efi", b"HTTPClient") in answers, answers
    assert {a for a, _, _ in answers} == {11, 19}
    assert "RRQ 'grubaa64.efi' octet: sent" in log and "GET /grubaa64.efi 200" in log
    assert "GET /grub/grub.cfg 200" in log and "RRQ '/grub/grub.cfg' octet: sent" in log
