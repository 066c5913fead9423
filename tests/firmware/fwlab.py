"""The firmware tests' lab: one network namespace per test holding a bridge `br0` with
the server's addresses, taps for QEMU guests and veth-plugged namespaces for scripted
clients and for the network's own DHCP server; pxed and dnsmasq run on that bridge.

Every process is ours and stopped by its PID; every QEMU boot is bounded and killed by
its PID; the namespaces go with everything in them. Boot times are printed and
appended to a JSON-lines file (`PTFTPD_BOOT_TIMES`, else one per test session) that
this directory's conftest sums up at the end of the run, so CI's log shows each
firmware's boot time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ptftpd.dhcp import Message, PacketError, decode
from support import (
    Netns,
    Process,
    add_veth,
    missing,
    require_root,
    require_tool,
    script,
    wait_udp_bound,
)

SERVER_IP = "10.81.0.1"
SERVER6 = "fd81::1"
RA_PREFIX = "fd8a::"  # router advertisements only (Lan.router_advertisements)
PREFIX = 24
DHCP_FILTER = "udp port 67 or udp port 68 or udp port 4011 or udp port 546 or udp port 547"


def boot_times_file() -> Path:
    """Where boot times go: $PTFTPD_BOOT_TIMES (this directory's conftest sets a file of
    its own per test session when it is unset)."""
    return Path(os.environ.get("PTFTPD_BOOT_TIMES", f"/tmp/ptftpd-boot-times-{os.getpid()}.jsonl"))


def require_file(path: Path, package: str) -> Path:
    if not path.is_file():
        missing(f"{path} is missing (Debian package {package})")
    return path


def record_boot_time(test: str, seconds: float, **details: object) -> None:
    """Print the boot time and add it to the results file."""
    print(f"boot time {test}: {seconds:.1f} s {details or ''}", flush=True)
    with boot_times_file().open("a") as out:
        out.write(json.dumps({"test": test, "seconds": round(seconds, 1), **details}) + "\n")


@dataclass
class Lan:
    ns: Netns
    tmp: Path
    procs: list[Process] = field(default_factory=list)
    hosts: list[Netns] = field(default_factory=list)
    server_ip: str = SERVER_IP
    taps: int = 0

    def start(self, argv: Sequence[str], name: str, ns: Netns | None = None) -> Process:
        proc = Process((ns or self.ns).popen_argv(argv), self.tmp / f"{name}.log")
        self.procs.append(proc)
        return proc

    def host(self, mac: str | None = None, address: str | None = None) -> Netns:
        """A namespace whose `eth0` is plugged into the bridge (a scripted client, or the
        network's own DHCP server at `address`)."""
        host = Netns("fwh")
        self.hosts.append(host)
        port = "vp" + host.name[-8:]
        add_veth(self.ns, port, host, "eth0")
        self.ns.run("ip", "link", "set", port, "master", "br0")
        self.ns.run("ip", "link", "set", port, "up")
        if mac:
            host.run("ip", "link", "set", "eth0", "address", mac)
        if address:
            host.run("ip", "addr", "add", f"{address}/{PREFIX}", "dev", "eth0")
        host.run("ip", "link", "set", "eth0", "up")
        return host

    def tap(self) -> str:
        """A tap device in the bridge for one QEMU guest."""
        name = f"tap{self.taps}"
        self.taps += 1
        self.ns.run("ip", "tuntap", "add", "dev", name, "mode", "tap")
        self.ns.run("ip", "link", "set", name, "master", "br0")
        self.ns.run("ip", "link", "set", name, "up")
        return name

    def router_advertisements(self) -> Process:
        """IPv6 router advertisements on br0 (dnsmasq, RA only: no DHCPv6, no DHCPv4).

        iPXE configures IPv4 and IPv6 together and, with no router on the link, waits
        about 15 s for one before it boots (its "Configuring (net0 ...) ......" line):
        a SeaBIOS iPXE boot took 18.6 s without the RA. The bridge, being the router,
        takes no address from its own advertisements (accept_ra=0, autoconf=0)."""
        for knob in ("accept_ra", "autoconf"):
            self.ns.run("sysctl", "-qw", f"net.ipv6.conf.br0.{knob}=0")
        self.ns.run("ip", "addr", "add", f"{RA_PREFIX}1/64", "dev", "br0", "nodad")
        conf = f"enable-ra\ndhcp-range={RA_PREFIX},ra-only\n"
        proc = self.dnsmasq(conf, "radv", dhcp=False)
        proc.wait_output("router advertisement on", timeout=10)
        return proc

    def dnsmasq(
        self, conf: str, name: str = "dnsmasq", ns: Netns | None = None, dhcp: bool = True
    ) -> Process:
        """dnsmasq with `conf` as its configuration file (the form its documentation and
        Raspberry Pi's give), DHCP only, on the bridge (or a host's eth0); `dhcp`: wait
        until it listens on port 67."""
        exe = require_tool("dnsmasq")
        conf_path = self.tmp / f"{name}.conf"
        conf_path.write_text(conf)
        argv = [
            exe,
            "--keep-in-foreground",
            "--log-facility=-",
            f"--conf-file={conf_path}",
            "--port=0",
            f"--interface={'br0' if ns is None else 'eth0'}",
            "--bind-interfaces",
            "--user=root",
            f"--dhcp-leasefile={self.tmp / (name + '.leases')}",
            f"--pid-file={self.tmp / (name + '.pid')}",
            "--log-dhcp",
        ]
        proc = self.start(argv, name, ns)
        if dhcp:
            wait_udp_bound(67, proc=proc.proc, netns=(ns or self.ns).name)
        return proc

    def pxed(self, root: Path, bootfile: str, *flags: str, name: str = "pxed") -> Process:
        """pxed -v on the bridge, TFTP in its own process, a boot line after 15 quiet
        seconds (or at its stop)."""
        argv = [script("pxed"), "-v", "--workers", "1", "--boot-idle", "15", *flags]
        proc = self.start([*argv, "br0", str(root), bootfile], name)
        wait_udp_bound(69, proc=proc.proc, netns=self.ns.name)
        wait_udp_bound(4011, proc=proc.proc, netns=self.ns.name)
        if "--http-port" in flags:
            port = flags[flags.index("--http-port") + 1]
            proc.wait_output(f"port {port}", timeout=10)
        return proc

    def capture(self, name: str = "capture", what: str = DHCP_FILTER) -> Capture:
        """tcpdump on the bridge (DHCP and DHCPv6 unless `what` says otherwise) into a
        pcap file."""
        pcap = self.tmp / f"{name}.pcap"
        argv = [require_tool("tcpdump"), "-i", "br0", "-U", "-n", "-w", str(pcap), what]
        proc = self.start(argv, name)
        deadline = time.monotonic() + 10
        while "listening on" not in proc.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        return Capture(proc, pcap)


@dataclass
class Capture:
    proc: Process
    pcap: Path

    def stop(self) -> list[tuple[int, int, bytes]]:
        """(source port, destination port, UDP payload) of every captured IPv4 or IPv6
        UDP datagram, in order."""
        time.sleep(0.3)  # let tcpdump write what is in flight
        self.proc.stop(signal.SIGINT)
        return read_pcap_udp(self.pcap)

    def dhcp(self) -> list[Message]:
        out = []
        for sport, dport, payload in self.stop():
            if {sport, dport} & {67, 68, 4011}:
                try:
                    out.append(decode(payload))
                except PacketError:
                    pass
        return out


def read_pcap_ipv4_udp_to(path: Path, port: int) -> list[tuple[str, bytes]]:
    """(destination address, payload) of the IPv4 UDP datagrams to `port` in a capture."""
    return [(dest, data) for dest, _, dport, data in _pcap_udp(path) if dport == port and dest]


def read_pcap_udp(path: Path) -> list[tuple[int, int, bytes]]:
    """(source port, destination port, payload) of the UDP datagrams in a capture."""
    return [(sport, dport, data) for _, sport, dport, data in _pcap_udp(path)]


def _pcap_udp(path: Path) -> list[tuple[str, int, int, bytes]]:
    """(IPv4 destination or "", source port, destination port, payload) of every UDP
    datagram (IPv4 or IPv6) in a classic pcap file of Ethernet frames (tcpdump -w)."""
    data = path.read_bytes() if path.exists() else b""
    if len(data) < 24:
        return []
    endian = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    out = []
    i = 24
    while i + 16 <= len(data):
        _, _, incl, _ = struct.unpack(endian + "IIII", data[i : i + 16])
        frame = data[i + 16 : i + 16 + incl]
        i += 16 + incl
        if len(frame) < 14:
            continue
        ethertype = int.from_bytes(frame[12:14], "big")
        dest = ""
        if ethertype == 0x0800 and len(frame) >= 34 and frame[23] == 17:
            ihl = (frame[14] & 0x0F) * 4
            dest = ".".join(str(b) for b in frame[30:34])
            udp = frame[14 + ihl :]
        elif ethertype == 0x86DD and len(frame) >= 62 and frame[20] == 17:
            udp = frame[54:]
        else:
            continue
        if len(udp) >= 8:
            sport, dport, length = struct.unpack("!HHH", udp[:6])
            out.append((dest, sport, dport, udp[8:length]))
    return out


@contextmanager
def lan(tmp: Path, ipv6: bool = False) -> Iterator[Lan]:
    """A namespace with bridge br0 (SERVER_IP/24, and SERVER6/64 with `ipv6`)."""
    require_root()
    require_tool("ip")
    if not Path("/dev/net/tun").exists():
        missing("/dev/net/tun is missing (tap devices)")
    ns = Netns("fwl")
    net = Lan(ns, tmp)
    try:
        ns.run("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0")
        ns.run("sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
        ns.run("ip", "link", "add", "br0", "type", "bridge")
        ns.run("ip", "link", "set", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0")
        ns.run("ip", "link", "set", "br0", "up")
        ns.run("ip", "addr", "add", f"{SERVER_IP}/{PREFIX}", "dev", "br0")
        if ipv6:
            ns.run("ip", "addr", "add", f"{SERVER6}/64", "dev", "br0", "nodad")
        yield net
    finally:
        for proc in reversed(net.procs):
            proc.stop()
        for host in net.hosts:
            host.delete()
        ns.delete()


# -- QEMU -----------------------------------------------------------------------------------


@dataclass
class Boot:
    outcome: str  # "ok", "failed" (a failure marker), "timeout", "exited"
    seconds: float
    serial: str


def qemu_boot(
    net: Lan,
    argv: Sequence[str],
    name: str,
    markers: Sequence[str],
    failures: Sequence[str] = (),
    timeout: float = 240.0,
    done: Callable[[], bool] | None = None,
) -> Boot:
    """Run QEMU (`argv`, its serial console going to TMP/NAME-serial.log, given by
    `serial_args`) inside the lab until a marker or failure text shows on the serial
    console (or `done()` says so), QEMU exits, or `timeout` passes; QEMU is always killed
    by its PID."""
    serial = net.tmp / f"{name}-serial.log"
    proc = Process(net.ns.popen_argv(argv), net.tmp / f"{name}-qemu.log")
    start = time.monotonic()
    outcome = "timeout"
    text = ""
    try:
        while time.monotonic() - start < timeout:
            text = _read(serial)
            if any(m in text for m in markers) or (done is not None and done()):
                outcome = "ok"
                break
            if any(f in text for f in failures):
                outcome = "failed"
                break
            if proc.proc.poll() is not None:
                outcome = "exited"
                break
            time.sleep(0.2)
    finally:
        seconds = time.monotonic() - start
        proc.stop(signal.SIGKILL, timeout=10)
    text = _read(serial)
    if outcome == "exited" and any(m in text for m in markers):
        outcome = "ok"  # the guest printed its marker and powered off at once
    elif outcome == "exited":
        text += "\n[qemu] " + proc.output()[-1500:]
    return Boot(outcome, seconds, text)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def serial_args(net: Lan, name: str) -> list[str]:
    return ["-serial", f"file:{net.tmp / (name + '-serial.log')}"]


OVMF = Path("/usr/share/OVMF")
AAVMF = Path("/usr/share/AAVMF")


def uefi_vars(net: Lan, name: str) -> Path:
    """The per-boot copy of guest `name`'s variable store (what `ovmf_boot_order` edits)."""
    return net.tmp / f"{name}-vars.fd"


def _uefi_vm(net: Lan, name: str, code: Path, template: Path, tap: str, mac: str) -> list[str]:
    """What every EDK2 guest here shares: read-only code and a per-boot copy of the
    variable store in pflash, the serial console in a file, no display, no reboot, and
    virtio-net on `tap` without an option ROM (the firmware's own network stack)."""
    vars_copy = uefi_vars(net, name)
    shutil.copyfile(template, vars_copy)
    return [
        *("-display", "none", "-nodefaults", "-no-reboot", "-m", "512"),
        *serial_args(net, name),
        *("-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}"),
        *("-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"),
        *("-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no"),
        *("-device", f"virtio-net-pci,netdev=n0,mac={mac},romfile="),
    ]


def ovmf_argv(net: Lan, name: str, tap: str, mac: str, secure: bool, *extra: str) -> list[str]:
    """OVMF on q35 with OVMF's own network stack (no option ROM) on `tap`; `secure`:
    the Microsoft-keys build with Secure Boot on (SMM, secure pflash)."""
    qemu = require_tool("qemu-system-x86_64")
    kind = ".ms" if secure else ""
    code = require_file(OVMF / f"OVMF_CODE_4M{kind}.fd", "ovmf")
    template = require_file(OVMF / f"OVMF_VARS_4M{kind}.fd", "ovmf")
    machine = ["-machine", "q35,smm=on" if secure else "q35"]
    if secure:
        machine += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
    vm = _uefi_vm(net, name, code, template, tap, mac)
    return [qemu, "-accel", "tcg", *machine, *vm, "-boot", "n", *extra]


def aavmf_argv(net: Lan, name: str, tap: str, mac: str, *extra: str) -> list[str]:
    """AAVMF (ARM64 EDK2) on QEMU's virt machine, its own network stack on `tap`."""
    qemu = require_tool("qemu-system-aarch64")
    code = require_file(AAVMF / "AAVMF_CODE.fd", "qemu-efi-aarch64")
    template = require_file(AAVMF / "AAVMF_VARS.fd", "qemu-efi-aarch64")
    vm = _uefi_vm(net, name, code, template, tap, mac)
    return [qemu, "-M", "virt", "-cpu", "cortex-a57", *vm, *extra]


def fw_cfg_only(*paths: str) -> list[str]:
    """fw_cfg switches that leave OVMF only the network boot paths named in `paths`
    ("IPv4PXE", "IPv6PXE", "IPv4HTTP"...: only the PXE ones can be switched off)."""
    out: list[str] = []
    for kind in ("IPv4PXESupport", "IPv6PXESupport"):
        if kind.removesuffix("Support") not in paths:
            out += ["-fw_cfg", f"name=opt/org.tianocore/{kind},string=no"]
    return out


# -- an OVMF variable store holding a boot order --------------------------------------------

_EFI_GLOBAL_VARIABLE = bytes.fromhex("61dfe48bca93d211aa0d00e098032b8c")  # 8BE4DF61-93CA-...
_AUTH_VARIABLE_STORE = bytes.fromhex("782cf3aa7b949a43a1802e144ec37792")  # AAF32C78-947B-...
_NV_BS_RT = 0x7  # EFI_VARIABLE_NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS


def _node(kind: int, sub: int, body: bytes) -> bytes:
    return struct.pack("<BBH", kind, sub, 4 + len(body)) + body


def pci_device_path(device: int, function: int = 0) -> bytes:
    """PciRoot(0x0)/Pci(DEVICE,FUNCTION) (UEFI spec 10.3: ACPI PNP0A03 uid 0, PCI node)."""
    return _node(2, 1, struct.pack("<II", 0x0A0341D0, 0)) + _node(1, 1, bytes((function, device)))


def pxe4_device_path(device: int, mac: str) -> bytes:
    """What EDK2's PXE driver names its IPv4 child of a NIC at PciRoot(0x0)/Pci(DEVICE,0x0):
    .../MAC(mac,0x1)/IPv4(0.0.0.0,0x0,DHCP,0.0.0.0,0.0.0.0,0.0.0.0), a zeroed IPv4 node."""
    mac_node = _node(3, 11, bytes.fromhex(mac.replace(":", "")).ljust(32, b"\0") + b"\x01")
    return pci_device_path(device) + mac_node + _node(3, 12, bytes(23))


def ovmf_boot_order(store: Path, options: Sequence[tuple[str, bytes]]) -> None:
    """Write Boot0001.. (active, one per (description, device path) in `options`) and a
    BootOrder naming them in that order into an empty OVMF variable store file (a copy of
    OVMF_VARS_4M.fd: firmware volume, then the authenticated variable store). OVMF keeps
    such a boot order when QEMU's `bootorder` is empty (no `bootindex` anywhere) and appends
    the options it creates itself (HTTPv4, ...) after them."""
    data = bytearray(store.read_bytes())
    start = struct.unpack_from("<H", data, 0x30)[0]  # firmware volume header length
    if data[start : start + 16] != _AUTH_VARIABLE_STORE:
        raise ValueError(f"{store}: no authenticated variable store after the volume header")
    offset = start + 28  # GUID, Size, Format, State, reserved
    if data[offset : offset + 2] != b"\xff\xff":
        raise ValueError(f"{store}: the variable store is not empty")

    def variable(name: str, value: bytes) -> bytes:
        encoded = (name + "\0").encode("utf-16-le")
        header = struct.pack("<HBBIQ16sIII", 0x55AA, 0x3F, 0, _NV_BS_RT, 0, bytes(16), 0,
                             len(encoded), len(value))  # fmt: skip
        blob = header + _EFI_GLOBAL_VARIABLE + encoded + value
        return blob.ljust((len(blob) + 3) // 4 * 4, b"\xff")

    end = b"\x7f\xff\x04\x00"
    blobs = b""
    for number, (description, path) in enumerate(options, 1):
        text = (description + "\0").encode("utf-16-le")
        load_option = struct.pack("<IH", 1, len(path) + len(end)) + text + path + end
        blobs += variable(f"Boot{number:04X}", load_option)
    order = b"".join(struct.pack("<H", n) for n in range(1, len(options) + 1))
    blobs += variable("BootOrder", order)
    data[offset : offset + len(blobs)] = blobs
    store.write_bytes(bytes(data))
