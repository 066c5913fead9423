"""The harness itself, proven against a known-good peer (dnsmasq) before blaming pxed:
if this boot fails, the environment (QEMU, firmware, tap, namespace) is broken, not
our servers."""

from __future__ import annotations

from pathlib import Path

import pytest
from pxe_harness import boot_network, boot_vm, make_ipxe_script

from support import wait_udp_bound

pytestmark = [pytest.mark.qemu, pytest.mark.netns, pytest.mark.timeout(400)]


def test_bios_ipxe_rom_boots_script_from_dnsmasq(tmp_path: Path) -> None:
    root = tmp_path / "root"
    marker = "PTFTPD-HARNESS-DNSMASQ-OK"
    make_ipxe_script(root / "boot.ipxe", marker)
    with boot_network(tmp_path) as net:
        dnsmasq = net.dnsmasq(
            "--dhcp-range=10.78.0.100,10.78.0.150,1h",
            "--enable-tftp",
            f"--tftp-root={root}",
            "--dhcp-boot=boot.ipxe",
        )
        wait_udp_bound(67, timeout=15, proc=dnsmasq.proc, netns=net.ns.name)
        result = boot_vm(net, "bios", marker, tmp_path / "vm")
        print(f"dnsmasq BIOS iPXE boot: {result.seconds:.1f} s ({result.accel})")
