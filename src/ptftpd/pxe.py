"""PXE boot service: DHCP (or proxyDHCP) + boot server + read-only TFTP in one loop.

Why these pieces live together: a network boot is one conversation spread over three
protocols. The firmware's DHCP request says what it is (architecture, option 93; iPXE,
option 77/175), the reply must name a file that fits that firmware, and the TFTP server
must then serve it. Keeping all three in one process lets `pxed` choose the file per
firmware, and log one line per boot (MAC, architecture, files, seconds from DISCOVER to
the last byte) instead of three unrelated logs.

Layers, each testable without sockets:
- `BootFiles` / `choose_boot_file`: the firmware-aware choice (IANA architecture codes,
  RFC 4578 and the IANA "Processor Architecture Types" registry in
  `ptftpd.dhcp.options.ARCHITECTURES`). An unknown code gets the default file.
- `ProxyResponder`: sans-IO proxyDHCP (port 67, DISCOVER -> boot-only OFFER) and PXE
  boot server (port 4011, REQUEST -> ACK with the boot file). UEFI firmware commonly
  ignores a proxy OFFER unless the 4011 exchange follows. The 4011 server also runs
  beside the full DHCP server, for firmware that asks there anyway.
- `BootLog`: per-client boot sessions fed by DHCP and TFTP events.
- `PxeService`: the asyncio shell that runs `DhcpServer` (or the proxy), the 4011
  boot server and a `TftpServer` in the running loop.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

from ptftpd.dhcp.engine import BootChoice, DhcpConfig, Outgoing, make_reply, reply_destination
from ptftpd.dhcp.options import (
    ARCHITECTURES,
    DISCOVERY_DOWNLOAD_DIRECTLY,
    MessageType,
    Opt,
    arch_name,
    pxe_vendor_options,
)
from ptftpd.dhcp.packet import BOOTREQUEST, ZERO_IP, Message, PacketError, decode, encode
from ptftpd.dhcp.server import DhcpServer, open_dhcp_socket
from ptftpd.tftp.paths import PathRefused, resolve
from ptftpd.tftp.server import FinishedTransfer, ServerConfig, TftpServer

__all__ = [
    "ARCHITECTURES",
    "BOOT_SERVER_PORT",
    "BootClass",
    "BootFiles",
    "BootLog",
    "FirmwareChoice",
    "ProxyResponder",
    "PxeConfig",
    "PxeService",
    "arch_class",
    "choose_boot_file",
    "is_ipxe",
    "missing_boot_files",
]

log = logging.getLogger("ptftpd.pxe")

BOOT_SERVER_PORT = 4011
DHCP_SERVER_PORT = 67
DHCP_CLIENT_PORT = 68


class BootClass(enum.Enum):
    """The firmware families that need different boot files (the CLI's --*-bootfile)."""

    BIOS = "bios"
    EFI32 = "efi32"
    EFI64 = "efi64"
    ARM64 = "arm64"


# IANA codes that load a TFTP boot file of each family. 7 and 9 are both x64 UEFI: the
# registry lists 9 as "EFI x86-64" and early EDK2 builds sent it. HTTP-boot codes (15,
# 16, 19...) want a URL and fall back to the default file like any other code.
_CLASS_OF_ARCH: dict[int, BootClass] = {
    0: BootClass.BIOS,
    6: BootClass.EFI32,
    7: BootClass.EFI64,
    9: BootClass.EFI64,
    11: BootClass.ARM64,
}


def arch_class(arch: int | None) -> BootClass | None:
    """The family for an option 93 code; None for no code, unmapped or unknown codes."""
    if arch is None:
        return None
    return _CLASS_OF_ARCH.get(arch)


def is_ipxe(request: Message) -> bool:
    """iPXE announces itself with user class `iPXE` (77) and its own option 175."""
    return request.has_user_class("iPXE") or Opt.IPXE_ENCAP in request.options


@dataclass(frozen=True)
class BootFiles:
    """Boot file names relative to ROOT. `default` (the CLI's BOOTFILE) is used for every
    family without its own file; `ipxe` goes to clients that are already iPXE."""

    default: str
    bios: str | None = None
    efi32: str | None = None
    efi64: str | None = None
    arm64: str | None = None
    ipxe: str | None = None

    def for_class(self, cls: BootClass | None) -> str:
        specific = {
            BootClass.BIOS: self.bios,
            BootClass.EFI32: self.efi32,
            BootClass.EFI64: self.efi64,
            BootClass.ARM64: self.arm64,
            None: None,
        }[cls]
        return specific or self.default

    def configured(self) -> list[tuple[str, str]]:
        """(what, file name) for every file a client may be given, for the start-up check."""
        items = [("BOOTFILE", self.default)]
        for flag, name in (
            ("--bios-bootfile", self.bios),
            ("--efi32-bootfile", self.efi32),
            ("--efi64-bootfile", self.efi64),
            ("--arm64-bootfile", self.arm64),
            ("--ipxe-bootfile", self.ipxe),
        ):
            if name:
                items.append((flag, name))
        return items


@dataclass(frozen=True)
class FirmwareChoice:
    file: str
    arch: int | None
    arch_label: str
    ipxe: bool
    # Why this file: "ipxe", a family value ("efi64"), "default" or "unknown arch".
    reason: str


def choose_boot_file(files: BootFiles, request: Message) -> FirmwareChoice:
    """The boot file for this request: iPXE gets `files.ipxe` (never the iPXE binary
    again, which would loop), else the file for its architecture, else the default."""
    arch = request.arch
    label = "-" if arch is None else arch_name(arch)
    ipxe = is_ipxe(request)
    if ipxe:
        label = f"iPXE {label}" if arch is not None else "iPXE"
        if files.ipxe:
            return FirmwareChoice(files.ipxe, arch, label, True, "ipxe")
    cls = arch_class(arch)
    if cls is not None:
        return FirmwareChoice(files.for_class(cls), arch, label, ipxe, cls.value)
    reason = "default"
    if arch is not None and arch not in ARCHITECTURES:
        reason = "unknown arch"
    return FirmwareChoice(files.default, arch, label, ipxe, reason)


def missing_boot_files(root: Path, files: BootFiles) -> list[str]:
    """Human descriptions of configured boot files that ROOT does not hold.

    Names with a URL scheme (an iPXE script may be `http://...`) are not on TFTP and are
    not checked."""
    problems: list[str] = []
    real_root = root.resolve()
    for what, name in files.configured():
        if "://" in name:
            continue
        try:
            path = resolve(real_root, name)
        except PathRefused as exc:
            problems.append(f"{what} {name} ({exc})")
            continue
        if not path.is_file():
            problems.append(f"{what} {name}")
    return problems


# -- boot log ------------------------------------------------------------------------


@dataclass
class _Session:
    mac: str
    started: float
    last_event: float
    stages: list[str] = field(default_factory=list)
    files: list[tuple[str, int]] = field(default_factory=list)
    last_byte: float | None = None


class BootLog:
    """One line per boot: MAC, architecture(s), files served, DISCOVER to last byte.

    A boot is everything one MAC does from its first DISCOVER until it has been quiet
    for `idle` seconds, so a chain (firmware -> ipxe.efi -> iPXE script) is one line.
    TFTP knows only IP addresses: DHCP REQUESTs (option 50 or ciaddr), our ACKs and
    the 4011 exchange tell which MAC an address belongs to. Sans-IO: the owner calls
    `expire()` now and then, and `flush()` on shutdown.
    """

    def __init__(
        self,
        idle: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        emit: Callable[[str], None] | None = None,
    ) -> None:
        self.idle = idle
        self.clock = clock
        self.emit = emit or (lambda line: log.info("%s", line))
        self.sessions: dict[str, _Session] = {}
        self.mac_of_ip: dict[str, str] = {}

    def _session(self, mac: str) -> _Session:
        now = self.clock()
        session = self.sessions.get(mac)
        if session is None:
            session = _Session(mac, now, now)
            self.sessions[mac] = session
        session.last_event = now
        return session

    def discover(self, mac: str, stage: str) -> None:
        session = self._session(mac)
        if not session.stages or session.stages[-1] != stage:
            session.stages.append(stage)

    def address(self, mac: str, ip: IPv4Address | str | None) -> None:
        if ip is None or str(ip) == "0.0.0.0":
            return
        self.mac_of_ip[str(ip)] = mac
        if mac in self.sessions:
            self.sessions[mac].last_event = self.clock()

    def served(self, ip: str, filename: str, nbytes: int) -> None:
        mac = self.mac_of_ip.get(ip)
        if mac is None:
            log.debug("served %s to %s, which no DHCP exchange named", filename, ip)
            mac = f"ip {ip}"
        session = self._session(mac)
        session.files.append((filename, nbytes))
        session.last_byte = self.clock()

    @staticmethod
    def describe(session: _Session) -> str:
        stages = " -> ".join(session.stages) or "no DHCP seen"
        if session.files:
            files = ", ".join(f"{name} ({size} bytes)" for name, size in session.files)
            assert session.last_byte is not None
            seconds = session.last_byte - session.started
            return (
                f"boot {session.mac} arch={stages}: served {files}; "
                f"{seconds:.1f} s from DISCOVER to the last byte"
            )
        return f"boot {session.mac} arch={stages}: no file served"

    def expire(self, busy_ips: Collection[str] = ()) -> None:
        """Write and forget the boots that have been quiet for `idle` seconds; a client
        still downloading (its address in `busy_ips`) is not quiet."""
        now = self.clock()
        busy = {self.mac_of_ip.get(ip, f"ip {ip}") for ip in busy_ips}
        for mac, session in list(self.sessions.items()):
            if mac in busy:
                session.last_event = now
                continue
            if now - session.last_event >= self.idle:
                del self.sessions[mac]
                self.emit(self.describe(session))

    def flush(self) -> None:
        for session in self.sessions.values():
            self.emit(self.describe(session))
        self.sessions.clear()


# -- proxyDHCP and boot server (sans-IO) ------------------------------------------------


class ProxyResponder:
    """proxyDHCP on port 67 and the PXE boot server on port 4011, without sockets.

    On 67 it answers PXE clients' DISCOVERs with an OFFER that carries no address
    (yiaddr 0.0.0.0), only vendor class `PXEClient`, next-server and the boot file; the
    network's own DHCP server hands out the address. On 4011 it answers the client's
    REQUEST (sent once it has an address) with an ACK naming the file.

    What goes in option 43 follows the PXE 2.1 specification and dnsmasq's proxy mode:
    - BIOS ROMs (architecture 0, or no option 93: PXE 2.0) get PXE_DISCOVERY_CONTROL
      with bit 3 set ("a boot file is named: download it"), as dnsmasq sends when no
      boot menu is configured; a legacy ROM that gets no 43 in a proxy offer may go on
      to boot server discovery, or give up.
    - UEFI firmware gets no 43 (the Windows Deployment Services, "BINL", style), which
      makes EDK2/OVMF (a "ProxyBinl" offer) fetch the boot information from port 4011,
      which many UEFI firmwares insist on. iPXE uses the OFFER's file either way.
    - A boot server REQUEST (a PXE client naming a boot item, 43.71) is answered on
      either port: PXE 2.1 ROMs broadcast boot server discovery to port 67 and unicast
      or multicast it to 4011, and dnsmasq answers both. The item is echoed back.
    Every other packet is ignored (the network DHCP server's REQUESTs only teach us
    the client's address, for the boot log).
    """

    def __init__(
        self,
        server_ip: IPv4Address,
        files: BootFiles,
        next_server: IPv4Address | None = None,
        vendor_prefixes: tuple[str, ...] = ("PXEClient",),
        boot_log: BootLog | None = None,
        answer_discover: bool = True,
    ) -> None:
        self.server_ip = server_ip
        self.files = files
        self.next_server = next_server or server_ip
        self.vendor_prefixes = vendor_prefixes
        self.boot_log = boot_log
        self.answer_discover = answer_discover

    def is_pxe(self, msg: Message) -> bool:
        vc = msg.vendor_class or ""
        return any(vc.startswith(p) for p in self.vendor_prefixes)

    def handle(self, data: bytes, source: tuple[str, int], boot_server: bool) -> list[Outgoing]:
        """Datagram `data` from `source` arrived on the boot server port (4011) when
        `boot_server`, else on the DHCP port (67)."""
        try:
            msg = decode(data)
        except PacketError as exc:
            log.debug("drop %d bytes from %s: %s", len(data), source[0], exc)
            return []
        if msg.op != BOOTREQUEST or msg.message_type is None:
            return []
        mtype = msg.message_type
        vendor = msg.options.get(Opt.VENDOR_SPECIFIC)
        discovery = (
            mtype in (MessageType.REQUEST, MessageType.INFORM)
            and vendor is not None
            and _boot_item(vendor) is not None
        )
        if boot_server or (discovery and self.answer_discover):
            if mtype not in (MessageType.REQUEST, MessageType.INFORM):
                return []
            if not self.is_pxe(msg):
                log.debug("boot server: ignore non-PXE request from %s", msg.mac_str)
                return []
            if self.boot_log is not None:
                self.boot_log.address(msg.mac_str, msg.ciaddr)
                if source[0] != "0.0.0.0":
                    self.boot_log.address(msg.mac_str, source[0])
            return [self._boot_server_ack(msg, source, boot_server)]
        # Port 67: we are not the address server.
        if mtype is MessageType.REQUEST and self.boot_log is not None:
            ip = msg.requested_ip or (msg.ciaddr if msg.ciaddr != ZERO_IP else None)
            self.boot_log.address(msg.mac_str, ip)
            return []
        if mtype is not MessageType.DISCOVER or not self.answer_discover:
            return []
        if not self.is_pxe(msg):
            log.debug("proxy: ignore non-PXE DISCOVER from %s", msg.mac_str)
            return []
        return [self._proxy_offer(msg)]

    def _fill(
        self, request: Message, reply: Message, choice: FirmwareChoice, offer: bool = False
    ) -> None:
        opts = reply.options
        opts[Opt.VENDOR_CLASS] = b"PXEClient"
        vendor = request.options.get(Opt.VENDOR_SPECIFIC)
        # A PXE 2.1 client naming a boot item (43.71) expects it echoed back; a BIOS
        # ROM's proxy offer says "download the named file"; see the class docstring.
        item = _boot_item(vendor) if vendor else None
        if item is not None:
            opts[Opt.VENDOR_SPECIFIC] = item + b"\xff"
        elif offer and choice.arch in (None, 0):
            opts[Opt.VENDOR_SPECIFIC] = pxe_vendor_options(DISCOVERY_DOWNLOAD_DIRECTLY)
        if Opt.CLIENT_UUID in request.options:
            opts[Opt.CLIENT_UUID] = request.options[Opt.CLIENT_UUID]
        reply.siaddr = self.next_server
        reply.file = choice.file.encode()[:127]
        opts[Opt.TFTP_SERVER_NAME] = str(self.next_server).encode()
        opts[Opt.BOOTFILE_NAME] = choice.file.encode()

    def _proxy_offer(self, msg: Message) -> Outgoing:
        choice = choose_boot_file(self.files, msg)
        _log_choice("proxyDHCP OFFER", msg, choice, logging.INFO)
        if self.boot_log is not None:
            self.boot_log.discover(msg.mac_str, choice.arch_label)
        reply = make_reply(msg, MessageType.OFFER, self.server_ip)
        self._fill(msg, reply, choice, offer=True)
        dest, _ = reply_destination(msg, reply, DHCP_SERVER_PORT, DHCP_CLIENT_PORT)
        return Outgoing(encode(reply, msg.max_message_size), dest, None, reply)

    def _boot_server_ack(
        self, msg: Message, source: tuple[str, int], boot_server: bool = True
    ) -> Outgoing:
        choice = choose_boot_file(self.files, msg)
        _log_choice(f"boot server ACK {msg.ciaddr}", msg, choice, logging.INFO)
        if not boot_server:
            log.debug("boot server discovery from %s came to port 67", msg.mac_str)
        reply = make_reply(msg, MessageType.ACK, self.server_ip)
        reply.ciaddr = msg.ciaddr
        self._fill(msg, reply, choice)
        if msg.giaddr != ZERO_IP:
            dest: tuple[str, int] = (str(msg.giaddr), DHCP_SERVER_PORT)
        elif source[0] != "0.0.0.0":
            # The client already has an address: answer where it asked from.
            dest = (source[0], source[1] or DHCP_CLIENT_PORT)
        elif msg.ciaddr != ZERO_IP:
            dest = (str(msg.ciaddr), DHCP_CLIENT_PORT)
        else:
            dest = ("255.255.255.255", DHCP_CLIENT_PORT)
        return Outgoing(encode(reply, msg.max_message_size), dest, None, reply)


def _boot_item(vendor: bytes) -> bytes | None:
    """Sub-option 71 (PXE boot item) from a client's option 43, encoded as received."""
    i = 0
    while i < len(vendor):
        code = vendor[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(vendor):
            break
        size = vendor[i + 1]
        if code == 71 and size == 4 and i + 2 + size <= len(vendor):
            return vendor[i : i + 2 + size]
        i += 2 + size
    return None


def _log_choice(
    what: str, msg: Message, choice: FirmwareChoice, level: int = logging.DEBUG
) -> None:
    """One line per decision; an unknown architecture code is always worth a line."""
    if choice.reason == "unknown arch":
        log.info(
            "%s mac=%s: unknown architecture code %s, giving the default %s",
            what,
            msg.mac_str,
            choice.arch,
            choice.file,
        )
    else:
        log.log(
            level,
            "%s mac=%s arch=%s file=%s (%s)",
            what,
            msg.mac_str,
            choice.arch_label,
            choice.file,
            choice.reason,
        )


# -- the asyncio service ----------------------------------------------------------------


@dataclass(frozen=True)
class PxeConfig:
    """What `pxed` runs: the DHCP settings (interface, server address, pool...), the
    TFTP settings (ROOT, limits), the boot files and the mode."""

    dhcp: DhcpConfig
    tftp: ServerConfig
    files: BootFiles
    proxy: bool = False
    tftp_port: int = 69
    boot_server_port: int = BOOT_SERVER_PORT
    boot_idle: float = 30.0


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        try:
            self.on_datagram(data, (str(addr[0]), int(addr[1])))
        except Exception:  # a bug must cost one packet, never the service
            log.exception("internal error handling a packet from %s", addr[0])

    def error_received(self, exc: Exception) -> None:
        log.debug("socket error: %s", exc)


class _BootTracker:
    """Tells the boot log about TFTP transfers through the TFTP server's public
    callbacks: a client with a transfer running is busy (its boot is not over), and
    each completed download is a file served."""

    def __init__(self, boot_log: BootLog) -> None:
        self.boot_log = boot_log
        self.busy: Counter[str] = Counter()

    def started(self, peer_ip: str, filename: str) -> None:
        self.busy[peer_ip] += 1

    def finished(self, transfer: FinishedTransfer) -> None:
        self.busy[transfer.peer_ip] -= 1
        if self.busy[transfer.peer_ip] <= 0:
            del self.busy[transfer.peer_ip]
        if transfer.failure is None and transfer.is_read:
            self.boot_log.served(transfer.peer_ip, transfer.filename, transfer.bytes)


class PxeService:
    """DHCP (or proxyDHCP), the 4011 boot server and read-only TFTP in the running loop."""

    def __init__(self, config: PxeConfig) -> None:
        self.config = config
        self.boot_log = BootLog(config.boot_idle)
        dhcp = config.dhcp
        self.responder = ProxyResponder(
            dhcp.server_ip,
            config.files,
            next_server=dhcp.next_server,
            vendor_prefixes=dhcp.pxe_vendor_prefixes,
            boot_log=self.boot_log,
            answer_discover=config.proxy,
        )
        self.dhcp_server: DhcpServer | None = None
        self.tftp_server: TftpServer | None = None
        self._transports: dict[int, asyncio.DatagramTransport] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._tracker = _BootTracker(self.boot_log)

    def boot_policy(self, request: Message) -> BootChoice:
        """The DHCP server's hook (full mode): firmware-aware file, boot log bookkeeping."""
        choice = choose_boot_file(self.config.files, request)
        mac = request.mac_str
        mtype = request.message_type
        if mtype is MessageType.DISCOVER:
            self.boot_log.discover(mac, choice.arch_label)
            _log_choice("OFFER", request, choice)
        elif mtype is MessageType.REQUEST:
            ip = request.requested_ip or (request.ciaddr if request.ciaddr != ZERO_IP else None)
            self.boot_log.address(mac, ip)
        return BootChoice(choice.file)

    async def start(self) -> None:
        cfg = self.config
        dhcp = cfg.dhcp
        loop = asyncio.get_running_loop()
        tracker = self._tracker
        tftp = TftpServer(cfg.tftp, on_started=tracker.started, on_finished=tracker.finished)
        self.tftp_server = tftp
        await tftp.start([str(dhcp.server_ip)], cfg.tftp_port)
        ports = [cfg.boot_server_port]
        if cfg.proxy:
            ports.insert(0, dhcp.port)
        else:
            server = DhcpServer(dhcp, boot_policy=self.boot_policy)
            self.dhcp_server = server
            await server.start()
        for port in ports:
            sock = open_dhcp_socket(dhcp.interface, port)
            handler = functools.partial(self._received, port=port)
            transport, _ = await loop.create_datagram_endpoint(
                functools.partial(_Datagrams, handler), sock=sock
            )
            self._transports[port] = transport
        log.info(
            "PXE %s on %s (%s): boot server port %d, TFTP %s port %d, files %s",
            "proxyDHCP" if cfg.proxy else "DHCP",
            dhcp.interface,
            dhcp.server_ip,
            cfg.boot_server_port,
            cfg.tftp.root,
            cfg.tftp_port,
            ", ".join(f"{what}={name}" for what, name in cfg.files.configured()),
        )
        self._ticker = asyncio.create_task(self._tick())

    def _received(self, data: bytes, source: tuple[str, int], port: int) -> None:
        boot_server = port == self.config.boot_server_port
        log.debug("recv %d bytes on port %d from %s:%d", len(data), port, source[0], source[1])
        for out in self.responder.handle(data, source, boot_server):
            self._send(out, port)

    def _send(self, out: Outgoing, port: int) -> None:
        """Reply from the socket the request came to, so the source port is right."""
        transport = self._transports.get(port)
        if transport is None:
            return
        delay = self.config.dhcp.reply_delay
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, transport.sendto, out.payload, out.address)
        else:
            transport.sendto(out.payload, out.address)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.boot_log.expire(list(self._tracker.busy))

    def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()
        if self.dhcp_server is not None:
            self.dhcp_server.close()
        if self.tftp_server is not None:
            self.tftp_server.close()
        self.boot_log.flush()
