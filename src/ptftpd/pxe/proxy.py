"""proxyDHCP (port 67) and the PXE boot server (port 4011), sans-IO.

Beside a network's own DHCP server, pxed answers PXE (and UEFI HTTP boot) clients with
boot information only; see `ProxyResponder`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from ipaddress import IPv4Address

from ptftpd.dhcp.engine import Outgoing, make_reply, message_label, reply_destination
from ptftpd.dhcp.options import DISCOVERY_DOWNLOAD_DIRECTLY, MessageType, Opt, pxe_vendor_options
from ptftpd.dhcp.packet import BOOTREQUEST, ZERO_IP, Message, PacketError, decode, encode
from ptftpd.events import DhcpMessage, EventSink, ignore
from ptftpd.log import OncePerKey, say_ignored
from ptftpd.pxe.bootlog import BootLog
from ptftpd.pxe.decision import BUILTIN
from ptftpd.pxe.firmware import (
    HTTP_VENDOR_CLASS,
    BootFiles,
    FirmwareChoice,
    choose_boot_file,
    log_choice,
)
from ptftpd.pxe.machines import Machines

__all__ = ["BOOT_SERVER_PORT", "DHCP_CLIENT_PORT", "DHCP_SERVER_PORT", "ProxyResponder"]

log = logging.getLogger("ptftpd.pxe")

BOOT_SERVER_PORT = 4011
DHCP_SERVER_PORT = 67
DHCP_CLIENT_PORT = 68


class ProxyResponder:
    """proxyDHCP on port 67 and the PXE boot server on port 4011, without sockets.

    UEFI HTTP boot clients (vendor class `HTTPClient`, when `http_base` is set) get a
    proxy OFFER with vendor class `HTTPClient` and the boot file as an `http://` URL;
    EDK2 combines it with the address server's offer and needs no 4011 exchange.

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
        http_base: tuple[str, int] | None = None,
        machines: Machines | None = None,
    ) -> None:
        self.server_ip = server_ip
        # Per-machine decisions (issue 22): local and ignore get no boot answer here.
        self.machines = machines
        self.files = files
        self.next_server = next_server or server_ip
        self.vendor_prefixes = vendor_prefixes
        self.boot_log = boot_log
        self.answer_discover = answer_discover
        # (address, --http-port): UEFI HTTP boot clients are answered too, with a URL.
        self.http_base = http_base
        self.ignored = OncePerKey()  # non-PXE clients, named once a minute at -v
        # Told (mac, deadline) when the request being handled waits for the machine's
        # decision (pxed's boot API): the driver holds it and hands it in again.
        self.on_wait: Callable[[str, float], None] | None = None

    def is_pxe(self, msg: Message) -> bool:
        vc = msg.vendor_class or ""
        if self.http_base is not None and vc.startswith(HTTP_VENDOR_CLASS):
            return True
        return any(vc.startswith(p) for p in self.vendor_prefixes)

    def handle(
        self,
        data: bytes,
        source: tuple[str, int],
        boot_server: bool,
        *,
        now: float,
        events: EventSink = ignore,
        port: int | None = None,
    ) -> list[Outgoing]:
        """Datagram `data` from `source` arrived on the boot server port (4011) when
        `boot_server`, else on the DHCP port (67), at `now` (monotonic seconds, for the
        boot log); `events` hears of it (`DhcpMessage`, with `port`: the port it came to)."""
        try:
            msg = decode(data)
        except PacketError as exc:
            log.debug("drop %d bytes from %s: %s", len(data), source[0], exc)
            return []
        asked = msg.requested_ip or (msg.ciaddr if msg.ciaddr != ZERO_IP else None)
        events(DhcpMessage("in", message_label(msg), msg.mac_str, asked, msg.vendor_class, port))
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
                self.boot_log.address(msg.mac_str, msg.ciaddr, now=now)
                if source[0] != "0.0.0.0":
                    self.boot_log.address(msg.mac_str, source[0], now=now)
            return self._boot_server_ack(msg, source, boot_server, now, events)
        # Port 67: we are not the address server.
        if mtype is MessageType.REQUEST and self.boot_log is not None:
            ip = msg.requested_ip or (msg.ciaddr if msg.ciaddr != ZERO_IP else None)
            self.boot_log.address(msg.mac_str, ip, now=now)
            return []
        if mtype is not MessageType.DISCOVER or not self.answer_discover:
            return []
        if not self.is_pxe(msg):
            why = f"vendor class {msg.vendor_class!r} is not PXE (proxyDHCP answers PXE clients)"
            say_ignored(log, self.ignored, now, "DHCPDISCOVER", msg.mac_str, why)
            return []
        return self._proxy_offer(msg, now, events)

    @staticmethod
    def _encoded(msg: Message, reply: tuple[Message, tuple[str, int]]) -> list[Outgoing]:
        """Encode after the destination is known; a reply whose required options do
        not fit the client's size (a hostile 61 or 82) is not sent."""
        message, dest = reply
        try:
            return [Outgoing(encode(message, msg.max_message_size), dest, None, message)]
        except PacketError as exc:
            log.info("no reply to %s: %s", msg.mac_str, exc)
            return []

    def _fill(
        self, request: Message, reply: Message, choice: FirmwareChoice, offer: bool = False
    ) -> None:
        opts = reply.options
        if choice.http:
            # UEFI HTTP boot: vendor class HTTPClient (EDK2 ignores the offer without
            # it) and the URL; no PXE 43, no 4011 exchange follows.
            opts[Opt.VENDOR_CLASS] = HTTP_VENDOR_CLASS.encode()
            reply.siaddr = self.next_server
            reply.file = choice.file.encode()[:127]
            opts[Opt.BOOTFILE_NAME] = choice.file.encode()
            return
        opts[Opt.VENDOR_CLASS] = b"PXEClient"
        vendor = request.options.get(Opt.VENDOR_SPECIFIC)
        # A PXE 2.1 client naming a boot item (43.71) expects it echoed back; a BIOS
        # ROM's proxy offer says "download the named file"; see the class docstring.
        item = _boot_item(vendor) if vendor else None
        if choice.vendor_options is not None:
            # The Raspberry Pi's menu, offer and ACK alike (as dnsmasq answers it).
            opts[Opt.VENDOR_SPECIFIC] = choice.vendor_options
        elif item is not None:
            opts[Opt.VENDOR_SPECIFIC] = item + b"\xff"
        elif offer and choice.arch in (None, 0):
            opts[Opt.VENDOR_SPECIFIC] = pxe_vendor_options(DISCOVERY_DOWNLOAD_DIRECTLY)
        if Opt.CLIENT_UUID in request.options:
            opts[Opt.CLIENT_UUID] = request.options[Opt.CLIENT_UUID]
        reply.siaddr = self.next_server
        reply.file = choice.file.encode()[:127]
        opts[Opt.TFTP_SERVER_NAME] = str(self.next_server).encode()
        opts[Opt.BOOTFILE_NAME] = choice.file.encode()

    def _choice(
        self, msg: Message, now: float, what: str, events: EventSink = ignore
    ) -> FirmwareChoice | None:
        """The firmware's file, or None: this machine gets no boot answer from us
        (`local` or `ignore`: the address server's offer is all it gets)."""
        if self.machines is None:
            return choose_boot_file(self.files, msg, self.http_base)
        chosen = self.machines.choose(self.files, msg, now)
        if chosen.wait:
            if self.on_wait is not None and chosen.until is not None:
                self.on_wait(msg.mac_str, chosen.until)
            return None
        if chosen.choice is None:
            log.info("%s mac=%s: %s: no answer", what, msg.mac_str, chosen.decision.describe())
        if self.boot_log is not None and chosen.decision is not BUILTIN:
            stage = chosen.choice.arch_label if chosen.choice is not None else "-"
            arch = chosen.choice.arch if chosen.choice is not None else None
            self.boot_log.discover(msg.mac_str, stage, arch, now=now)
            self.boot_log.decided(msg.mac_str, chosen.decision.describe())
        if chosen.decision is not BUILTIN:
            events(chosen.decision.event(msg.mac_str))
        return chosen.choice

    def _proxy_offer(self, msg: Message, now: float, events: EventSink = ignore) -> list[Outgoing]:
        choice = self._choice(msg, now, "proxyDHCP OFFER", events)
        if choice is None:
            return []
        log_choice("proxyDHCP OFFER", msg, choice, logging.INFO)
        if self.boot_log is not None:
            self.boot_log.discover(msg.mac_str, choice.arch_label, choice.arch, now=now)
        reply = make_reply(msg, MessageType.OFFER, self.server_ip)
        self._fill(msg, reply, choice, offer=True)
        dest, _ = reply_destination(msg, reply, DHCP_SERVER_PORT, DHCP_CLIENT_PORT)
        return self._encoded(msg, (reply, dest))

    def _boot_server_ack(
        self,
        msg: Message,
        source: tuple[str, int],
        boot_server: bool,
        now: float,
        events: EventSink = ignore,
    ) -> list[Outgoing]:
        choice = self._choice(msg, now, "boot server ACK", events)
        if choice is None:
            return []
        log_choice(f"boot server ACK {msg.ciaddr}", msg, choice, logging.INFO)
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
        return self._encoded(msg, (reply, dest))


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
