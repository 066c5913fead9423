"""QEMU end-to-end harness for network boot tests.

A test gets a network namespace holding a bridge and a tap device (`boot_network`), runs
its boot servers on the bridge, and boots real firmware (SeaBIOS with Debian's iPXE NIC
ROM, or OVMF) in QEMU started inside the same namespace on that tap (`boot_vm`). The
guest's serial console goes to a file; a boot passes when its marker appears there.

Why it is built this way:
- DHCP and PXE traffic never leaves the namespace: the tap is the guest's only link and
  the bridge its only peer; the namespace is deleted afterwards with everything in it.
- Every boot is bounded (`BOOT_TIMEOUT`) and QEMU is always killed by its own PID.
- SeaBIOS is told to mirror its text console on the serial port (fw_cfg
  `etc/sercon-port`), because Debian's iPXE ROMs write to the BIOS console only; OVMF
  and EFI iPXE write to the serial port by themselves.
- The bridge sends IPv6 router advertisements (dnsmasq, RA only): without them iPXE
  waits about 15 s for an IPv6 router before booting, on every boot.
- Independent boots of one module can run side by side (the `side_by_side` mark,
  tests/support/side_by_side.py): a boot mostly waits on firmware timers, not the CPU.
- KVM when /dev/kvm is usable, else TCG. On these machines iPXE has been seen to stop
  under KVM ("KVM internal error" at its Ctrl-B prompt) while TCG boots in about half a
  minute, so a KVM boot that fails or makes no progress is retried once under TCG and
  KVM is not tried again in this test session. `PTFTPD_QEMU_ACCEL=tcg|kvm` forces one.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from support import Netns, Process, missing, require_root, require_tool

SERVER_IP = "10.78.0.1"
PREFIX = 24
BRIDGE = "br0"
TAP = "tap0"
BOOT_TIMEOUT = 180.0
# A KVM boot whose serial console stays silent this long is taken as stuck.
KVM_STALL = 12.0

PXELINUX = Path("/usr/lib/PXELINUX/pxelinux.0")
LDLINUX = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")
IPXE_EFI = Path("/usr/lib/ipxe/ipxe.efi")
UNDIONLY = Path("/usr/lib/ipxe/undionly.kpxe")
OVMF_DIR = Path("/usr/share/OVMF")
# 4 MiB builds first (Debian 12 and later), then the 2 MiB ones.
OVMF_PAIRS = (("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"), ("OVMF_CODE.fd", "OVMF_VARS.fd"))
IPXE_ROM = Path("/usr/lib/ipxe/qemu/efi-virtio.rom")

_kvm_broken = False


def require_file(path: Path, package: str) -> Path:
    if not path.is_file():
        missing(f"{path} is missing (Debian package {package})")
    return path


def ovmf_files() -> tuple[Path, Path]:
    for code, vars_ in OVMF_PAIRS:
        if (OVMF_DIR / code).is_file() and (OVMF_DIR / vars_).is_file():
            return OVMF_DIR / code, OVMF_DIR / vars_
    missing(f"no OVMF_CODE/OVMF_VARS pair in {OVMF_DIR} (Debian package ovmf)")
    raise AssertionError("unreachable")


def kvm_usable() -> bool:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


def pick_accel() -> str:
    forced = os.environ.get("PTFTPD_QEMU_ACCEL", "").strip().lower()
    if forced in ("tcg", "kvm"):
        return forced
    return "kvm" if kvm_usable() and not _kvm_broken else "tcg"


@dataclass
class BootNetwork:
    """A namespace with bridge `br0` (SERVER_IP/24) and tap `tap0` enslaved to it."""

    ns: Netns
    tmp: Path
    bridge: str = BRIDGE
    tap: str = TAP
    server_ip: str = SERVER_IP
    procs: list[Process] = field(default_factory=list)

    peers: list[Netns] = field(default_factory=list)

    def start(self, argv: list[str], name: str, ns: Netns | None = None) -> Process:
        """A server process inside the namespace (or a peer's), stopped by PID when the
        network goes."""
        proc = Process((ns or self.ns).popen_argv(argv), self.tmp / f"{name}.log")
        self.procs.append(proc)
        return proc

    def peer(self, address: str | None) -> Netns:
        """Another host on the same LAN: a namespace whose `eth0` (address/24, or no IPv4
        address) is plugged into the bridge by a veth. A DHCP server there has its own
        server identifier, as the network's real DHCP server would beside pxed --proxy."""
        peer = Netns("ptpxp")
        self.peers.append(peer)
        port = "vp" + peer.name[-8:]
        subprocess.run(
            [
                "ip",
                "link",
                "add",
                port,
                "netns",
                self.ns.name,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                peer.name,
            ],
            check=True,
        )
        self.ns.run("ip", "link", "set", port, "master", self.bridge)
        self.ns.run("ip", "link", "set", port, "up")
        if address is not None:
            peer.run("ip", "addr", "add", f"{address}/{PREFIX}", "dev", "eth0")
        peer.run("ip", "link", "set", "eth0", "up")
        return peer

    def router_advertisements(self, ipv6: bool = True) -> Process:
        """IPv6 router advertisements on the bridge (dnsmasq, RA only, no DHCPv6).

        iPXE configures IPv4 and IPv6 together and, with no router on the link, waits
        about 15 s for one before it boots; an RA ends that wait. Nothing else uses it.
        `ipv6=False` (the bridge has IPv6 disabled): the router is another host on the
        LAN, a peer with no IPv4 address, as on a LAN whose router is not the boot server."""
        if ipv6:
            self.ns.run("ip", "addr", "add", "fd78::1/64", "dev", self.bridge, "nodad")
            return self.dnsmasq("--enable-ra", "--dhcp-range=fd78::,ra-only", name="radv")
        router = self.peer(None)
        router.run("ip", "addr", "add", "fd78::fe/64", "dev", "eth0", "nodad")
        args = ("--enable-ra", "--dhcp-range=fd78::,ra-only")
        return self.dnsmasq(*args, name="radv", ns=router)

    def dnsmasq(self, *args: str, name: str = "dnsmasq", ns: Netns | None = None) -> Process:
        """dnsmasq on the bridge (or a peer's eth0) only: no DNS, leases in the test's
        directory, stays root (pytest's directories are private to root, and `nobody`
        could not read them)."""
        exe = require_tool("dnsmasq")
        iface = self.bridge if ns is None or ns is self.ns else "eth0"
        argv = [
            exe,
            "--keep-in-foreground",
            "--log-facility=-",
            "--conf-file=/dev/null",
            "--port=0",
            f"--interface={iface}",
            "--bind-interfaces",
            "--user=root",
            f"--dhcp-leasefile={self.tmp / (name + '.leases')}",
            f"--pid-file={self.tmp / (name + '.pid')}",
            "--log-dhcp",
            *args,
        ]
        return self.start(argv, name, ns)


@contextmanager
def boot_network(tmp: Path, prefix: str = "ptpxe", ipv6: bool = True) -> Iterator[BootNetwork]:
    """The namespace, bridge and tap; `ipv6=False`: IPv6 disabled on the bridge (the
    boot servers' interface), router advertisements from another host on the LAN."""
    require_root()
    require_tool("ip")
    if not Path("/dev/net/tun").exists():
        missing("/dev/net/tun is missing (tap devices)")
    ns = Netns(prefix)
    net = BootNetwork(ns, tmp)
    try:
        ns.run("ip", "link", "add", BRIDGE, "type", "bridge")
        # No STP listening/learning delay: the firmware's first DHCP packet must pass.
        ns.run(
            "ip", "link", "set", BRIDGE, "type", "bridge", "forward_delay", "0", "stp_state", "0"
        )
        # The bridge is the router: it must not configure itself an address from the
        # advertisements sent on it (dnsmasq's below, pxed --ipv6's own). Such an address
        # is tentative for a second (DAD), and a pxed started then failed to bind it
        # ("cannot bind fd78::...: Cannot assign requested address").
        for knob in ("accept_ra", "autoconf"):
            ns.run("sysctl", "-qw", f"net.ipv6.conf.{BRIDGE}.{knob}=0")
        if not ipv6:
            ns.run("sysctl", "-qw", f"net.ipv6.conf.{BRIDGE}.disable_ipv6=1")
        ns.run("ip", "tuntap", "add", "dev", TAP, "mode", "tap")
        ns.run("ip", "link", "set", TAP, "master", BRIDGE)
        ns.run("ip", "link", "set", TAP, "up")
        ns.run("ip", "link", "set", BRIDGE, "up")
        ns.run("ip", "addr", "add", f"{SERVER_IP}/{PREFIX}", "dev", BRIDGE)
        net.router_advertisements(ipv6)
        yield net
    finally:
        for proc in reversed(net.procs):
            proc.stop()
        for peer in net.peers:
            peer.delete()
        ns.delete()


@dataclass
class BootResult:
    seconds: float
    accel: str
    serial: str
    qemu_log: str


def _random_mac() -> str:
    tail = uuid.uuid4().bytes[:3]
    return "52:54:00:" + ":".join(f"{b:02x}" for b in tail)


def qemu_argv(
    firmware: str,
    accel: str,
    serial: Path,
    workdir: Path,
    mac: str,
    tap: str = TAP,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """The QEMU command line for one network boot; `firmware` is "bios" or "uefi"."""
    argv = [
        require_tool("qemu-system-x86_64"),
        "-accel",
        accel,
        "-display",
        "none",
        "-nodefaults",
        "-no-reboot",
        "-serial",
        f"file:{serial}",
        "-netdev",
        f"tap,id=n0,ifname={tap},script=no,downscript=no",
        "-boot",
        "n",
    ]
    if firmware == "bios":
        require_file(IPXE_ROM, "ipxe-qemu")
        sercon = workdir / "sercon-port.bin"
        sercon.write_bytes((0x3F8).to_bytes(2, "little"))
        argv += [
            # pxelinux's own serial output (SERIAL 1) goes to COM2: written to COM1 it
            # interleaved character by character with SeaBIOS's screen mirror of the
            # same text and split the marker. COM1 keeps the mirror, marker included.
            "-serial",
            f"file:{serial}.com2",
            "-m",
            "256",
            "-fw_cfg",
            f"name=etc/sercon-port,file={sercon}",
            # QEMU's default ROM for virtio-net is Debian's iPXE (ipxe-qemu). Naming it
            # with romfile= stops SeaBIOS from finding it (seen with QEMU 7.2): leave it.
            "-device",
            f"virtio-net-pci,netdev=n0,mac={mac}",
        ]
    elif firmware == "uefi":
        code, vars_template = ovmf_files()
        vars_copy = workdir / "OVMF_VARS.fd"
        shutil.copyfile(vars_template, vars_copy)
        argv += [
            "-machine",
            "q35",
            "-m",
            "512",
            "-drive",
            f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
            "-drive",
            f"if=pflash,format=raw,unit=1,file={vars_copy}",
            # No option ROM: OVMF's own PXE client (architecture 7) must do the first
            # step, not the EFI iPXE that the default ROM would start.
            "-device",
            f"virtio-net-pci,netdev=n0,mac={mac},romfile=",
        ]
    else:
        raise ValueError(f"unknown firmware {firmware!r}")
    return argv + list(extra)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _read_console(serial: Path) -> str:
    """COM1 (firmware, iPXE, the screen mirror) then COM2 (pxelinux), with the mirror's
    cursor-control sequences removed: they once stood inside the marker."""
    return _ANSI.sub("", _read(serial) + _read(Path(f"{serial}.com2")))


def _one_boot(
    net: BootNetwork,
    firmware: str,
    marker: str,
    workdir: Path,
    accel: str,
    timeout: float,
    mac: str,
    extra: tuple[str, ...] = (),
) -> tuple[str, BootResult]:
    """("ok" | "stalled" | "timeout" | "exited", result). QEMU is always killed."""
    workdir.mkdir(parents=True, exist_ok=True)
    serial = workdir / f"serial-{accel}.log"
    serial.unlink(missing_ok=True)
    Path(f"{serial}.com2").unlink(missing_ok=True)
    argv = net.ns.popen_argv(qemu_argv(firmware, accel, serial, workdir, mac, extra=extra))
    start = time.monotonic()
    proc = Process(argv, workdir / f"qemu-{accel}.log")
    outcome = "timeout"
    last_size, last_change = -1, start
    try:
        while time.monotonic() - start < timeout:
            text = _read_console(serial)
            if marker in text:
                outcome = "ok"
                break
            if proc.proc.poll() is not None:
                outcome = "exited"
                break
            now = time.monotonic()
            if len(text) != last_size:
                last_size, last_change = len(text), now
            if accel == "kvm":
                if "KVM internal error" in proc.output():
                    outcome = "stalled"
                    break
                if now - last_change > KVM_STALL:
                    outcome = "stalled"
                    break
            time.sleep(0.2)
    finally:
        seconds = time.monotonic() - start
        proc.stop(signal.SIGKILL, timeout=10)
    return outcome, BootResult(seconds, accel, _read_console(serial), proc.output())


def boot_vm(
    net: BootNetwork,
    firmware: str,
    marker: str,
    workdir: Path,
    timeout: float = BOOT_TIMEOUT,
    mac: str | None = None,
    extra: tuple[str, ...] = (),
) -> BootResult:
    """Boot once from the network and wait for `marker` on the serial console.

    `extra` goes at the end of QEMU's command line (e.g. OVMF fw_cfg switches).
    Raises AssertionError with the serial tail when the marker does not appear."""
    global _kvm_broken
    mac = mac or _random_mac()
    accel = pick_accel()
    outcome, result = _one_boot(net, firmware, marker, workdir, accel, timeout, mac, extra)
    if outcome != "ok" and accel == "kvm" and "PTFTPD_QEMU_ACCEL" not in os.environ:
        _kvm_broken = True
        # A fresh, full bound for TCG: the KVM attempt may have used all of its own.
        outcome, result = _one_boot(net, firmware, marker, workdir, "tcg", timeout, mac, extra)
    if outcome != "ok":
        tail = "\n".join(result.serial.splitlines()[-25:])
        raise AssertionError(
            f"{firmware} boot ({result.accel}) {outcome} after {result.seconds:.0f} s without "
            f"{marker!r} on serial; serial tail:\n{tail}\nqemu: {result.qemu_log[-500:]}"
        )
    return result


def make_pxelinux_root(root: Path, marker: str) -> None:
    """pxelinux.0 + ldlinux.c32 and a config that prints `marker` on the serial port."""
    require_file(PXELINUX, "pxelinux")
    require_file(LDLINUX, "syslinux-common")
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PXELINUX, root / "pxelinux.0")
    shutil.copyfile(LDLINUX, root / "ldlinux.c32")
    cfg = root / "pxelinux.cfg"
    cfg.mkdir(exist_ok=True)
    (cfg / "default").write_text(
        f"SERIAL 1 115200\nSAY {marker}\nPROMPT 0\nTIMEOUT 600\nDEFAULT none\n"
        "LABEL none\n  LOCALBOOT -1\n"
    )


def make_ipxe_script(path: Path, marker: str) -> None:
    """An iPXE script that prints `marker` and then idles (the harness kills the VM)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!ipxe\necho {marker}\nsleep 300\n")


def copy_ipxe_efi(root: Path) -> None:
    require_file(IPXE_EFI, "ipxe")
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(IPXE_EFI, root / "ipxe.efi")


def udhcpc_ipxe(
    client: Netns, tmp: Path, mac: str, retransmit: int = 1, tries: int = 6
) -> tuple[str | None, float]:
    """busybox udhcpc as iPXE (x64 UEFI, user class iPXE, a DISCOVER every `retransmit`
    seconds, `tries` of them) with `mac` on the peer's eth0: the boot file it was bound
    with (None: no lease) and the seconds from its start to its end."""
    udhcpc = require_tool("udhcpc")
    out = tmp / f"bound-{mac[-2:]}"
    out.unlink(missing_ok=True)
    hook = tmp / "udhcpc-hook"
    hook.write_text(f'#!/bin/sh\n[ "$1" = bound ] && echo "$boot_file" > {out}\nexit 0\n')
    hook.chmod(0o755)
    client.run("ip", "link", "set", "eth0", "address", mac)
    argv = [udhcpc, "-i", "eth0", "-n", "-q", "-f", "-t", str(tries), "-T", str(retransmit),
            "-s", str(hook), "-V", "PXEClient:Arch:00007:UNDI:003000", "-x", "0x5d:0007",
            "-x", "0x4d:69505845"]  # fmt: skip
    began = time.monotonic()
    subprocess.run(client.popen_argv(argv), capture_output=True, timeout=30)
    took = time.monotonic() - began
    return (out.read_text().strip() if out.exists() else None), took
