"""DHCP/BOOTP protocol engine: request bytes in, reply bytes and destinations out.

Sans-IO: `DhcpEngine.handle(data, source, now)` decodes a datagram, applies RFC 2131
(or RFC 951 for BOOTP) with the lease policy, and returns `Outgoing` items saying what
to send where (RFC 2131 4.1 addressing); `now` (wall-clock seconds: leases outlive the
process) is the only clock. The asyncio server in `server.py` only moves those bytes,
which keeps everything here testable without sockets or root.

What happened is also reported as typed events (`ptftpd.events`) to `engine.events`:
each message in and out with its type (`DhcpMessage`), and each lease offered, bound,
released or declined (`LeaseEvent`). Metrics and the boot log subscribe there.

The boot policy hook (`BootPolicy`) is called with the decoded request for every reply
that may carry boot information; see `ptftpd.dhcp` for the public API.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from ptftpd.dhcp.balance import Balancer
from ptftpd.dhcp.config import DhcpConfig
from ptftpd.dhcp.leases import Ack, Lease, LeasePolicy, Nak
from ptftpd.dhcp.options import MessageType, Opt, pxe_vendor_options
from ptftpd.dhcp.packet import BOOTREQUEST, ZERO_IP, Message, PacketError, decode, encode
from ptftpd.dhcp.reply import (
    Outgoing,
    make_reply,
    order_options,
    reply_destination,
)
from ptftpd.dhcp.scope import Scope, SubnetConfig, find_scope, network_options
from ptftpd.events import DhcpMessage, DhcpType, EventSink, LeaseEvent, LeaseKind, ignore
from ptftpd.log import OncePerKey, say_ignored

__all__ = [
    "SILENT",
    "WAIT",
    "BootChoice",
    "BootPolicy",
    "DhcpConfig",
    "DhcpEngine",
    "Held",
    "Outgoing",
    "Scope",
    "SubnetConfig",
    "is_ipxe",
    "make_reply",
    "reply_destination",
]

log = logging.getLogger("ptftpd.dhcp")

# A lease time of all ones means "infinite" on the wire (RFC 2132 9.2).
INFINITE = 0xFFFFFFFF


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


SILENT = BootChoice("")
"""A boot policy's answer for a machine that gets no boot answer at all (pxed's
``ignore``): no reply when only its being PXE made it a client to answer (without -a);
with -a an address without boot information, as to any other client."""

WAIT = BootChoice("")
"""A boot policy's answer while it waits for the machine's decision (pxed's boot API):
no reply at all, even with -a; the engine tells `DhcpEngine.on_wait` of the request
(pxed holds it and feeds it again when the decision comes); a retransmission is asked
again."""


@dataclass(frozen=True)
class Held:
    """A request the boot policy made wait (`WAIT`): what to feed `handle` again."""

    mac: str
    data: bytes
    source: tuple[str, int]
    unicast: bool


BootPolicy = Callable[[Message], "BootChoice | str | None"]


def message_label(message: Message) -> DhcpType:
    """``discover``..``inform``, or ``bootrequest``/``bootreply`` for plain BOOTP."""
    kind = message.message_type
    if kind is None:
        return "bootrequest" if message.op == BOOTREQUEST else "bootreply"
    return _LABELS.get(kind, "other")


_LABELS: dict[MessageType, DhcpType] = {
    MessageType.DISCOVER: "discover",
    MessageType.OFFER: "offer",
    MessageType.REQUEST: "request",
    MessageType.DECLINE: "decline",
    MessageType.ACK: "ack",
    MessageType.NAK: "nak",
    MessageType.RELEASE: "release",
    MessageType.INFORM: "inform",
}


def is_ipxe(msg: Message) -> bool:
    """iPXE says so in user class 77 and carries its feature list in option 175."""
    return msg.has_user_class("iPXE") or Opt.IPXE_ENCAP in msg.options


class DhcpEngine:
    def __init__(
        self,
        config: DhcpConfig,
        policy: LeasePolicy,
        boot_policy: BootPolicy | None = None,
        subnets: Sequence[Scope] = (),
    ) -> None:
        self.config = config
        self.policy = policy
        self.boot_policy = boot_policy
        self.dropped = 0
        self.events: EventSink = ignore
        # Servers sharing a lease database split the clients (RFC 3074, balance.py).
        self.balancer: Balancer | None = None
        self.ignored = OncePerKey()  # clients not answered, named once a minute at -v
        # Told of each request the boot policy made wait (`WAIT`), in the thread that
        # handled it.
        self.on_wait: Callable[[Held], None] | None = None
        local = Scope(
            policy,
            network_options(
                config.network,
                config.router_list,
                config.dns,
                config.domain_name,
                config.extra_options,
            ),
        )
        # The local subnet first: it answers everything that names no other link.
        self.scopes: list[Scope] = [local, *subnets]

    # -- classification ----------------------------------------------------------------

    def is_pxe(self, msg: Message) -> bool:
        vc = msg.vendor_class or ""
        return any(vc.startswith(p) for p in self.config.pxe_vendor_prefixes)

    def _waiting(self, msg: Message) -> bool:
        """The boot policy has no decision for this machine yet (`WAIT`)."""
        if self.boot_policy is None or not self.is_pxe(msg):
            return False
        try:
            return self.boot_policy(msg) is WAIT
        except Exception:
            return False

    def _silenced(self, msg: Message) -> bool:
        """The boot policy wants no boot answer for this machine (`SILENT`)."""
        if self.boot_policy is None:
            return False
        try:
            return self.boot_policy(msg) is SILENT
        except Exception:
            return False  # boot_for logs it

    def boot_for(self, msg: Message, scope: Scope | None = None) -> BootChoice | None:
        """Ask the hook (or use BOOTFILE); a hook that raises must not stop the server."""
        cfg = self.config
        choice: BootChoice | str | None
        if self.boot_policy is None:
            bootfile = cfg.bootfile
            ipxe_file = cfg.ipxe_bootfile
            if scope is not None and scope.bootfile is not None:
                bootfile = scope.bootfile
            if scope is not None and scope.ipxe_bootfile is not None:
                ipxe_file = scope.ipxe_bootfile
            choice = ipxe_file if ipxe_file and is_ipxe(msg) else bootfile
        else:
            try:
                choice = self.boot_policy(msg)
            except Exception:
                log.exception(
                    "boot policy failed for %s; using %s",
                    msg.mac_str,
                    cfg.bootfile or "no boot file",
                )
                choice = cfg.bootfile
        if choice is None or choice == "" or choice is SILENT or choice is WAIT:
            return None
        if isinstance(choice, str):
            choice = BootChoice(choice)
        if choice.next_server is None and scope is not None and scope.next_server is not None:
            choice = BootChoice(choice.file, scope.next_server, choice.options)
        return choice

    # -- entry point ---------------------------------------------------------------------

    def handle(
        self, data: bytes, source: tuple[str, int], now: float, *, unicast: bool = False
    ) -> list[Outgoing]:
        """One datagram in, zero or one reply out; never raises for bad input, since a
        single odd client must not stop a server that a whole room is booting from.

        The subnet is chosen per request (`scope.find_scope`); a request from a link
        that no configured subnet covers is dropped. With a `balancer` (servers sharing
        a lease database), a broadcast for another server's hash bucket is left to it;
        `unicast`: the datagram was sent to this server's own address."""
        try:
            msg = decode(data)
        except PacketError as exc:
            self.dropped += 1
            log.debug("drop %d bytes from %s:%s: %s", len(data), source[0], source[1], exc)
            return []
        if msg.op != BOOTREQUEST:
            log.debug("drop BOOTREPLY from %s", source[0])
            return []
        if self.events is not ignore:  # nobody listening: build no event
            asked = msg.requested_ip or (msg.ciaddr if msg.ciaddr != ZERO_IP else None)
            self.events(
                DhcpMessage(
                    "in",
                    message_label(msg),
                    msg.mac_str,
                    asked,
                    msg.vendor_class,
                    self.config.port,
                )
            )
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
        scope = find_scope(self.scopes, msg)
        if scope is None:
            log.debug("drop request relayed from %s: no subnet configured for it", msg.giaddr)
            return []
        balancer = self.balancer
        if balancer is not None and not balancer.answers(msg, unicast and msg.giaddr == ZERO_IP):
            if debug:
                log.debug("leave %s from %s to its bucket's server", msg.message_type, msg.mac_str)
            return []
        if msg.is_bootp:
            if not self.config.bootp:
                log.debug("drop BOOTP request from %s (BOOTP not enabled)", msg.mac_str)
                return []
            return self._bootp(msg, scope, now)
        if not self.config.dhcp:
            self._ignored(msg, now, "this server answers BOOTP only (bootpd; dhcpd answers DHCP)")
            return []
        if not self.config.answer_all and not self.is_pxe(msg):
            vendor = msg.vendor_class
            self._ignored(msg, now, f"vendor class {vendor!r} is not PXE (-a answers every client)")
            return []
        if self._waiting(msg):
            self._ignored(msg, now, "its boot decision is still being asked for (boot API)")
            if self.on_wait is not None:
                self.on_wait(Held(msg.mac_str, data, source, unicast))
            return []
        if not self.config.answer_all and self._silenced(msg):
            self._ignored(msg, now, "the boot policy gives this machine no answer (ignore)")
            return []
        reply = self._dhcp(msg, source, scope, now)
        if reply is None:
            return []
        try:
            return [self._outgoing(msg, reply, None, source)]
        except PacketError as exc:
            log.info("no reply to %s: %s", msg.mac_str, exc)
            return []

    def _ignored(self, msg: Message, now: float, why: str) -> None:
        """A client we do not answer, and why: at -v once per MAC per minute (bounded
        memory: `OncePerKey`), every time at -D."""
        what = msg.message_type.label if msg.message_type else "request"
        say_ignored(log, self.ignored, now, what, msg.mac_str, why)

    def _outgoing(
        self, msg: Message, reply: Message, payload: bytes | None, source: tuple[str, int]
    ) -> Outgoing:
        """The destination is decided first, since it may set the broadcast bit (a NAK
        through a relay), then the reply is encoded (unless `payload` already is)."""
        dest, arp = reply_destination(msg, reply, self.config.port, self.config.client_port, source)
        if payload is None:
            payload = encode(reply, msg.max_message_size)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "send %s xid=%08x to %s:%s yiaddr=%s %d bytes",
                reply.message_type.label if reply.message_type else "BOOTREPLY",
                reply.xid,
                dest[0],
                dest[1],
                reply.yiaddr,
                len(payload),
            )
        if self.events is not ignore:
            yiaddr = reply.yiaddr if reply.yiaddr != ZERO_IP else None
            label = message_label(reply)
            self.events(DhcpMessage("out", label, msg.mac_str, yiaddr, port=self.config.port))
        return Outgoing(payload, dest, arp, reply)

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

    def _lease_event(
        self, kind: LeaseKind, addr: IPv4Address, mac: str, expires: float | None = None
    ) -> None:
        if self.events is not ignore:
            self.events(LeaseEvent(kind, addr, mac, expires))

    def _dhcp(
        self, msg: Message, source: tuple[str, int], scope: Scope, now: float
    ) -> Message | None:
        mtype = msg.message_type
        key, mac = msg.client_key, msg.mac_str
        cfg = self.config
        policy = scope.policy
        if mtype is MessageType.DISCOVER:
            addr = policy.offer(key, mac, msg.requested_ip, now=now)
            if addr is None:
                log.warning("DHCPDISCOVER from %s: no free address in %s", mac, scope.network)
                return None
            self._lease_event(LeaseKind.OFFERED, addr, mac, now + cfg.offer_time)
            return self._lease_reply(msg, scope, MessageType.OFFER, addr, "DHCPOFFER")
        if mtype is MessageType.REQUEST:
            sid = msg.server_id
            if sid is not None and sid != cfg.server_ip:
                policy.withdraw(key, now=now)
                self._event("DHCPREQUEST for server", sid, msg, extra=" (not us: offer withdrawn)")
                return None
            known_only = selecting = False
            if sid is not None:  # SELECTING
                addr = msg.requested_ip or (msg.ciaddr if msg.ciaddr != ZERO_IP else None)
                selecting = True
            elif msg.requested_ip is not None:  # INIT-REBOOT
                addr, known_only = msg.requested_ip, True
            elif msg.ciaddr != ZERO_IP:  # RENEWING / REBINDING
                addr = msg.ciaddr
            else:
                log.debug("drop DHCPREQUEST from %s with no address", mac)
                return None
            if addr is None:
                return None
            result = policy.request(
                key, mac, addr, msg.hostname, known_only=known_only, selecting=selecting, now=now
            )
            if result is None:
                log.debug("DHCPREQUEST for %s from unknown client %s: silent", addr, mac)
                return None
            if isinstance(result, Nak):
                self._event("DHCPNAK", addr, msg, extra=f" ({result.reason})")
                nak = make_reply(msg, MessageType.NAK, cfg.server_ip)
                nak.options[Opt.MESSAGE] = result.reason.encode()
                self._echo_selection(msg, nak)
                return nak
            assert isinstance(result, Ack)
            self._lease_event(LeaseKind.BOUND, result.lease.address, mac, result.lease.expires)
            return self._lease_reply(
                msg, scope, MessageType.ACK, result.lease.address, "DHCPACK", result.lease
            )
        if mtype is MessageType.RELEASE:
            released = policy.release(key, msg.ciaddr, now=now)
            if released is not None:
                self._lease_event(LeaseKind.RELEASED, released.address, mac)
            self._event(
                "DHCPRELEASE", msg.ciaddr, msg, extra="" if released else " (no such lease)"
            )
            return None
        if mtype is MessageType.DECLINE:
            sid = msg.server_id
            if sid is not None and sid != cfg.server_ip:
                return None
            addr = msg.requested_ip
            declined = None if addr is None else policy.decline(key, mac, addr, now=now)
            if declined is not None:
                self._lease_event(LeaseKind.DECLINED, declined.address, mac, declined.expires)
                self._event("DHCPDECLINE", addr, msg, extra=" (quarantined)")
            return None
        if mtype is MessageType.INFORM:
            reply = make_reply(msg, MessageType.ACK, cfg.server_ip)
            reply.ciaddr = msg.ciaddr
            boot = self._add_common(msg, reply, scope)
            self._event(
                "DHCPACK(inform)", msg.ciaddr if msg.ciaddr != ZERO_IP else source[0], msg, boot
            )
            return reply
        log.debug("drop DHCP message type %s from %s", mtype, mac)
        return None

    def _lease_reply(
        self,
        msg: Message,
        scope: Scope,
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
        # OFFER and ACK state the same time: the policy's lease time (a static host's
        # too), all ones only for a lease that really never ends.
        lease_time = scope.lease_time
        if lease is not None and lease.expires == float("inf"):
            lease_time = INFINITE
        reply.options[Opt.LEASE_TIME] = lease_time.to_bytes(4, "big")
        if lease_time != INFINITE:
            reply.options[Opt.RENEWAL_TIME] = (lease_time // 2).to_bytes(4, "big")
            reply.options[Opt.REBINDING_TIME] = (lease_time * 7 // 8).to_bytes(4, "big")
        static = scope.policy.static_for(msg.mac_str)
        if static is not None and static.hostname:
            reply.options[Opt.HOSTNAME] = static.hostname.encode()
        boot = self._add_common(msg, reply, scope)
        self._event(label, addr, msg, boot)
        return reply

    def _add_common(self, msg: Message, reply: Message, scope: Scope) -> str | None:
        """Network and boot options shared by OFFER, ACK and INFORM; returns the boot file.

        The boot information (file, siaddr, 66, 67, PXE 43/60/97 and the policy's own
        options) goes in whatever option 55 says: ROMs rarely list it."""
        cfg = self.config
        opts = reply.options
        opts.update(scope.options)
        boot = self.boot_for(msg, scope)
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
        self._echo_selection(msg, reply)
        always = boot.options.keys() if boot is not None else ()
        reply.options = order_options(opts, msg.parameter_list, always)
        return file

    @staticmethod
    def _echo_selection(msg: Message, reply: Message) -> None:
        """RFC 3011 3: a server that honours subnet selection (118) MUST return an
        identical copy to a client that sent it, asked for in option 55 or not
        (clients discard replies without it). Relay agent information (82) is echoed
        by `make_reply` (RFC 3046)."""
        selected = msg.options.get(Opt.SUBNET_SELECTION)
        if selected is not None:
            reply.options[Opt.SUBNET_SELECTION] = selected

    # -- BOOTP -----------------------------------------------------------------------------

    def _bootp(self, msg: Message, scope: Scope, now: float) -> list[Outgoing]:
        from ptftpd.dhcp.bootp import bootp_reply

        lease = scope.policy.bind_permanent(msg.client_key, msg.mac_str, now=now)
        if lease is None:
            log.warning("BOOTREQUEST from %s: no free address in %s", msg.mac_str, scope.network)
            return []
        self._lease_event(LeaseKind.BOUND, lease.address, msg.mac_str, lease.expires)
        reply, payload = bootp_reply(self, scope, msg, lease)
        self._event("BOOTREPLY", lease.address, msg, reply.file_str or None)
        return [self._outgoing(msg, reply, payload, ("0.0.0.0", 0))]
