"""DHCPv6 server engine (RFC 8415 section 18.3): datagram in, replies out. Sans-IO.

`Dhcp6Engine.handle(data, source, now)` decodes one client message, checks it as RFC
8415 section 16 asks (client id present, server id present and ours, or absent, by
message type; anything else is dropped silently), applies the binding rules of the
lease core (`ptftpd.dhcp.leases.LeasePolicy` over the `Dhcp6Config`, the policy DHCPv4
uses too) and returns `Outgoing` items; `now` is the only clock. Bindings a Reply
announces are committed to the store before `handle` returns.

Proxy mode hands out no addresses: it answers netboot clients' Solicit (Advertise),
Request for us and Information-request with boot options only, and stays silent to
every other client, so it can sit beside the site's own DHCPv6 server. PXE firmware
then asks the boot service on UDP 4011 (`handle_boot_service`).

Relay-forward messages (RFC 8415 section 19) are answered with a Relay-reply that
wraps the reply once per relay, each layer with its relay's hop count, link and peer
address and Interface-ID echoed, sent to the relay agent that sent the Relay-forward,
port 547. The relayed client's link is the innermost relay's link address: a full
server serves it only when that address lies in its prefix (else the message is
dropped: not a link it has addresses for); a proxy answers boot options whatever the
link. Relays nest at most `MAX_RELAYS` deep (the codec's bound). The innermost
relay's client link-layer address (option 79, RFC 6939) goes to the boot policy with
the client's request (`BootRequest6.link_layer`): the relay next to the client is the
one that saw its MAC (a 79 from a client or from an outer relay is not looked at).

Events (`ptftpd.events`, built only when `events` is not `ignore`): a `Dhcp6Message`
for every client message decoded (read through its relays, before any check: the boot
log learns from Requests to another server too, by `ours`) and every reply sent, and
a `Lease6Event` for every binding offered, bound or renewed, released or declined.

Unicast: RFC 9915 (which obsoletes RFC 8415) drops the Server Unicast option and the
UseMulticast status, so a server answers a message sent to its unicast address like a
multicast one; this server never sends UseMulticast, which EDK2's unicast boot-service
Request relies on. Replies to clients go to the client's (link-local) source address,
port 546; replies to relays to the relay's source address, port 547.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Literal, TypeVar

from ptftpd.dhcp.balance import Balancer
from ptftpd.dhcp.leases import Lease, LeasePolicy, LeaseState
from ptftpd.dhcp6.boot import (
    WAIT6,
    BootChoice6,
    boot_request,
    is_http_client,
    is_netboot,
    is_pxe_client,
)
from ptftpd.dhcp6.codec import (
    MAX_RELAYS,
    BootFileParam,
    BootFileUrl,
    ClientId,
    ClientLinkLayer,
    DnsServers,
    ElapsedTime,
    IaAddress,
    IaNa,
    IaPd,
    InterfaceId,
    Message,
    MsgType,
    Opt,
    Option,
    OptionRequest,
    PacketError,
    RapidCommit,
    RawOption,
    RelayMessage,
    RelayMsg,
    ServerId,
    Status,
    StatusCode,
    VendorClass,
    decode,
    decode_any,
    encode,
)
from ptftpd.dhcp6.config import Dhcp6Config
from ptftpd.events import Dhcp6Message, Dhcp6Type, EventSink, Lease6Event, LeaseKind, ignore

__all__ = ["MAX_RELAYS", "Dhcp6Engine", "Outgoing"]

log = logging.getLogger("ptftpd.dhcp6")

# IAs of each kind answered per message (RFC 8415 lets a client send any number; a
# 64 KiB Solicit holds 4,000): the rest are left out of the reply, which stays small.
MAX_IAS = 32
# The relayed client's link-layer address (innermost relay's option 79) while its
# message is answered, and the boot policy's answer for that message (asked once):
# per thread (the service answers in a pool of threads).
_LINK_LAYER: ContextVar[ClientLinkLayer | None] = ContextVar("link_layer", default=None)
_Choice = BootChoice6 | str | None
_CHOICE: ContextVar[tuple[Message, _Choice] | None] = ContextVar("choice", default=None)
# The boot exchange: a machine whose decision is pending (`WAIT6`) gets no reply to these.
_HELD = frozenset({MsgType.SOLICIT, MsgType.REQUEST, MsgType.INFORMATION_REQUEST})
# Whether the message being answered was held (`WAIT6`), per thread as above.
_WAITED: ContextVar[bool] = ContextVar("waited", default=False)


@dataclass(frozen=True)
class Outgoing:
    """One datagram to send to `address` (host, port); the driver adds the scope."""

    payload: bytes
    address: tuple[str, int]


_Handler = Callable[[Message, bytes, float], "Message | None"]
# Multicast and naming no server: answered by the client's bucket's server alone.
_BALANCED = frozenset(
    {MsgType.SOLICIT, MsgType.CONFIRM, MsgType.REBIND, MsgType.INFORMATION_REQUEST}
)


class Dhcp6Engine:
    def __init__(self, config: Dhcp6Config, duid: bytes, policy: LeasePolicy[Dhcp6Config]) -> None:
        self.config = config
        self.duid = duid
        self.policy = policy
        self.events: EventSink = ignore
        # Told (datagram, source) of each message held for the boot decision (`WAIT6`),
        # in the thread that handled it: the driver feeds it to `handle` again later.
        self.on_wait: Callable[[bytes, tuple[str, int]], None] | None = None
        # Servers sharing a lease database split the clients (dhcp/balance.py).
        self.balancer: Balancer | None = None
        self._handlers: dict[int, _Handler] = {
            MsgType.SOLICIT: self._solicit,
            MsgType.REQUEST: self._request,
            MsgType.CONFIRM: self._confirm,
            MsgType.RENEW: self._renew,
            MsgType.REBIND: self._rebind,
            MsgType.RELEASE: self._release,
            MsgType.DECLINE: self._decline,
            MsgType.INFORMATION_REQUEST: self._information,
        }

    # -- entry point ---------------------------------------------------------------

    def handle(self, data: bytes, source: tuple[str, int], now: float) -> list[Outgoing]:
        try:
            packet = decode_any(data)
        except PacketError as exc:
            log.debug("dropped a malformed packet from %s: %s", source[0], exc)
            return []
        relays: list[RelayMessage] = []  # outermost first
        while isinstance(packet, RelayMessage):
            if packet.msg_type != MsgType.RELAY_FORW:
                log.debug("ignored a relay-reply from %s", source[0])
                return []
            relays.append(packet)
            inner = packet.first(RelayMsg)
            assert inner is not None  # the codec requires it
            packet = inner.message
        msg = packet
        peer = None if relays else _host(source[0])
        if self.events is not ignore:
            self._message_event("in", msg, peer)
        if relays and not self._serves_link(relays[-1].link_address):
            log.debug(
                "dropped %s relayed from link %s: not in %s",
                _name(msg.msg_type),
                relays[-1].link_address,
                self.config.prefix,
            )
            return []
        token = _LINK_LAYER.set(relays[-1].first(ClientLinkLayer) if relays else None)
        waited = _WAITED.set(False)
        try:
            reply = self._answer(msg, source, now)
            held = _WAITED.get()
        finally:
            _LINK_LAYER.reset(token)
            _WAITED.reset(waited)
        if held and self.on_wait is not None:
            self.on_wait(data, source)
        if reply is None:
            return []
        if self.events is not ignore:
            self._message_event("out", reply, peer)
        if not relays:
            return [Outgoing(encode(reply), (source[0], self.config.client_port))]
        return [Outgoing(encode(_relay_reply(relays, reply)), (source[0], self.config.server_port))]

    def _message_event(
        self, direction: Literal["in", "out"], msg: Message, peer: IPv6Address | None
    ) -> None:
        client, server = msg.first(ClientId), msg.first(ServerId)
        addresses = tuple(
            a.address for ia in msg.all(IaNa) for a in ia.options if isinstance(a, IaAddress)
        )
        sid = server.duid if server is not None else None
        self.events(
            Dhcp6Message(
                direction,
                _TYPES.get(msg.msg_type, "other"),
                client.duid if client is not None else b"",
                addresses,
                direction == "out" or sid == self.duid,
                peer,
                sid,
            )
        )

    def _lease_event(self, kind: LeaseKind, lease: Lease[IPv6Address] | None) -> None:
        if self.events is not ignore and lease is not None:
            key = lease.client_key  # ia_key: the DUID, then the IAID's 4 bytes
            iaid = int.from_bytes(key[-4:], "big")
            self.events(Lease6Event(kind, lease.address, key[:-4], iaid, lease.expires))

    def _serves_link(self, link: IPv6Address) -> bool:
        """A relayed client's link (the innermost relay's link address) is served when
        it lies in our prefix; a proxy gives boot options to any link."""
        return self.config.proxy or link in self.config.prefix

    def _answer(self, msg: Message, source: tuple[str, int], now: float) -> Message | None:
        handler = self._handlers.get(msg.msg_type)
        if handler is None:
            log.debug("ignored message type %d from %s", msg.msg_type, source[0])
            return None
        why = self._invalid(msg)
        if why:
            log.debug("dropped %s from %s: %s", _name(msg.msg_type), source[0], why)
            return None
        if self.config.proxy and not self._proxy_answers(msg):
            log.debug("proxy: ignored %s from %s", _name(msg.msg_type), source[0])
            return None
        client = msg.first(ClientId)
        if self.balancer is not None and client is not None and msg.msg_type in _BALANCED:
            # Servers sharing a database: a message that names no server is answered
            # by the server of the client's RFC 3074 bucket (hash of its DUID).
            elapsed = msg.first(ElapsedTime)
            waited = elapsed.hundredths / 100 if elapsed is not None else 0.0
            if not self.balancer.owns(client.duid, waited):
                log.debug("left %s from %s to its bucket's server", _name(msg.msg_type), source[0])
                return None
        duid = client.duid if client else b""
        choice = self._boot_choice(msg, duid)
        if choice is WAIT6 and msg.msg_type in _HELD:
            log.debug("held %s from %s: boot decision pending", _name(msg.msg_type), source[0])
            _WAITED.set(True)
            return None
        token = _CHOICE.set((msg, choice))
        try:
            reply = handler(msg, duid, now)
        finally:
            _CHOICE.reset(token)
        if reply is not None:
            log.debug("%s to %s", _name(reply.msg_type), source[0])
        return reply

    def _boot_choice(self, msg: Message, duid: bytes) -> _Choice:
        """The boot policy's answer for a netboot client's message (None: no boot
        options), asked once per message (`_CHOICE` holds it while it is answered)."""
        held = _CHOICE.get()
        if held is not None and held[0] is msg:
            return held[1]
        policy = self.config.boot_policy
        if policy is None or not is_netboot(msg):
            return None
        return policy(boot_request(msg, duid, _LINK_LAYER.get()))

    def handle_boot_service(
        self, data: bytes, source: tuple[str, int], now: float
    ) -> list[Outgoing]:
        """The PXEv6 boot service (UDP 4011, proxy mode): EDK2 firmware that chose a
        proxy Advertise sends its Request, without IAs and with our server id, to the
        host of the boot URL on port 4011 and waits for the Reply on the same port.
        Boot options only; bindings are never touched."""
        try:
            msg = decode(data)
        except PacketError as exc:
            log.debug("boot service: dropped a malformed packet from %s: %s", source[0], exc)
            return []
        peer = _host(source[0])
        if self.events is not ignore:
            self._message_event("in", msg, peer)
        server, client = msg.first(ServerId), msg.first(ClientId)
        if msg.msg_type != MsgType.REQUEST or server is None or server.duid != self.duid:
            log.debug("boot service: ignored %s from %s", _name(msg.msg_type), source[0])
            return []
        if client is None:
            # RFC 8415 16.4: a Request without a Client Identifier MUST be discarded.
            log.debug("boot service: dropped a Request without client id from %s", source[0])
            return []
        reply = self._boot_only(MsgType.REPLY, msg, client.duid)
        if reply is None:
            return []
        if self.events is not ignore:
            self._message_event("out", reply, peer)
        log.info("boot service: boot file URL to %s", source[0])
        return [Outgoing(encode(reply), (source[0], source[1]))]

    def _invalid(self, msg: Message) -> str:
        """RFC 8415 section 16: which messages a server must discard."""
        client, server = msg.first(ClientId), msg.first(ServerId)
        kind = msg.msg_type
        if kind != MsgType.INFORMATION_REQUEST and client is None:
            return "no client identifier"
        if kind in (MsgType.SOLICIT, MsgType.CONFIRM, MsgType.REBIND):
            return "carries a server identifier" if server is not None else ""
        needs_server = (MsgType.REQUEST, MsgType.RENEW, MsgType.RELEASE, MsgType.DECLINE)
        if kind in needs_server and server is None:
            return "no server identifier"
        if server is not None and server.duid != self.duid:
            return "for another server"
        if kind == MsgType.INFORMATION_REQUEST and _has_ia(msg):
            return "Information-request with an IA"  # RFC 8415 16.12: MUST discard
        return ""

    def _proxy_answers(self, msg: Message) -> bool:
        """Proxy mode: only the exchanges that carry boot options; the replies of
        `_boot_only` then go to netboot clients alone (see `_stateless`)."""
        return msg.msg_type in (MsgType.SOLICIT, MsgType.REQUEST, MsgType.INFORMATION_REQUEST)

    # -- replies -------------------------------------------------------------------

    def _reply(self, kind: MsgType, msg: Message, duid: bytes, body: list[Option]) -> Message:
        options: list[Option] = [ServerId(self.duid)]
        if duid:
            options.append(ClientId(duid))
        options.extend(body)
        options.extend(self._stateless(msg, duid))
        return Message(kind, msg.transaction_id, tuple(options))

    def _stateless(self, msg: Message, duid: bytes) -> list[Option]:
        """DNS servers when asked for, boot options for netboot clients."""
        oro = msg.first(OptionRequest)
        asked = set(oro.codes) if oro else set()
        out: list[Option] = []
        if self.config.dns_servers and Opt.DNS_SERVERS in asked:
            out.append(DnsServers(self.config.dns_servers))
        choice = self._boot_choice(msg, duid)
        if choice is None or choice is WAIT6:
            return out  # no boot options (still pending: none in a Renew's Reply)
        request = boot_request(msg, duid, _LINK_LAYER.get())
        if isinstance(choice, str):
            choice = BootChoice6(choice)
        out.append(BootFileUrl(choice.url))
        if choice.params:
            out.append(BootFileParam(choice.params))
        if choice.vendor_class is not None:
            out.append(choice.vendor_class)
        elif is_http_client(request.vendor_class) and choice.url.startswith("http"):
            # EDK2 HTTP boot ignores a reply without vendor class "HTTPClient".
            enterprise = request.vendor_class.enterprise if request.vendor_class else 343
            out.append(VendorClass(enterprise, (b"HTTPClient",)))
        elif self.config.proxy and is_pxe_client(request.vendor_class):
            # EDK2 (PXEv6) counts an offer without addresses as a proxy offer only when it
            # says "PXEClient"; it then asks the boot service (`handle_boot_service`).
            enterprise = request.vendor_class.enterprise if request.vendor_class else 343
            out.append(VendorClass(enterprise, (b"PXEClient",)))
        return out

    def _ia(
        self,
        iaid: int,
        lease: Lease[IPv6Address] | None,
        now: float,
        extra: tuple[Option, ...] = (),
    ) -> IaNa:
        cfg = self.config
        if lease is None:
            return IaNa(iaid, 0, 0, extra)
        valid = cfg.valid_lifetime
        if lease.state is not LeaseState.OFFERED:
            valid = min(valid, max(0, int(lease.expires - now)))
        preferred = min(cfg.preferred_lifetime, valid)
        address = IaAddress(lease.address, preferred, valid)
        return IaNa(iaid, cfg.renew_time, cfg.rebind_time, (address, *extra))

    def _log_lease(self, verb: str, lease: Lease[IPv6Address], duid: bytes) -> None:
        log.info(
            "%s %s to DUID %s IAID %d (valid %d s)",
            verb,
            lease.address,
            duid.hex(":"),
            int.from_bytes(lease.client_key[-4:], "big"),
            self.config.valid_lifetime,
        )

    def _assign(self, msg: Message, duid: bytes, now: float, commit: bool) -> list[Option]:
        """One IA per IA the client sent (RFC 8415 18.3.1/18.3.2): each IA_NA an address,
        or status NotOnLink (a Request naming an address not on the client's link) or
        NoAddrsAvail inside it; each IA_PD status NoPrefixAvail (no delegation here)."""
        out: list[Option] = []
        for ia in _ias(msg, IaNa):
            hints = [a.address for a in ia.addresses]
            if (
                commit
                and msg.msg_type == MsgType.REQUEST
                and any(a not in self.config.prefix for a in hints)
            ):
                status = StatusCode(Status.NOT_ON_LINK, "address not on this link")
                out.append(IaNa(ia.iaid, 0, 0, (status,)))
                continue
            hint = next((a for a in hints if a in self.config.prefix), None)
            if commit:
                lease = self.policy.commit(duid, ia.iaid, hint, now=now)
                if lease is not None:
                    self._log_lease("leased", lease, duid)
                    self._lease_event(LeaseKind.BOUND, lease)
            else:
                lease = self.policy.solicit(duid, ia.iaid, hint, now=now)
                if lease is not None:
                    self._lease_event(LeaseKind.OFFERED, lease)
            if lease is None:
                log.warning("no address for DUID %s IAID %d", duid.hex(":"), ia.iaid)
                nothing = (StatusCode(Status.NO_ADDRS_AVAIL, "no addresses available"),)
                out.append(self._ia(ia.iaid, None, now, nothing))
            else:
                out.append(self._ia(ia.iaid, lease, now))
        out.extend(_no_prefixes(msg, Status.NO_PREFIX_AVAIL, "no prefixes available"))
        return out

    def _solicit(self, msg: Message, duid: bytes, now: float) -> Message | None:
        if self.config.proxy:
            return self._boot_only(MsgType.ADVERTISE, msg, duid)
        rapid = self.config.rapid_commit and msg.first(RapidCommit) is not None
        ias = self._assign(msg, duid, now, commit=rapid)
        if rapid:
            return self._reply(MsgType.REPLY, msg, duid, [RapidCommit(), *ias])
        # RFC 9915 18.3.1 (RFC 7550): an IA that gets nothing carries NoAddrsAvail or
        # NoPrefixAvail itself; no top-level status.
        return self._reply(MsgType.ADVERTISE, msg, duid, ias)

    def _boot_only(self, kind: MsgType, msg: Message, duid: bytes) -> Message | None:
        reply = self._reply(kind, msg, duid, [])
        if reply.first(BootFileUrl) is None:
            return None  # proxy mode has nothing else to say
        return reply

    def _request(self, msg: Message, duid: bytes, now: float) -> Message | None:
        if self.config.proxy:
            return self._boot_only(MsgType.REPLY, msg, duid)
        return self._reply(MsgType.REPLY, msg, duid, self._assign(msg, duid, now, True))

    def _confirm(self, msg: Message, _duid: bytes, _now: float) -> Message | None:
        addresses = [a.address for ia in _ias(msg, IaNa) for a in ia.addresses]
        if not addresses:
            return None  # RFC 8415 18.3.3: nothing to confirm, no reply
        if all(a in self.config.prefix for a in addresses):
            status = StatusCode(Status.SUCCESS, "all addresses on link")
        else:
            status = StatusCode(Status.NOT_ON_LINK, "not on this link")
        return self._reply(MsgType.REPLY, msg, _duid, [status])

    def _extend(self, msg: Message, duid: bytes, now: float, rebind: bool) -> Message | None:
        """Renew and Rebind act on existing bindings only (RFC 8415 18.3.4/18.3.5): an IA
        without one gets NoBinding, or, on Rebind, its addresses with lifetimes 0 when
        they are not on the client's link; no binding is created."""
        out: list[Option] = []
        for ia in _ias(msg, IaNa):
            lease = self.policy.bound(duid, ia.iaid, now=now)
            listed = [a.address for a in ia.addresses]
            if lease is not None:
                lease = self.policy.renew(lease, now=now)
            if lease is not None:
                self._log_lease("rebound" if rebind else "renewed", lease, duid)
                self._lease_event(LeaseKind.BOUND, lease)
            elif rebind and any(a not in self.config.prefix for a in listed):
                zero = tuple(IaAddress(a, 0, 0) for a in listed)
                out.append(IaNa(ia.iaid, 0, 0, zero))
                continue
            else:
                status = StatusCode(Status.NO_BINDING, "no binding for this IA")
                out.append(IaNa(ia.iaid, 0, 0, (status,)))
                continue
            # Addresses the client holds that are not (or no longer) its: lifetime 0.
            stale = tuple(IaAddress(a, 0, 0) for a in listed if a != lease.address)
            out.append(self._ia(ia.iaid, lease, now, stale))
        out.extend(_no_prefixes(msg, Status.NO_BINDING, "no binding for this IA"))
        return self._reply(MsgType.REPLY, msg, duid, out)

    def _renew(self, msg: Message, duid: bytes, now: float) -> Message | None:
        return self._extend(msg, duid, now, rebind=False)

    def _rebind(self, msg: Message, duid: bytes, now: float) -> Message | None:
        return self._extend(msg, duid, now, rebind=True)

    def _give_back(self, msg: Message, duid: bytes, now: float, decline: bool) -> Message:
        out: list[Option] = []
        for ia in _ias(msg, IaNa):
            lease = self.policy.bound(duid, ia.iaid, now=now)
            listed = {a.address for a in ia.addresses}
            if lease is None or lease.address not in listed:
                status = StatusCode(Status.NO_BINDING, "no binding for this IA")
                out.append(IaNa(ia.iaid, 0, 0, (status,)))
                continue
            if decline:
                declined = self.policy.decline(lease.client_key, lease.mac, lease.address, now=now)
                self._lease_event(LeaseKind.DECLINED, declined)
                log.warning("declined %s by DUID %s: address in use?", lease.address, duid.hex(":"))
            else:
                released = self.policy.release(lease.client_key, lease.address, now=now)
                self._lease_event(LeaseKind.RELEASED, released)
                log.info("released %s by DUID %s IAID %d", lease.address, duid.hex(":"), ia.iaid)
        out.append(StatusCode(Status.SUCCESS, "declined" if decline else "released"))
        return self._reply(MsgType.REPLY, msg, duid, out)

    def _release(self, msg: Message, duid: bytes, now: float) -> Message | None:
        return self._give_back(msg, duid, now, decline=False)

    def _decline(self, msg: Message, duid: bytes, now: float) -> Message | None:
        return self._give_back(msg, duid, now, decline=True)

    def _information(self, msg: Message, duid: bytes, _now: float) -> Message | None:
        if self.config.proxy:
            return self._boot_only(MsgType.REPLY, msg, duid)
        return self._reply(MsgType.REPLY, msg, duid, [])


def _has_ia(msg: Message) -> bool:
    return any(
        isinstance(o, (IaNa, IaPd)) or (isinstance(o, RawOption) and o.code == Opt.IA_TA)
        for o in msg.options
    )


def _no_prefixes(msg: Message, code: Status, text: str) -> list[Option]:
    """Each IA_PD back with `code` inside: this server delegates no prefixes."""
    return [IaPd(ia.iaid, 0, 0, (StatusCode(code, text),)) for ia in _ias(msg, IaPd)]


_IA = TypeVar("_IA", IaNa, IaPd)


def _ias(msg: Message, kind: type[_IA]) -> tuple[_IA, ...]:
    """The first `MAX_IAS` IAs of `kind` (one per IAID: a repeated IAID is one IA)."""
    seen: set[int] = set()
    out: list[_IA] = []
    for ia in msg.all(kind):
        if ia.iaid not in seen:
            seen.add(ia.iaid)
            out.append(ia)
            if len(out) == MAX_IAS:
                break
    return tuple(out)


def _relay_reply(relays: list[RelayMessage], reply: Message) -> RelayMessage:
    """Wrap `reply` once per relay, innermost first (RFC 8415 18.3.10, 19.3): the
    same hop count, link and peer address, and the relay's Interface-ID echoed."""
    wrapped: Message | RelayMessage = reply
    for relay in reversed(relays):
        options: list[Option] = []
        interface = relay.first(InterfaceId)
        if interface is not None:
            options.append(interface)
        options.append(RelayMsg(wrapped))
        wrapped = RelayMessage(
            MsgType.RELAY_REPL,
            relay.hop_count,
            relay.link_address,
            relay.peer_address,
            tuple(options),
        )
    assert isinstance(wrapped, RelayMessage)
    return wrapped


_TYPES: dict[int, Dhcp6Type] = {
    MsgType.SOLICIT: "solicit",
    MsgType.ADVERTISE: "advertise",
    MsgType.REQUEST: "request",
    MsgType.CONFIRM: "confirm",
    MsgType.RENEW: "renew",
    MsgType.REBIND: "rebind",
    MsgType.REPLY: "reply",
    MsgType.RELEASE: "release",
    MsgType.DECLINE: "decline",
    MsgType.RECONFIGURE: "reconfigure",
    MsgType.INFORMATION_REQUEST: "information-request",
}


def _host(text: str) -> IPv6Address | None:
    try:
        return IPv6Address(text.split("%", 1)[0])
    except ValueError:
        return None


def _name(kind: int) -> str:
    try:
        return MsgType(kind).name
    except ValueError:
        return f"type {kind}"
