"""Issue 22: pxed decides per machine, on real firmware (QEMU, SeaBIOS with QEMU's iPXE
ROM), all guests side by side on one pxed whose settings file holds an inventory:

- two machines named by MAC boot their own profiles: one an inline iPXE script (its
  marker carries the MAC it was rendered for), one a real kernel recipe - Debian's
  kernel (linux-image-amd64) and a busybox initramfs built here that prints a marker
  and /proc/cmdline: the rendered command line arrives intact;
- a machine nobody named gets the default profile's script;
- a machine marked ``local = true`` gets ``exit`` from iPXE and SeaBIOS goes on to its
  next boot device: a small disk whose boot sector (written here) prints a marker;
- an OVMF machine marked ``local`` gets an address but no boot file: OVMF's own PXE
  client gives up and OVMF boots the next entry of its boot order (PXEv4, then the disk,
  written into its variable store here; OVMF's own HTTPv4 entry, a minute of timeouts,
  comes after the disk), QEMU's read-only virtual FAT of a directory holding
  EFI/BOOT/BOOTX64.EFI, a grub image built here that prints a marker;
- an OVMF guest with Secure Boot on (Microsoft keys) on the same pxed, run with
  ``--secure-boot``: shim -> Debian's signed network grub, which reads grub/grub.cfg
  over TFTP and gets the kernel profile rendered as its configuration (picked by the
  address the machine got): Debian's signed kernel boots the same initramfs with the
  same rendered command line.

The boot log lines name each decision and its source.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fwfixtures import busybox_initramfs, secure_boot_root, signed_kernel
from fwlab import (
    SERVER_IP,
    Boot,
    Lan,
    fw_cfg_only,
    lan,
    ovmf_argv,
    ovmf_boot_order,
    pci_device_path,
    pxe4_device_path,
    qemu_boot,
    record_boot_time,
    serial_args,
    uefi_vars,
)

from support import require_tool

pytestmark = [pytest.mark.qemu, pytest.mark.netns, pytest.mark.timeout(600)]

MAC_SCRIPT = "52:54:00:22:00:01"
MAC_KERNEL = "52:54:00:22:00:02"
MAC_UNKNOWN = "52:54:00:22:00:03"
MAC_LOCAL = "52:54:00:22:00:04"
MAC_SECURE = "52:54:00:22:00:05"
MAC_UEFI_LOCAL = "52:54:00:22:00:06"
UEFI_DISK_MARKER = "UEFI-LOCAL-DISK-" + "BOOTED"
GRUB_X64 = Path("/usr/lib/grub/x86_64-efi")
SCRIPT_MARKER = "PROFILE-ALPHA-" + "SAYS"
DEFAULT_MARKER = "DEFAULT-PROFILE-" + "SAYS"
KERNEL_MARKER = "PXED-INITRAMFS-" + "UP"
DISK_MARKER = "LOCAL-DISK-BOOT-" + "SECTOR"
LINE_END = "END-OF-" + "LINE"  # waited for: the line before it is whole
HTTP_PORT = "8080"
CMDLINE = (
    "console=ttyS0 panic=-1 pxed.mac={{ mac }} pxed.profile={{ profile }} auto=true "
    "url=http://{{ server }}:8080/preseed/{{ mac-hyphen }}.cfg"
)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def settings() -> str:
    return f"""
[pxed]
boot-idle = 5

[[pxed.machine]]
mac = "{MAC_SCRIPT}"
profile = "alpha"
name = "alpha-box"

[[pxed.machine]]
mac = ["52:54:00:99:99:99", "{MAC_KERNEL}", "{MAC_SECURE}"]
profile = "linux"

[[pxed.machine]]
mac = ["{MAC_LOCAL}", "{MAC_UEFI_LOCAL}"]
profile = "disk"

[pxed.profile.alpha]
ipxe-script = \"\"\"#!ipxe
echo {SCRIPT_MARKER} {{{{ mac }}}} {{{{ profile }}}} {LINE_END}
sleep 300
\"\"\"

[pxed.profile.linux]
kernel = "debian/vmlinuz"
initrd = ["debian/initrd.gz"]
cmdline = "{CMDLINE}"

[pxed.profile.disk]
local = true

[pxed.profile.default]
ipxe-script = \"\"\"#!ipxe
echo {DEFAULT_MARKER} {{{{ mac }}}} {LINE_END}
sleep 300
\"\"\"
"""


def boot_sector(marker: str) -> bytes:
    """A 512-byte MBR that writes `marker` to COM1 (port 0x3f8) and halts:
    cli; xor ax,ax; mov ds,ax; mov si,msg; mov dx,0x3f8;
    next: lodsb; test al,al; jz done; out dx,al; jmp next; done: hlt; jmp done."""
    code = bytes.fromhex("fa31c08ed8be167cbaf803ac84c07403eeebf8f4ebfd")
    assert len(code) == 0x16
    sector = code + marker.encode() + b"\r\n\x00"
    return sector.ljust(510, b"\x00") + b"\x55\xaa"


def efi_disk(folder: Path, tmp: Path) -> None:
    """folder/EFI/BOOT/BOOTX64.EFI: a grub (grub-efi-amd64-bin's modules) whose embedded
    configuration prints UEFI_DISK_MARKER."""
    boot = folder / "EFI" / "BOOT"
    boot.mkdir(parents=True)
    embedded = tmp / "disk-grub.cfg"
    embedded.write_text(f"echo {UEFI_DISK_MARKER}\nsleep 300\n")
    argv = [require_tool("grub-mkimage"), "-O", "x86_64-efi", "-d", str(GRUB_X64)]
    argv += ["-c", str(embedded), "-p", "/EFI/BOOT", "-o", str(boot / "BOOTX64.EFI")]
    subprocess.run([*argv, "normal", "echo", "sleep"], check=True, capture_output=True)


def accel() -> str:
    """TCG, as the other firmware tests (KVM here stops SeaBIOS's iPXE ROM with a "KVM
    internal error"); PTFTPD_QEMU_ACCEL=kvm asks for KVM."""
    forced = os.environ.get("PTFTPD_QEMU_ACCEL", "").strip().lower()
    return "kvm" if forced == "kvm" and os.access("/dev/kvm", os.W_OK) else "tcg"


def bios_argv(net: Lan, name: str, mac: str, disk: Path | None = None) -> list[str]:
    """SeaBIOS with QEMU's default virtio-net ROM (Debian's iPXE) on a tap of its own;
    the screen mirrored to COM1 (sercon), which is the serial log."""
    sercon = net.tmp / "sercon-port.bin"
    sercon.write_bytes((0x3F8).to_bytes(2, "little"))
    tap = net.tap()
    argv = [
        require_tool("qemu-system-x86_64"),
        *("-accel", accel(), "-display", "none", "-nodefaults", "-no-reboot", "-m", "512"),
        *serial_args(net, name),
        *("-fw_cfg", f"name=etc/sercon-port,file={sercon}"),
        *("-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no"),
        *("-device", f"virtio-net-pci,netdev=n0,mac={mac}"),
    ]
    if disk is None:
        return [*argv, "-boot", "order=n"]
    return [*argv, "-drive", f"file={disk},format=raw,if=ide", "-boot", "order=nc"]


NOT_RENDERED = "ROOT-GRUB-CFG-NOT-" + "RENDERED"


def boot(net: Lan, name: str, argv: list[str], marker: str, timeout: float = 240) -> Boot:
    serial = net.tmp / f"{name}-serial.log"

    def seen() -> bool:
        try:
            return marker in _ANSI.sub("", serial.read_text(errors="replace"))
        except FileNotFoundError:
            return False

    result = qemu_boot(net, argv, name, [marker], [NOT_RENDERED], timeout=timeout, done=seen)
    result.serial = _ANSI.sub("", result.serial)
    return result


def test_each_machine_boots_its_own_decision(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "debian").mkdir(parents=True)
    shutil.copyfile(signed_kernel(), root / "debian" / "vmlinuz")
    busybox_initramfs(root / "debian" / "initrd.gz", KERNEL_MARKER, show_cmdline=True)
    (root / "boot.0").write_bytes(b"never served: every guest here is iPXE already")
    # shim and Debian's signed network grub; ROOT's own grub.cfg is for no one here
    secure_boot_root(root, f"echo {NOT_RENDERED}\nsleep 300\n")
    config = tmp_path / "pxed.toml"
    config.write_text(settings())
    disk = tmp_path / "disk.img"
    disk.write_bytes(boot_sector(DISK_MARKER) + bytes(512 * 63))
    efi = tmp_path / "efi-disk"
    efi_disk(efi, tmp_path)
    with lan(tmp_path) as net:
        net.router_advertisements()  # iPXE's IPv6 wait (15 s) ends at once
        flags = ("--config", str(config), "--http-port", HTTP_PORT, "--secure-boot")
        pxed = net.pxed(root, "boot.0", *flags)
        secure = ovmf_argv(net, "secure", net.tap(), MAC_SECURE, True, *fw_cfg_only("IPv4PXE"))
        disk_second = [
            *fw_cfg_only("IPv4PXE"),
            *("-fw_cfg", "name=opt/org.tianocore/IPv6Support,string=no"),  # no IPv6 stack
            *("-drive", f"file=fat:{efi},format=raw,if=none,id=d0,readonly=on"),
            *("-device", "virtio-blk-pci,drive=d0,addr=0x2"),  # the NIC is at 0x1
        ]
        uefi_local = ovmf_argv(net, "uefi-local", net.tap(), MAC_UEFI_LOCAL, False, *disk_second)
        # the boot order PXEv4 (pxed), then the disk; no bootindex, so OVMF keeps it and
        # puts the entries it makes itself (HTTPv4: a minute of timeouts) after the disk
        order = [("pxed", pxe4_device_path(1, MAC_UEFI_LOCAL)), ("disk", pci_device_path(2))]
        ovmf_boot_order(uefi_vars(net, "uefi-local"), order)
        guests = {
            "alpha": (bios_argv(net, "alpha", MAC_SCRIPT), LINE_END),
            "kernel": (bios_argv(net, "kernel", MAC_KERNEL), ">CMDLINE"),
            "unknown": (bios_argv(net, "unknown", MAC_UNKNOWN), LINE_END),
            "local": (bios_argv(net, "local", MAC_LOCAL, disk), DISK_MARKER),
            "secure": (secure, ">CMDLINE"),
            "uefi-local": (uefi_local, UEFI_DISK_MARKER),
        }
        with ThreadPoolExecutor(len(guests)) as pool:
            futures = {
                name: pool.submit(boot, net, name, argv, marker)
                for name, (argv, marker) in guests.items()
            }
            results = {name: f.result() for name, f in futures.items()}
        pxed.stop()
        log = pxed.output()
    for name, result in results.items():
        record_boot_time(f"machines-{name}", result.seconds, accel=accel())
        tail = "\n".join(result.serial.splitlines()[-15:])
        assert result.outcome == "ok", f"{name}: {result.outcome}\n{tail}\n--- pxed:\n{log[-3000:]}"
    alpha = results["alpha"].serial
    assert f"{SCRIPT_MARKER} {MAC_SCRIPT} alpha {LINE_END}" in alpha  # rendered for this machine
    assert DEFAULT_MARKER not in alpha
    assert f"{DEFAULT_MARKER} {MAC_UNKNOWN} {LINE_END}" in results["unknown"].serial
    rendered = (
        f"console=ttyS0 panic=-1 pxed.mac={MAC_KERNEL} pxed.profile=linux auto=true "
        f"url=http://{SERVER_IP}:8080/preseed/{MAC_KERNEL.replace(':', '-')}.cfg"
    )
    assert KERNEL_MARKER in results["kernel"].serial
    found = re.search(r"CMDLINE<(.*)>CMDLINE", results["kernel"].serial)
    assert found is not None, results["kernel"].serial[-2000:]
    assert found.group(1).strip().endswith(rendered), found.group(1)
    # the same recipe as grub's configuration, under Secure Boot
    secure_log = results["secure"].serial
    assert KERNEL_MARKER in secure_log and NOT_RENDERED not in secure_log
    found = re.search(r"CMDLINE<(.*)>CMDLINE", secure_log)
    assert found is not None, secure_log[-2000:]
    assert (
        found.group(1)
        .strip()
        .endswith(
            rendered.replace(MAC_KERNEL, MAC_SECURE).replace(
                MAC_KERNEL.replace(":", "-"), MAC_SECURE.replace(":", "-")
            )
        )
    ), found.group(1)
    assert SCRIPT_MARKER not in results["local"].serial
    # the boot log names each decision and where it came from
    lines = [line for line in log.splitlines() if "boot 52:54:00:22:00" in line]
    assert any(MAC_SCRIPT in li and "decision: boot alpha (inventory machine alpha-box)" in li
               for li in lines), lines  # fmt: skip
    assert any(MAC_KERNEL in li and "decision: boot linux (inventory machine #2)" in li
               for li in lines), lines  # fmt: skip
    assert any(MAC_UNKNOWN in li and "decision: boot default (default)" in li
               for li in lines), lines  # fmt: skip
    assert any(MAC_LOCAL in li and "decision: local disk (inventory machine #3)" in li
               for li in lines), lines  # fmt: skip
    # OVMF: no boot file for the local machine, so its PXE entry failed and the next one,
    # its disk, booted
    uefi = results["uefi-local"].serial
    assert 'failed to load Boot0001 "pxed"' in uefi, uefi[-2000:]
    assert (
        uefi.index("PXE-E21")
        < uefi.index('starting Boot0002 "disk"')
        < uefi.index(UEFI_DISK_MARKER)
    ), uefi[-2000:]
    assert any(MAC_UEFI_LOCAL in li and "no file served; decision: local disk" in li
               for li in lines), lines  # fmt: skip
