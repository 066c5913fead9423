"""Real firmware boots over TFTP that loses 5% of its packets (issue 19).

pxed's TFTP server no longer resends anything to a client it has not heard from (the
reflection bound): a firmware whose first packet from us was lost must repeat its
request. iPXE (BIOS ROM, then pxelinux.0 and ldlinux.c32) and OVMF's own PXE client
(then ipxe.efi and its script) must still boot when nftables in the test's namespace
drops 5% of the TFTP packets each way (DHCP is left alone: its own retries are slow and
not what is tested here), and once more when exactly the server's first TFTP reply of
the boot (the first transfer's OACK or DATA 1) is dropped. (Firmware may repeat its
request from a new port, a new transfer to the server: these boots pass with or without
the answer to a repeated request, which tests/tftp/test_lossy_clients.py pins down.)
The four boots are independent (a namespace each) and run side by side, all four at once
(support/side_by_side.py).
"""

from __future__ import annotations

import subprocess
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

from support import Process, require_tool, script, wait_udp_bound

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.netns,
    pytest.mark.timeout(600),
    pytest.mark.side_by_side(bound=570, at_once=4),
]

MAC = "52:54:00:5e:00:19"
NOT_DHCP = "udp sport != { 67, 68, 546, 547, 4011 } udp dport != { 67, 68, 546, 547, 4011 }"
RANDOM_5 = f"{NOT_DHCP} numgen random mod 100 < 5 drop"
# The server's first packet from a transfer socket (not port 69, not DHCP): numgen inc
# counts the packets that reach it, so only the first one is dropped.
FIRST_REPLY = f"{NOT_DHCP} udp sport != 69 numgen inc mod 1000000 == 0 drop"


def lose(net: BootNetwork, input_rule: str, output_rule: str) -> None:
    require_tool("nft")
    ruleset = (
        "table inet loss {\n"
        f"  chain input {{\n    type filter hook input priority 0;\n    {input_rule}\n  }}\n"
        f"  chain output {{\n    type filter hook output priority 0;\n    {output_rule}\n  }}\n"
        "}\n"
    )
    subprocess.run(
        net.ns.popen_argv(["nft", "-f", "-"]), input=ruleset, text=True, check=True, timeout=30
    )


def start_pxed(net: BootNetwork, tmp: Path, root: Path, *args: str) -> Process:
    argv = [script("pxed"), "-v", "--leases", str(tmp / "leases.sqlite"),
            *args, net.bridge, str(root), "pxelinux.0"]  # fmt: skip
    proc = net.start(argv, "pxed")
    wait_udp_bound(4011, timeout=15, proc=proc.proc, netns=net.ns.name)
    return proc


def boot_line(pxed: Process) -> str:
    pxed.stop()
    lines = [line for line in pxed.output().splitlines() if f"boot {MAC} " in line]
    assert lines, pxed.output()[-3000:]
    return lines[-1]


@pytest.mark.parametrize("loss", ["5%", "first reply"])
def test_bios_ipxe_pxelinux_under_loss(tmp_path: Path, loss: str) -> None:
    root = tmp_path / "root"
    marker = "PXED-LOSSY-BIOS-OK"
    make_pxelinux_root(root, marker)
    with boot_network(tmp_path) as net:
        if loss == "5%":
            lose(net, RANDOM_5, RANDOM_5)
        else:
            lose(net, "accept", FIRST_REPLY)
        pxed = start_pxed(net, tmp_path, root)
        boot_vm(net, "bios", marker, tmp_path / "vm", mac=MAC)
        line = boot_line(pxed)
    assert "pxelinux.0" in line and "ldlinux.c32" in line and ": completed: " in line, line


@pytest.mark.parametrize("loss", ["5%", "first reply"])
def test_uefi_ovmf_ipxe_efi_under_loss(tmp_path: Path, loss: str) -> None:
    root = tmp_path / "root"
    marker = "PXED-LOSSY-UEFI-OK"
    make_pxelinux_root(root, "unused")
    copy_ipxe_efi(root)
    make_ipxe_script(root / "boot.ipxe", marker)
    args = ["--efi64-bootfile", "ipxe.efi", "--ipxe-bootfile", "boot.ipxe"]
    with boot_network(tmp_path) as net:
        if loss == "5%":
            lose(net, RANDOM_5, RANDOM_5)
        else:
            lose(net, "accept", FIRST_REPLY)
        pxed = start_pxed(net, tmp_path, root, *args)
        boot_vm(net, "uefi", marker, tmp_path / "vm", mac=MAC)
        line = boot_line(pxed)
    assert "ipxe.efi" in line and "boot.ipxe" in line and ": completed: " in line, line
