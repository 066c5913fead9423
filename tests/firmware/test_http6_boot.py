"""UEFI HTTP boot over IPv6: OVMF's own HTTPv6 path against `pxed --ipv6 --http-port`, in
QEMU (TCG) on a tap inside a namespace this test creates. The firmware gets its address
and `http://[fd81::1]:8080/FILE` (option 59) over DHCPv6 after our router advertisement,
loads an x64 grub built here over HTTP/IPv6, which reads grub/grub.cfg over the same
and prints a marker.

OVMF tries PXEv4, PXEv6, HTTPv4, HTTPv6 in that order. fw_cfg switches both PXE entries
off; HTTPv4 cannot be switched off, so the namespace answers its TCP connection to
10.81.0.1:8080 with a reset (nft) and the firmware moves on to HTTPv6 at once. The
capture checks which path ran: a DHCPv6 exchange with vendor class HTTPClient and the
URL, and the HTTP log shows the GETs coming from the firmware's IPv6 address.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fwfixtures import network_grub, readable
from fwlab import SERVER6, SERVER_IP, fw_cfg_only, lan, ovmf_argv, qemu_boot, record_boot_time

from ptftpd.dhcp6.codec import BootFileUrl, ClientArch, MsgType, VendorClass
from ptftpd.dhcp6.codec import PacketError as Packet6Error
from ptftpd.dhcp6.codec import decode as decode6
from support import require_tool

pytestmark = [pytest.mark.qemu, pytest.mark.netns, pytest.mark.timeout(600)]

MARKER = "HTTP6-GRUB-" + "MARKER"
MAC = "52:54:00:66:00:16"
URL = f"http://[{SERVER6}]:8080/grubx64-net.efi"


def test_ovmf_http_boot_over_ipv6(tmp_path: Path) -> None:
    nft = require_tool("nft")
    root = tmp_path / "root"
    (root / "grub").mkdir(parents=True)
    network_grub(root / "grubx64-net.efi", tmp_path)
    (root / "default.0").write_bytes(b"not for UEFI")
    (root / "grub" / "grub.cfg").write_text(f"echo {MARKER} root=$root\nsleep 600\n")
    readable(root)
    with lan(tmp_path, ipv6=True) as net:
        net.ns.run(nft, "add table inet fwtest")
        net.ns.run(nft, "add chain inet fwtest input { type filter hook input priority 0 ; }")
        rule = (
            f"add rule inet fwtest input ip daddr {SERVER_IP} tcp dport 8080 reject with tcp reset"
        )
        net.ns.run(nft, rule)
        flags = ("--ipv6", "--http-port", "8080", "--efi64-bootfile", "grubx64-net.efi")
        pxed = net.pxed(root, "default.0", *flags)
        capture = net.capture()
        argv = ovmf_argv(net, "http6", net.tap(), MAC, False, *fw_cfg_only())
        failures = ["Shell>", "No bootable option or device was found"]
        boot = qemu_boot(net, argv, "http6", [MARKER], failures=failures, timeout=300)
        packets = capture.stop()
        pxed.stop()
        log = pxed.output()
    assert boot.outcome == "ok", f"{boot.outcome} ({boot.seconds:.0f} s)\n{boot.serial[-2500:]}"
    record_boot_time("ovmf-http-ipv6", boot.seconds, firmware="OVMF")
    assert 'starting Boot0002 "UEFI HTTPv6' in boot.serial or "UEFI HTTPv6" in boot.serial
    assert f"{MARKER} root=http,[{SERVER6}]:8080" in boot.serial
    # On the wire: the firmware asked DHCPv6 as an x64 HTTP client and got the URL.
    dhcp6 = []
    for sport, dport, payload in packets:
        if {sport, dport} & {546, 547}:
            try:
                dhcp6.append(decode6(payload))
            except Packet6Error:
                pass
    solicits = [m for m in dhcp6 if m.msg_type == MsgType.SOLICIT]
    assert any(
        (vc := m.first(VendorClass)) is not None
        and any(i.startswith(b"HTTPClient") for i in vc.items)
        and (arch := m.first(ClientArch)) is not None
        and 16 in arch.types
        for m in solicits
    ), solicits
    urls = {u.url for m in dhcp6 if (u := m.first(BootFileUrl)) is not None}
    assert URL in urls, urls
    # Both files came over HTTP from the firmware's IPv6 address; nothing over TFTP.
    gets = [line for line in log.splitlines() if " GET /" in line]
    assert any("GET /grubx64-net.efi 200" in line for line in gets), gets
    assert any("GET /grub/grub.cfg 200" in line for line in gets), gets
    assert all("ptftpd.http INFO: fd81:" in line for line in gets), gets
    assert " RRQ " not in log
