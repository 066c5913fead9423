"""End-to-end UEFI HTTP boot over IPv4: OVMF in QEMU boots from `pxed --http-port`.

OVMF's PXEv4 and PXEv6 boot entries are switched off through fw_cfg
(`opt/org.tianocore/IPv4PXESupport=no`, `IPv6PXESupport=no`), so its boot manager goes
straight to "UEFI HTTPv4": DHCP with vendor class `HTTPClient:Arch:00016`, our offer
with vendor class `HTTPClient` and `http://10.78.0.1:8080/ipxe.efi`, then an HTTP GET.
iPXE then gets its script as an HTTP URL and prints the marker. The path taken is
checked on the wire (a tcpdump capture in the namespace: HTTP to port 8080, no TFTP)
and in pxed's boot log ("over http").

Issue 23: the same boot, read back from pxed's `--api` (curl on the namespace's
loopback) is two completed attempts whose steps match: the firmware's DHCP exchange
(DORA in DHCP mode; the proxy offer and the REQUEST to dnsmasq in proxy mode), then
its GET of ipxe.efi with the file's bytes; then iPXE's exchange and its GET of
boot.ipxe.

The three boots (DHCP mode, proxy mode, an IPv4-only interface) are independent, each
in its own namespace, and spend most of their time waiting on firmware timers (OVMF's
offer collection, iPXE's Ctrl-B prompt): they run side by side (support/side_by_side.py).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from pxe_harness import BootNetwork, boot_network, boot_vm, copy_ipxe_efi, make_ipxe_script
from test_pxe_boot import MAC, boot_line, dnsmasq_addresses_only, start_pxed

from support import require_tool

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.netns,
    pytest.mark.timeout(480),
    pytest.mark.side_by_side(bound=450),
]

HTTP_PORT = 8080
API = "127.0.0.1:8023"
DORA = ["dhcp.discover", "lease.offered", "dhcp.offer", "dhcp.request", "lease.bound", "dhcp.ack"]
NO_PXE = (
    "-fw_cfg",
    "name=opt/org.tianocore/IPv4PXESupport,string=no",
    "-fw_cfg",
    "name=opt/org.tianocore/IPv6PXESupport,string=no",
)


def _http_boot(tmp_path: Path, proxy: bool, ipv4_only: bool = False) -> None:
    tcpdump = require_tool("tcpdump")
    root = tmp_path / "root"
    marker = f"PXED-UEFI-HTTP-{'PROXY' if proxy else 'DHCP'}-OK"
    root.mkdir()
    (root / "pxelinux.0").write_bytes(b"unused")
    copy_ipxe_efi(root)
    make_ipxe_script(root / "boot.ipxe", marker)
    pcap = tmp_path / "boot.pcap"
    args = ["--http-port", str(HTTP_PORT), "--efi64-bootfile", "ipxe.efi"]
    args += ["--ipxe-bootfile", "boot.ipxe", "--api", API]
    # ipv4_only: IPv6 switched off on pxed's interface (the bridge); the LAN's IPv6
    # router is another host.
    with boot_network(tmp_path, ipv6=not ipv4_only) as net:
        if proxy:
            dnsmasq_addresses_only(net)
            args.append("--proxy")
        capture = net.start(
            [tcpdump, "-i", net.bridge, "-n", "-U", "-w", str(pcap), "tcp or udp port 69"],
            "tcpdump",
        )
        pxed = start_pxed(net, tmp_path, root, *args)
        result = boot_vm(net, "uefi", marker, tmp_path / "vm", mac=MAC, extra=NO_PXE)
        print(f"UEFI HTTP boot {'proxy' if proxy else 'dhcp'}: {result.seconds:.1f} s")
        attempts = machine_record(net, MAC)
        line = boot_line(pxed, MAC)
        capture.stop()
    log = pxed.log_path.read_text()
    if ipv4_only:
        assert f"over HTTP on {net.server_ip} port {HTTP_PORT}\n" in log, log[-3000:]
    assert "x64 UEFI HTTP" in line, line
    assert "ipxe.efi over http" in line and "boot.ipxe over http" in line, line
    assert "over tftp" not in line, line
    assert "GET /ipxe.efi" in log and "GET /boot.ipxe" in log, log[-3000:]
    packets = subprocess.run(
        [tcpdump, "-r", str(pcap), "-n"], capture_output=True, text=True, check=True
    ).stdout
    assert f"{net.server_ip}.{HTTP_PORT} >" in packets, packets[-2000:]
    assert ".69: " not in packets, "the firmware used TFTP"
    check_record(attempts, root, proxy)


def machine_record(net: BootNetwork, mac: str) -> list[dict[str, Any]]:
    """pxed's record of `mac` from its API, once it holds the GET of boot.ipxe (the
    watcher batches changes every 0.1 s; bounded wait)."""
    curl = require_tool("curl")
    deadline = time.monotonic() + 10
    attempts: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        done = net.ns.run(
            curl, "-sS", "--max-time", "5", f"http://{API}/v1/machines/{mac}", check=False
        )
        if done.stdout.strip():
            attempts = list(json.loads(done.stdout).get("attempts", []))
        if any(gets(a) and gets(a)[-1]["file"] == "boot.ipxe" for a in attempts):
            break
        time.sleep(0.3)
    return attempts


def gets(attempt: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in attempt["steps"] if s["kind"] == "http.request" and s["method"] == "GET"]


def check_record(attempts: list[dict[str, Any]], root: Path, proxy: bool) -> None:
    """OVMF's HTTP boot and iPXE's chain: two completed attempts (newest first), each
    a DHCP exchange then a complete GET of its file with the file's bytes. DHCP mode:
    pxed's DORA with its lease; proxy mode: the proxy offer beside dnsmasq's and the
    machine's REQUEST (heard on 67), which ties its address to the MAC."""
    assert len(attempts) == 2, json.dumps(attempts)[-3000:]
    ipxe, firmware = attempts
    assert (firmware["attempt"], ipxe["attempt"]) == (1, 2), attempts
    exchange = ["dhcp.discover", "dhcp.offer", "dhcp.request"]
    if not proxy:
        exchange = DORA
    for attempt, name in ((firmware, "ipxe.efi"), (ipxe, "boot.ipxe")):
        assert attempt["state"] == "completed" and attempt["diagnosis"] == [], attempt
        kinds = [str(s["kind"]) for s in attempt["steps"]]
        dhcp = [k for k in kinds if k.startswith(("dhcp.", "lease."))]
        assert dhcp[: len(exchange)] == exchange, kinds
        last = attempt["steps"][kinds.index(exchange[-1])]
        assert last["port"] == 67 and last["address"].startswith("10.78.0."), last
        [get] = gets(attempt)
        assert kinds.index(exchange[-1]) < attempt["steps"].index(get), kinds
        size = (root / name).stat().st_size
        assert get["file"] == name and get["status"] == 200 and get["complete"], get
        assert get["bytes"] == size, (get, size)
        assert "tftp.request" not in kinds, kinds


def test_uefi_http_boot_ipv4_ipxe_then_script_over_http(tmp_path: Path) -> None:
    _http_boot(tmp_path, proxy=False)


def test_uefi_http_boot_ipv4_proxy_beside_dnsmasq(tmp_path: Path) -> None:
    _http_boot(tmp_path, proxy=True)


def test_uefi_http_boot_on_an_ipv4_only_interface(tmp_path: Path) -> None:
    """Issue 21: pxed --http-port on an interface with IPv6 disabled (sysctl)."""
    _http_boot(tmp_path, proxy=False, ipv4_only=True)
