"""DHCP/BOOTP protocol engine: request bytes in, reply bytes and destinations out.

Sans-IO: `DhcpEngine.handle(data, source)` decodes a datagram, applies RFC 2131 (or
RFC 951 for BOOTP) with the lease policy, and returns `Outgoing` items saying what to
send where (RFC 2131 4.1 addressing). The asyncio server in `server.py` only moves those
bytes, which keeps everything here testable without sockets or root.

The boot policy hook (`BootPolicy`) is called with the decoded request for every reply
that may carry boot information; see `ptftpd.dhcp` for the public API.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from ptftpd.dhcp.leases import Ack, Lease, LeasePolicy, Nak, StaticHost
from ptftpd.dhcp.options import MessageType, Opt, pxe_vendor_options
from ptftpd.dhcp.packet import (
    BOOTREPLY,
    BOOTREQUEST,
    BROADCAST_FLAG,
    ZERO_IP,
    Message,
    PacketError,
    decode,
    encode,
)

__all__ = [
    "BootChoice",
    "BootPolicy",
    "DhcpConfig",
    "DhcpEngine",
    "Outgoing",
    "is_ipxe",
    "make_reply",
    "reply_destination",
]

log = logging.getLogger("ptftpd.dhcp")

BROADCAST = IPv4Address("255.255.255.255")
SERVER_PORT = 67
CLIENT_PORT = 68


@dataclass(frozen=True)
class BootChoice:
    """What the boot policy decides for one client.

    `file` goes to the file field and option 67; `next_server` (default: the configured
    TFTP server) to siaddr and option 66; `options` are added to (and override) the
    reply's options, e.g. `{175: ...}` for iPXE or a custom 43.
    """

    file: str
    next_server: IPv4Address | None = None
    options: Mapping[int, bytes] = field(default_factory=dict)


BootPolicy = Callable[[Message], "BootChoice | str | None"]


@dataclass(frozen=True)
class DhcpConfig:
    """Everything a server instance needs; the CLIs and pxed build one of these."""

    server_ip: IPv4Address
    network: IPv4Network
    bootfile: str = ""
    interface: str | None = None
    # siaddr/option 66; None means this host. `tftp_server_name` is the text for sname
    # and option 66 when `-t` was given as a name.
    next_server: IPv4Address | None = None
    tftp_server_name: str | None = None
    routers: tuple[IPv4Address, ...] | None = None  # None: this host
    dns: tuple[IPv4Address, ...] = ()
    domain_name: str | None = None
    answer_all: bool = False
    pxe_vendor_prefixes: tuple[str, ...] = ("PXEClient",)
    range_start: IPv4Address | None = None
    range_end: IPv4Address | None = None
    static_hosts: tuple[StaticHost, ...] = ()
    # Never handed out: the server's other addresses, printers with fixed ones, ...
    exclude: tuple[IPv4Address, ...] = ()
    lease_time: int = 3600
    offer_time: float = 30.0
    decline_time: float = 600.0
    extra_options: Mapping[int, bytes] = field(default_factory=dict)
    leases_path: Path | None = None  # None: leases in memory only
    # "normal": a grant survives kill -9 (WAL, no fsync); "full": also power loss.
    lease_sync: str = "normal"
    port: int = SERVER_PORT
    client_port: int = CLIENT_PORT
    # Workaround for ROMs that miss an instant reply (netboot notes); 0 = none.
    reply_delay: float = 0.0
    dhcp: bool = True
    bootp: bool = False
    boot_file_size: int | None = None  # bytes, for BOOTP option 13
    # What iPXE (user class "iPXE" or option 175) gets instead of `bootfile`: handing it
    # the iPXE binary again makes it chain-load itself forever (netboot notes).
    ipxe_bootfile: str | None = None

    @property
    def siaddr(self) -> IPv4Address:
        return self.next_server or self.server_ip

    @property
    def router_list(self) -> tuple[IPv4Address, ...]:
        return (self.server_ip,) if self.routers is None else self.routers


@dataclass(frozen=True)
class Outgoing:
    """One datagram to send. `arp` is (MAC, IP) when the server should add a neighbour
    entry first (unicast to a client that has no address yet, RFC 2131 4.1)."""

    payload: bytes
    address: tuple[str, int]
    arp: tuple[bytes, IPv4Address] | None = None
    message: Message | None = None


def make_reply(request: Message, msg_type: MessageType | None, server_ip: IPv4Address) -> Message:
    """A reply skeleton with the fields RFC 2131 table 3 copies from the request; for
    proxyDHCP and other servers built on this codec."""
    reply = Message(
        op=BOOTREPLY,
        htype=request.htype,
        hlen=request.hlen,
        xid=request.xid,
        flags=request.flags,
        giaddr=request.giaddr,
        chaddr=request.chaddr,
    )
    if msg_type is not None:
        reply.options[Opt.MESSAGE_TYPE] = bytes([msg_type])
        reply.options[Opt.SERVER_ID] = server_ip.packed
    return reply


def reply_destination(
    request: Message,
    reply: Message,
    server_port: int = SERVER_PORT,
    client_port: int = CLIENT_PORT,
    source: tuple[str, int] | None = None,
) -> tuple[tuple[str, int], tuple[bytes, IPv4Address] | None]:
    """RFC 2131 4.1: relay first, then ciaddr, then broadcast when asked or for a NAK,
    else unicast to yiaddr (needing a neighbour entry for the client's MAC)."""
    if request.giaddr != ZERO_IP:
        if reply.message_type is MessageType.NAK:
            reply.flags |= BROADCAST_FLAG
        return (str(request.giaddr), server_port), None
    if reply.message_type is MessageType.NAK:
        return (str(BROADCAST), client_port), None
    if request.ciaddr != ZERO_IP:
        return (str(request.ciaddr), client_port), None
    if reply.message_type is MessageType.ACK and reply.yiaddr == ZERO_IP and source:
        return (source[0], source[1] or client_port), None  # INFORM without ciaddr
    if request.broadcast or reply.yiaddr == ZERO_IP:
        return (str(BROADCAST), client_port), None
    return (str(reply.yiaddr), client_port), (request.mac, reply.yiaddr)


# Always sent when we have them, whatever option 55 says: clients need these to work.
_ESSENTIAL = frozenset(
    {
        Opt.MESSAGE_TYPE,
        Opt.SERVER_ID,
        Opt.LEASE_TIME,
        Opt.RENEWAL_TIME,
        Opt.REBINDING_TIME,
        Opt.SUBNET_MASK,
        Opt.ROUTER,
        Opt.DNS,
        Opt.HOSTNAME,
        Opt.VENDOR_CLASS,
        Opt.VENDOR_SPECIFIC,
        Opt.TFTP_SERVER_NAME,
        Opt.BOOTFILE_NAME,
        Opt.RELAY_AGENT_INFO,
        Opt.MESSAGE,
        Opt.BOOT_FILE_SIZE,
        Opt.CLIENT_UUID,
    }
)


def _order_options(options: dict[int, bytes], wanted: list[int] | None) -> dict[int, bytes]:
    """Honour option 55: requested options first in the client's order (they survive
    truncation to a small maximum message size), then the essential ones; extras that
    the client did not ask for are left out when it sent a list."""
    if wanted is None:
        return options
    out: dict[int, bytes] = {}
    if Opt.MESSAGE_TYPE in options:
        out[Opt.MESSAGE_TYPE] = options[Opt.MESSAGE_TYPE]
    for code in wanted:
        if code in options and code not in out:
            out[code] = options[code]
    for code, value in options.items():
        if code not in out and code in _ESSENTIAL:
            out[code] = value
    # Relay agent information goes last (RFC 3046 2.2 asks for it after the others).
    if Opt.RELAY_AGENT_INFO in out:
        out[Opt.RELAY_AGENT_INFO] = out.pop(Opt.RELAY_AGENT_INFO)
    return out


def is_ipxe(msg: Message) -> bool:
    """iPXE says so in user class 77 and carries its feature list in option 175."""
    return msg.has_user_class("iPXE") or Opt.IPXE_ENCAP in msg.options


def _ips(addrs: tuple[IPv4Address, ...]) -> bytes:
    return b"".join(a.packed for a in addrs)


class DhcpEngine:
    def __init__(
        self,
        config: DhcpConfig,
        policy: LeasePolicy,
        boot_policy: BootPolicy | None = None,
    ) -> None:
        self.config = config
        self.policy = policy
        self.boot_policy = boot_policy
        self.dropped = 0
        # The same for every reply: packed once.
        net: dict[int, bytes] = {Opt.SUBNET_MASK: config.network.netmask.packed}
        if config.router_list:
            net[Opt.ROUTER] = _ips(config.router_list)
        if config.dns:
            net[Opt.DNS] = _ips(config.dns)
        if config.domain_name:
            net[Opt.DOMAIN_NAME] = config.domain_name.encode()
        net[Opt.BROADCAST] = config.network.broadcast_address.packed
        net.update(config.extra_options)
        self._network_options = net

    # -- classification ----------------------------------------------------------------

    def is_pxe(self, msg: Message) -> bool:
        vc = msg.vendor_class or ""
        return any(vc.startswith(p) for p in self.config.pxe_vendor_prefixes)

    def boot_for(self, msg: Message) -> BootChoice | None:
        """Ask the hook (or use BOOTFILE); a hook that raises must not stop the server."""
        choice: BootChoice | str | None
        if self.boot_policy is None:
            choice = self.config.bootfile
            if self.config.ipxe_bootfile and is_ipxe(msg):
                choice = self.config.ipxe_bootfile
        else:
            try:
                choice = self.boot_policy(msg)
            except Exception:
                log.exception(
                    "boot policy failed for %s; using %s",
                    msg.mac_str,
                    self.config.bootfile or "no boot file",
                )
                choice = self.config.bootfile
        if choice is None or choice == "":
            return None
        if isinstance(choice, str):
            return BootChoice(choice)
        return choice

    # -- entry point ---------------------------------------------------------------------

    def handle(self, data: bytes, source: tuple[str, int] = ("0.0.0.0", 68)) -> list[Outgoing]:
        """One datagram in, zero or one reply out; never raises for bad input, since a
        single odd client must not stop a server that a whole room is booting from.

        One subnet per engine: a request relayed from a giaddr outside it is dropped
        (run one instance per subnet)."""
        try:
            msg = decode(data)
        except PacketError as exc:
            self.dropped += 1
            log.debug("drop %d bytes from %s:%s: %s", len(data), source[0], source[1], exc)
            return []
        if msg.op != BOOTREQUEST:
            log.debug("drop BOOTREPLY from %s", source[0])
            return []
        debug = log.isEnabledFor(logging.DEBUG)
        if debug:
            log.debug(
                "recv %s xid=%08x from %s:%s mac=%s ciaddr=%s giaddr=%s options=%s",
                msg.message_type.label if msg.message_type else "BOOTREQUEST",
                msg.xid,
                source[0],
                source[1],
                msg.mac_str,
                msg.ciaddr,
                msg.giaddr,
                {k: v.hex() for k, v in msg.options.items()},
            )
        if msg.giaddr != ZERO_IP and msg.giaddr not in self.config.network:
            log.debug("drop request relayed from %s: not on %s", msg.giaddr, self.config.network)
            return []
        if msg.is_bootp:
            if not self.config.bootp:
                log.debug("drop BOOTP request from %s (BOOTP not enabled)", msg.mac_str)
                return []
            reply = self._bootp(msg)
        else:
            if not self.config.dhcp:
                log.debug("drop DHCP message from %s (DHCP not enabled)", msg.mac_str)
                return []
            if not self.config.answer_all and not self.is_pxe(msg):
                if debug:
                    log.debug(
                        "ignore %s from %s: vendor class %r is not PXE (use -a)",
                        msg.message_type,
                        msg.mac_str,
                        msg.vendor_class,
                    )
                return []
            reply = self._dhcp(msg, source)
        if reply is None:
            return []
        dest, arp = reply_destination(msg, reply, self.config.port, self.config.client_port, source)
        payload = encode(reply, msg.max_message_size)
        if debug:
            log.debug(
                "send %s xid=%08x to %s:%s yiaddr=%s %d bytes",
                reply.message_type.label if reply.message_type else "BOOTREPLY",
                reply.xid,
                dest[0],
                dest[1],
                reply.yiaddr,
                len(payload),
            )
        return [Outgoing(payload, dest, arp, reply)]

    # -- DHCP ------------------------------------------------------------------------------

    def _event(
        self, label: str, addr: object, msg: Message, file: str | None = None, extra: str = ""
    ) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        arch = msg.arch_label
        log.info(
            "%s %s mac=%s host=%s arch=%s file=%s%s",
            label,
            addr,
            msg.mac_str,
            msg.hostname or "-",
            arch or "-",
            file or "-",
            extra,
        )

    def _dhcp(self, msg: Message, source: tuple[str, int]) -> Message | None:
        mtype = msg.message_type
        key, mac = msg.client_key, msg.mac_str
        cfg = self.config
        if mtype is MessageType.DISCOVER:
            addr = self.policy.offer(key, mac, msg.requested_ip)
            if addr is None:
                log.warning("DHCPDISCOVER from %s: no free address in the pool", mac)
                return None
            return self._lease_reply(msg, MessageType.OFFER, addr, "DHCPOFFER")
        if mtype is MessageType.REQUEST:
            sid = msg.server_id
            if sid is not None and sid != cfg.server_ip:
                self.policy.withdraw(key)
                self._event("DHCPREQUEST for server", sid, msg, extra=" (not us: offer withdrawn)")
                return None
            if sid is not None:  # SELECTING
                addr = msg.requested_ip or (msg.ciaddr if msg.ciaddr != ZERO_IP else None)
                known_only = False
            elif msg.requested_ip is not None:  # INIT-REBOOT
                addr, known_only = msg.requested_ip, True
            elif msg.ciaddr != ZERO_IP:  # RENEWING / REBINDING
                addr, known_only = msg.ciaddr, False
            else:
                log.debug("drop DHCPREQUEST from %s with no address", mac)
                return None
            if addr is None:
                return None
            result = self.policy.request(key, mac, addr, msg.hostname, known_only=known_only)
            if result is None:
                log.debug("DHCPREQUEST for %s from unknown client %s: silent", addr, mac)
                return None
            if isinstance(result, Nak):
                self._event("DHCPNAK", addr, msg, extra=f" ({result.reason})")
                nak = make_reply(msg, MessageType.NAK, cfg.server_ip)
                nak.options[Opt.MESSAGE] = result.reason.encode()
                self._echo_relay_info(msg, nak)
                return nak
            assert isinstance(result, Ack)
            return self._lease_reply(
                msg, MessageType.ACK, result.lease.address, "DHCPACK", result.lease
            )
        if mtype is MessageType.RELEASE:
            released = self.policy.release(key, msg.ciaddr)
            self._event(
                "DHCPRELEASE", msg.ciaddr, msg, extra="" if released else " (no such lease)"
            )
            return None
        if mtype is MessageType.DECLINE:
            sid = msg.server_id
            if sid is not None and sid != cfg.server_ip:
                return None
            addr = msg.requested_ip
            if addr is not None and self.policy.decline(key, mac, addr):
                self._event("DHCPDECLINE", addr, msg, extra=" (quarantined)")
            return None
        if mtype is MessageType.INFORM:
            reply = make_reply(msg, MessageType.ACK, cfg.server_ip)
            reply.ciaddr = msg.ciaddr
            boot = self._add_common(msg, reply, None)
            self._event(
                "DHCPACK(inform)", msg.ciaddr if msg.ciaddr != ZERO_IP else source[0], msg, boot
            )
            return reply
        log.debug("drop DHCP message type %s from %s", mtype, mac)
        return None

    def _lease_reply(
        self,
        msg: Message,
        mtype: MessageType,
        addr: IPv4Address,
        label: str,
        lease: Lease | None = None,
    ) -> Message:
        cfg = self.config
        reply = make_reply(msg, mtype, cfg.server_ip)
        reply.yiaddr = addr
        if mtype is MessageType.ACK:
            reply.ciaddr = msg.ciaddr
        lease_time = cfg.lease_time
        if lease is not None and lease.expires == float("inf"):
            lease_time = 0xFFFFFFFF
        reply.options[Opt.LEASE_TIME] = lease_time.to_bytes(4, "big")
        if lease_time != 0xFFFFFFFF:
            reply.options[Opt.RENEWAL_TIME] = (lease_time // 2).to_bytes(4, "big")
            reply.options[Opt.REBINDING_TIME] = (lease_time * 7 // 8).to_bytes(4, "big")
        static = self.policy.static_for(msg.mac_str)
        if static is not None and static.hostname:
            reply.options[Opt.HOSTNAME] = static.hostname.encode()
        boot = self._add_common(msg, reply, addr)
        self._event(label, addr, msg, boot)
        return reply

    def _add_common(self, msg: Message, reply: Message, addr: IPv4Address | None) -> str | None:
        """Network and boot options shared by OFFER, ACK and INFORM; returns the boot file."""
        cfg = self.config
        opts = reply.options
        opts.update(self._network_options)
        boot = self.boot_for(msg)
        file = None
        if boot is not None:
            file = boot.file
            server = boot.next_server or cfg.siaddr
            reply.siaddr = server
            reply.file = file.encode()[:127]
            opts[Opt.BOOTFILE_NAME] = file.encode()
            name = cfg.tftp_server_name if boot.next_server is None else None
            opts[Opt.TFTP_SERVER_NAME] = (name or str(server)).encode()
            if name:
                reply.sname = name.encode()[:63]
        if self.is_pxe(msg):
            opts[Opt.VENDOR_CLASS] = b"PXEClient"
            opts[Opt.VENDOR_SPECIFIC] = pxe_vendor_options()
            uuid = msg.options.get(Opt.CLIENT_UUID)
            if uuid is not None:
                # Echoed as PXE servers do (RFC 4578 2.3): some UEFI firmware drops
                # a reply without it.
                opts[Opt.CLIENT_UUID] = uuid
        if boot is not None:
            for code, value in boot.options.items():
                opts[code] = value
        self._echo_relay_info(msg, reply)
        reply.options = _order_options(opts, msg.parameter_list)
        return file

    @staticmethod
    def _echo_relay_info(msg: Message, reply: Message) -> None:
        info = msg.options.get(Opt.RELAY_AGENT_INFO)
        if info is not None and msg.giaddr != ZERO_IP:
            reply.options[Opt.RELAY_AGENT_INFO] = info

    # -- BOOTP -----------------------------------------------------------------------------

    def _bootp(self, msg: Message) -> Message | None:
        from ptftpd.dhcp.bootp import bootp_reply

        lease = self.policy.bind_permanent(msg.client_key, msg.mac_str)
        if lease is None:
            log.warning("BOOTREQUEST from %s: no free address in the pool", msg.mac_str)
            return None
        reply = bootp_reply(self, msg, lease)
        self._event("BOOTREPLY", lease.address, msg, reply.file_str or None)
        return reply
