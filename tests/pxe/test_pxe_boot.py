"""End-to-end: real firmware in QEMU boots from `pxed` inside a test namespace.

A case passes only when its marker reaches the guest's serial console. The cases are
the issue's: BIOS iPXE ROM -> pxelinux.0; BIOS iPXE ROM -> iPXE script; OVMF (arch 7)
-> ipxe.efi -> iPXE script; and the BIOS and UEFI chains again with `pxed --proxy`
beside a dnsmasq that hands out addresses only. Each also checks pxed's boot log line.
The boots are independent (a namespace each) and run side by side, three at a time
(support/side_by_side.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pxe_harness import (
    BootNetwork,
    boot_network,
    boot_vm,
    copy_ipxe_efi,
    make_ipxe_script,
    make_pxelinux_root,
)

from support import Process, script, wait_udp_bound

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.netns,
    pytest.mark.timeout(600),
    pytest.mark.side_by_side(bound=570),
]

MAC = "52:54:00:5e:00:01"


def start_pxed(net: BootNetwork, tmp: Path, root: Path, *args: str) -> Process:
    argv = [
        script("pxed"),
        "-D",
        "--leases",
        str(tmp / "pxed-leases.sqlite"),
        *args,
        net.bridge,
        str(root),
        "pxelinux.0",
    ]
    proc = net.start(argv, "pxed")
    wait_udp_bound(4011, timeout=15, proc=proc.proc, netns=net.ns.name)
    return proc


def boot_line(pxed: Process, mac: str) -> str:
    """Stop pxed (which writes pending boot lines) and return this client's line."""
    pxed.stop()
    log = pxed.output()
    lines = [line for line in log.splitlines() if f"boot {mac} " in line]
    assert lines, f"no boot log line for {mac} in:\n{log[-3000:]}"
    return lines[-1]


def dnsmasq_addresses_only(net: BootNetwork) -> Process:
    """The LAN's own DHCP server, on another host (10.78.0.2): addresses, no boot."""
    peer = net.peer("10.78.0.2")
    proc = net.dnsmasq("--dhcp-range=10.78.0.100,10.78.0.150,1h", ns=peer)
    wait_udp_bound(67, timeout=15, proc=proc.proc, netns=peer.name)
    return proc


def _bios_pxelinux(tmp_path: Path, proxy: bool, workers: str | None = None) -> None:
    root = tmp_path / "root"
    marker = f"PXED-BIOS-PXELINUX-{'PROXY' if proxy else 'DHCP'}-OK"
    make_pxelinux_root(root, marker)
    with boot_network(tmp_path) as net:
        if proxy:
            dnsmasq_addresses_only(net)
        args = ["--proxy"] if proxy else []
        if workers is not None:
            args += ["--workers", workers]
        pxed = start_pxed(net, tmp_path, root, *args)
        result = boot_vm(net, "bios", marker, tmp_path / "vm", mac=MAC)
        print(f"BIOS pxelinux {'proxy' if proxy else 'dhcp'}: {result.seconds:.1f} s")
        line = boot_line(pxed, MAC)
    assert "BIOS" in line and "pxelinux.0" in line and "ldlinux.c32" in line, line
    assert re.search(r"[\d.]+ s from DISCOVER to the last byte", line), line
    assert ": completed: " in line, line
    served = re.findall(r"(\[worker \d\] )?ptftpd\.tftp\.server INFO: \S+ RRQ 'pxelinux\.0'",
                        pxed.output())  # fmt: skip
    assert served, pxed.output()
    if workers == "1":
        assert not any(served), served  # served in pxed's own process
    elif workers == "2":
        assert all(served), served  # served by a worker


def _uefi_chain(tmp_path: Path, proxy: bool) -> None:
    root = tmp_path / "root"
    marker = f"PXED-UEFI-IPXE-{'PROXY' if proxy else 'DHCP'}-OK"
    make_pxelinux_root(root, "unused")
    copy_ipxe_efi(root)
    make_ipxe_script(root / "boot.ipxe", marker)
    args = ["--efi64-bootfile", "ipxe.efi", "--ipxe-bootfile", "boot.ipxe"]
    with boot_network(tmp_path) as net:
        if proxy:
            dnsmasq_addresses_only(net)
            args.append("--proxy")
        pxed = start_pxed(net, tmp_path, root, *args)
        result = boot_vm(net, "uefi", marker, tmp_path / "vm", mac=MAC)
        print(f"UEFI ipxe.efi chain {'proxy' if proxy else 'dhcp'}: {result.seconds:.1f} s")
        line = boot_line(pxed, MAC)
    assert "EFI x64" in line and "ipxe.efi" in line and "boot.ipxe" in line, line
    if proxy:
        # OVMF takes the boot file from the 4011 exchange, not from the proxy OFFER.
        assert re.search(r"boot server ACK 10\.78\.0\.\d+ mac=" + MAC, pxed.log_path.read_text())


@pytest.mark.parametrize("workers", ["1", "2"])
def test_bios_ipxe_rom_loads_pxelinux(tmp_path: Path, workers: str) -> None:
    _bios_pxelinux(tmp_path, proxy=False, workers=workers)


def test_bios_ipxe_rom_gets_ipxe_script_not_bootfile(tmp_path: Path) -> None:
    root = tmp_path / "root"
    marker = "PXED-BIOS-IPXE-SCRIPT-OK"
    make_pxelinux_root(root, "WRONG-FILE-pxelinux")
    make_ipxe_script(root / "boot.ipxe", marker)
    with boot_network(tmp_path) as net:
        pxed = start_pxed(net, tmp_path, root, "--ipxe-bootfile", "boot.ipxe")
        result = boot_vm(net, "bios", marker, tmp_path / "vm", mac=MAC)
        print(f"BIOS iPXE script: {result.seconds:.1f} s")
        line = boot_line(pxed, MAC)
    assert "WRONG-FILE" not in result.serial
    assert "boot.ipxe" in line and "pxelinux.0" not in line, line


def test_uefi_ovmf_chainloads_ipxe_efi_then_script(tmp_path: Path) -> None:
    _uefi_chain(tmp_path, proxy=False)


def test_proxy_bios_pxelinux_beside_dnsmasq(tmp_path: Path) -> None:
    _bios_pxelinux(tmp_path, proxy=True)


def test_proxy_uefi_chain_beside_dnsmasq(tmp_path: Path) -> None:
    _uefi_chain(tmp_path, proxy=True)
