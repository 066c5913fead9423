"""UEFI Secure Boot chains through `pxed --secure-boot`, on Debian's OVMF with Microsoft's
keys enrolled and Secure Boot on (`OVMF_CODE_4M.ms.fd`, SMM, secure pflash), in QEMU
(TCG) on a tap inside a namespace these tests create:

- PXE over IPv4 + TFTP: shim (signed by Microsoft) -> grub (signed by Debian, fetched by
  shim as grubx64.efi) -> grub/grub.cfg from ROOT: two guests side by side, one sent by
  grub.cfg to its own file (by `$net_default_mac`; this grub tries no per-MAC config
  names itself) that prints a marker, one booting Debian's signed kernel (verified
  through shim) with a busybox initramfs built here that prints a marker, and one
  whose grub is refused that kernel with its signature cut off;
- the same chain over PXE on IPv6 (DHCPv6 boot-file-url, TFTP over IPv6), a fourth
  guest beside the three on the same pxed (`--ipv6 --secure-boot`);
- the control: the same firmware refuses unsigned ipxe.efi ("Access Denied");
- UEFI HTTP boot (IPv4): shim and grub load over HTTP, but Debian's signed network grub
  has no HTTP support and stops at its prompt: the evidence for the README.
"""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fwfixtures import (
    IPXE_EFI,
    busybox_initramfs,
    readable,
    secure_boot_root,
    signed_kernel,
    unsigned_copy,
)
from fwlab import (
    SERVER6,
    SERVER_IP,
    Boot,
    Lan,
    fw_cfg_only,
    lan,
    ovmf_argv,
    qemu_boot,
    read_pcap_ipv4_udp_to,
    record_boot_time,
    require_file,
)

pytestmark = [pytest.mark.qemu, pytest.mark.netns, pytest.mark.timeout(600)]

MAC_CFG = "52:54:00:5b:00:0a"
MAC_KERNEL = "52:54:00:5b:00:0b"
MAC_UNSIGNED = "52:54:00:5b:00:0c"
MAC_PXE6 = "52:54:00:5b:00:0d"
UNSIGNED_MARKER = "AFTER-UNSIGNED-" + "KERNEL"
GRUB_MARKER = "SECURE-GRUB-" + "MARKER"
KERNEL_MARKER = "INITRAMFS-" + "SAYS-HELLO"
PXE_ONLY = fw_cfg_only("IPv4PXE")
HTTP_ONLY = fw_cfg_only()
DENIED = "Access Denied"
SHELL = "Shell>"
SITE_IP = "10.81.0.2"  # the network's own DHCP server beside pxed --proxy
NO_BOOT = "No bootable option or device was found"  # every boot entry failed


def boot_side_by_side(net: Lan, boots: dict[str, tuple[list[str], list[str]]]) -> dict[str, Boot]:
    """Boot several guests at once (each: argv, markers), each on its own thread."""
    results: dict[str, Boot] = {}

    def one(name: str, argv: list[str], markers: list[str]) -> None:
        results[name] = qemu_boot(net, argv, name, markers, failures=[DENIED, SHELL, NO_BOOT])

    threads = [
        threading.Thread(target=one, args=(name, argv, markers))
        for name, (argv, markers) in boots.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(700)
    return results


def test_shim_grub_config_and_signed_kernel_over_tftp_on_ipv4_and_ipv6(tmp_path: Path) -> None:
    """Four guests side by side on one `pxed --ipv6 --secure-boot`: three over PXE on
    IPv4 (grub.cfg's per-MAC file, the signed kernel, the kernel without its signature)
    and one over PXE on IPv6 (OVMF's PXEv6 entry only): shim from
    `tftp://[fd81::1]/shimx64.efi` (DHCPv6 option 59), grubx64.efi and grub.cfg over
    TFTP on IPv6."""
    root = tmp_path / "root"
    secure_boot_root(root, "")
    (root / "grub" / f"mac-{MAC_PXE6}.cfg").write_text(
        f"echo {GRUB_MARKER} root=$root\nsleep 600\n"
    )
    # Debian's signed grub (2.06) reads grub/grub.cfg only (no grub.cfg-01-<mac> lookup):
    # a per-machine choice goes through grub's own $net_default_mac.
    (root / "grub" / f"mac-{MAC_CFG}.cfg").write_text(f"echo {GRUB_MARKER}\nsleep 600\n")
    # The third guest asks for the same kernel without its signature: shim says no.
    (root / "grub" / f"mac-{MAC_UNSIGNED}.cfg").write_text(
        f"linux /vmlinuz-unsigned console=ttyS0\necho {UNSIGNED_MARKER}\nsleep 600\n"
    )
    unsigned_copy(signed_kernel(), root / "vmlinuz-unsigned")
    shutil.copyfile(signed_kernel(), root / "vmlinuz")
    busybox_initramfs(root / "initrd.gz", KERNEL_MARKER)
    (root / "grub" / "grub.cfg").write_text(
        "set timeout=0\n"
        "source /grub/mac-${net_default_mac}.cfg\n"
        "linux /vmlinuz console=ttyS0 panic=-1\n"
        "initrd /initrd.gz\n"
        "boot\n"
    )
    readable(root)
    with lan(tmp_path, ipv6=True) as net:
        pxed = net.pxed(root, "default.0", "--ipv6", "--secure-boot")
        capture = net.capture()
        boots = {
            "grub-cfg": (
                ovmf_argv(net, "grub-cfg", net.tap(), MAC_CFG, True, *PXE_ONLY),
                [GRUB_MARKER],
            ),
            "kernel": (
                ovmf_argv(net, "kernel", net.tap(), MAC_KERNEL, True, *PXE_ONLY),
                [KERNEL_MARKER],
            ),
            "unsigned-kernel": (
                ovmf_argv(net, "unsigned-kernel", net.tap(), MAC_UNSIGNED, True, *PXE_ONLY),
                [UNSIGNED_MARKER],
            ),
            "pxe6": (
                ovmf_argv(net, "pxe6", net.tap(), MAC_PXE6, True, *fw_cfg_only("IPv6PXE")),
                [GRUB_MARKER],
            ),
        }
        results = boot_side_by_side(net, boots)
        dhcp = capture.dhcp()
        pxed.stop()
        log = pxed.output()
    for name, boot in results.items():
        assert boot.outcome == "ok", (
            f"{name}: {boot.outcome} after {boot.seconds:.0f} s\n{boot.serial[-2500:]}"
        )
        record_boot_time(f"secure-boot-tftp-{name}", boot.seconds, firmware="OVMF ms")
        if name != "pxe6":  # (over IPv6 the line is overwritten on the console)
            assert "Fetching Netboot Image grubx64.efi" in boot.serial  # shim's own message
    kernel = results["kernel"].serial
    # The kernel saw Secure Boot on (and locked itself down).
    assert "Secure boot enabled" in kernel, kernel[-3000:]
    assert GRUB_MARKER not in kernel and KERNEL_MARKER not in results["grub-cfg"].serial
    # The kernel without its signature was fetched in full, refused, and never ran.
    unsigned = results["unsigned-kernel"].serial
    assert "vmlinuz-unsigned' octet: sent" in log
    assert "Linux version" not in unsigned and "Secure boot enabled" not in unsigned
    refusal = unsigned.split("Welcome to GRUB!")[-1].split(UNSIGNED_MARKER)[0]
    assert "bad shim signature" in refusal, refusal
    # All asked as x64 UEFI PXE (arch 7) and were told shimx64.efi.
    offers = [m for m in dhcp if m.op == 2 and m.options.get(53) == b"\x02"]
    assert offers and {m.file_str for m in offers} == {"shimx64.efi"}
    asked = {m.arch for m in dhcp if m.op == 1}
    assert asked == {7}
    for what in ("shimx64.efi", "grubx64.efi", "grub/grub.cfg", f"mac-{MAC_CFG}.cfg", "vmlinuz"):
        assert f"{what}' octet: sent" in log, what
    assert log.count("initrd.gz' octet: sent") == 1  # the kernel guest only
    # the IPv6 guest: PXEv6, and shim, grub and grub.cfg over TFTP on IPv6
    pxe6 = results["pxe6"].serial
    assert "Start PXE over IPv6" in pxe6 and f"{GRUB_MARKER} root=tftp,{SERVER6}" in pxe6
    over6 = [line for line in log.splitlines() if "fd81::" in line and " RRQ " in line]
    for name in ("shimx64.efi", "grubx64.efi", "grub/grub.cfg"):
        assert any(f"RRQ '{name}' octet: sent" in line or f"RRQ '/{name}' octet: sent" in line
                   for line in over6), (name, over6)  # fmt: skip
    assert "arch=EFI x64 (DHCPv6): completed" in log


def test_unsigned_refused_http_boot_and_proxy_mode_side_by_side(tmp_path: Path) -> None:
    """Three independent labs at once, each its own namespace, pxed and OVMF guest (one
    after another they took 12 + 12 + 12-18 s): the control (unsigned ipxe.efi refused),
    UEFI HTTP boot of shim and grub, and proxy mode beside the site's DHCP server."""
    checks = {
        "unsigned": unsigned_ipxe_is_refused,
        "http": http_boot_loads_shim_and_grub_but_signed_grub_cannot_read_http,
        "proxy": proxy_mode_grub_asks_the_address_server_not_pxed,
    }
    failed: list[str] = []
    with ThreadPoolExecutor(len(checks)) as pool:
        futures = {}
        for name, check in checks.items():
            (tmp_path / name).mkdir()
            futures[name] = pool.submit(check, tmp_path / name)
        for name, future in futures.items():
            try:
                future.result()
            except Exception as exc:  # every lab's failure reported, not the first only
                failed.append(f"--- {name}: {type(exc).__name__}: {exc}")
    assert not failed, "\n".join(failed)


def unsigned_ipxe_is_refused(tmp_path: Path) -> None:
    """The control: the firmware that boots the signed chain refuses unsigned ipxe.efi."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copyfile(require_file(IPXE_EFI, "ipxe"), root / "ipxe.efi")
    readable(root)
    with lan(tmp_path) as net:
        pxed = net.pxed(root, "ipxe.efi")
        argv = ovmf_argv(net, "unsigned", net.tap(), MAC_CFG, True, *PXE_ONLY)
        boot = qemu_boot(net, argv, "unsigned", [DENIED], failures=["iPXE initialising", NO_BOOT])
        pxed.stop()
        log = pxed.output()
    assert boot.outcome == "ok", f"{boot.outcome}: {boot.serial[-2000:]}"
    assert "ipxe.efi' octet: sent" in log  # it was downloaded, then refused
    record_boot_time("secure-boot-refuses-unsigned-ipxe", boot.seconds, firmware="OVMF ms")


def http_boot_loads_shim_and_grub_but_signed_grub_cannot_read_http(tmp_path: Path) -> None:
    """UEFI HTTP boot (IPv4) with --secure-boot: shim comes as a URL, fetches grubx64.efi
    over HTTP itself, grub starts - and stops at its prompt: Debian's signed grubnetx64
    (2.06) has no HTTP module and sets its prefix only from PXE (`(tftp,SERVER)`), so it
    never asks for grub.cfg. Secure Boot over HTTP needs a grub built with http."""
    root = tmp_path / "root"
    secure_boot_root(root, f"echo {GRUB_MARKER}\nsleep 600\n")
    with lan(tmp_path) as net:
        pxed = net.pxed(root, "default.0", "--secure-boot", "--http-port", "8080")
        argv = ovmf_argv(net, "http", net.tap(), MAC_CFG, True, *HTTP_ONLY)
        boot = qemu_boot(
            net, argv, "http", ["grub>", GRUB_MARKER], failures=[DENIED, SHELL, NO_BOOT]
        )
        pxed.stop()
        log = pxed.output()
    assert boot.outcome == "ok", f"{boot.outcome}: {boot.serial[-2000:]}"
    record_boot_time("secure-boot-http-to-grub-prompt", boot.seconds, firmware="OVMF ms")
    assert f"file=http://{SERVER_IP}:8080/shimx64.efi" in log
    assert "GET /shimx64.efi 200" in log and "grubx64.efi 200" in log
    assert "Welcome to GRUB!" in boot.serial and "grub>" in boot.serial
    assert GRUB_MARKER not in boot.serial and "grub.cfg" not in log
    assert " RRQ " not in log  # nothing went over TFTP


def proxy_mode_grub_asks_the_address_server_not_pxed(tmp_path: Path) -> None:
    """`--proxy --secure-boot` beside the network's own DHCP server (dnsmasq, addresses
    only): the firmware takes its address from dnsmasq and shimx64.efi from pxed's boot
    server (4011), and shim fetches grubx64.efi from pxed - but Debian's grub 2.06 takes
    its TFTP server from the DHCP ACK (the address server's next-server, siaddr), not
    from the proxy's boot server reply: its requests for /grub/... go to dnsmasq's
    address. The README says so (point the site server's next-server at pxed, or use
    full mode)."""
    root = tmp_path / "root"
    secure_boot_root(root, f"echo {GRUB_MARKER} root=$root\nsleep 600\n")
    with lan(tmp_path) as net:
        site = net.host(address=SITE_IP)
        net.dnsmasq("dhcp-range=10.81.0.50,10.81.0.150,12h\n", name="site", ns=site)
        pxed = net.pxed(root, "default.0", "--proxy", "--secure-boot")
        tftp = net.capture("tftp", "udp port 69")
        argv = ovmf_argv(net, "proxy", net.tap(), MAC_CFG, True, *PXE_ONLY)
        boot = qemu_boot(
            net,
            argv,
            "proxy",
            [GRUB_MARKER],
            [DENIED, SHELL, NO_BOOT],
            timeout=180,
            done=lambda: bool(_rrq_to(tftp.pcap, SITE_IP)),
        )
        asked_site = _rrq_to(tftp.pcap, SITE_IP)
        tftp.stop()
        pxed.stop()
        log = pxed.output()
    assert boot.outcome == "ok", f"{boot.outcome}: {boot.serial[-2000:]}"
    record_boot_time("secure-boot-proxy-to-grub", boot.seconds, firmware="OVMF ms")
    assert "Welcome to GRUB!" in boot.serial and GRUB_MARKER not in boot.serial
    assert "boot server ACK" in log and "file=shimx64.efi" in log
    assert "RRQ 'grubx64.efi' octet: sent" in log and "/grub/" not in log
    assert any(name.startswith("/grub/") for name in asked_site), asked_site


def _rrq_to(pcap: Path, address: str) -> list[str]:
    """File names of the TFTP read requests sent to `address` in a capture."""
    names = []
    for destination, payload in read_pcap_ipv4_udp_to(pcap, 69):
        if destination == address and payload[:2] == b"\x00\x01":
            names.append(payload[2:].split(b"\x00", 1)[0].decode(errors="replace"))
    return names
