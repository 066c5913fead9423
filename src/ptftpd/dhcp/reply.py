"""Reply building blocks shared by the DHCP engine, BOOTP and the PXE proxy.

RFC 2131 table 3 (fields copied from the request), RFC 6842 (client identifier echoed),
RFC 2131 4.1 (where a reply goes) and option 55 ordering: pure functions on `Message`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from ipaddress import IPv4Address

from ptftpd.dhcp.options import MessageType, Opt
from ptftpd.dhcp.packet import BOOTREPLY, BROADCAST_FLAG, ZERO_IP, Message

__all__ = [
    "BROADCAST",
    "CLIENT_PORT",
    "SERVER_PORT",
    "Outgoing",
    "make_reply",
    "order_options",
    "reply_destination",
]

BROADCAST = IPv4Address("255.255.255.255")
SERVER_PORT = 67
CLIENT_PORT = 68
ETHERNET = 1


@dataclass(frozen=True)
class Outgoing:
    """One datagram to send. `arp` is (MAC, IP) when the server should add a neighbour
    entry first (unicast to a client that has no address yet, RFC 2131 4.1)."""

    payload: bytes
    address: tuple[str, int]
    arp: tuple[bytes, IPv4Address] | None = None
    message: Message | None = None


def make_reply(request: Message, msg_type: MessageType | None, server_ip: IPv4Address) -> Message:
    """A reply skeleton with the fields RFC 2131 table 3 copies from the request, and
    the client identifier echoed (RFC 6842 MUST: clients with hlen 0, InfiniBand for
    one, match replies by it); for proxyDHCP and other servers built on this codec."""
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
        client_id = request.options.get(Opt.CLIENT_ID)
        if client_id is not None:
            reply.options[Opt.CLIENT_ID] = client_id
        # RFC 3046 2.2: a server MUST echo relay agent information in every reply to
        # a request that carries it, also with giaddr 0 (inserted by a snooping switch
        # that answers for the link itself), so the agent can strip it and deliver.
        info = request.options.get(Opt.RELAY_AGENT_INFO)
        if info is not None:
            reply.options[Opt.RELAY_AGENT_INFO] = info
    return reply


def reply_destination(
    request: Message,
    reply: Message,
    server_port: int = SERVER_PORT,
    client_port: int = CLIENT_PORT,
    source: tuple[str, int] | None = None,
) -> tuple[tuple[str, int], tuple[bytes, IPv4Address] | None]:
    """RFC 2131 4.1: relay first, then ciaddr, then broadcast when asked or for a NAK,
    else unicast to yiaddr (needing a neighbour entry for the client's MAC). A client
    whose hardware address is not a 6-byte Ethernet MAC cannot get a neighbour entry:
    it is answered by broadcast, as 4.1 allows.

    A NAK through a relay must carry the broadcast bit (4.1: the relay broadcasts it
    to the client): that bit is set on `reply` here, so call this before encoding."""
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
    if request.htype != ETHERNET or request.hlen != 6:
        return (str(BROADCAST), client_port), None
    return (str(reply.yiaddr), client_port), (request.mac, reply.yiaddr)


# Always sent when we have them, whatever option 55 says: clients need these to work.
ESSENTIAL = frozenset(
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
        Opt.CLIENT_ID,
        Opt.TFTP_SERVER_NAME,
        Opt.BOOTFILE_NAME,
        Opt.RELAY_AGENT_INFO,
        Opt.SUBNET_SELECTION,
        Opt.MESSAGE,
        Opt.BOOT_FILE_SIZE,
        Opt.CLIENT_UUID,
    }
)


def order_options(
    options: dict[int, bytes], wanted: list[int] | None, always: Collection[int] = ()
) -> dict[int, bytes]:
    """Honour option 55: requested options first in the client's order (they survive
    truncation to a small maximum message size), then the essential ones and `always`
    (what a boot policy added: pxelinux's 209/210, iPXE's 175 are never in a ROM's
    list); configured extras that the client did not ask for are left out when it sent
    a list."""
    if wanted is None:
        return options
    out: dict[int, bytes] = {}
    if Opt.MESSAGE_TYPE in options:
        out[Opt.MESSAGE_TYPE] = options[Opt.MESSAGE_TYPE]
    for code in wanted:
        if code in options and code not in out:
            out[code] = options[code]
    for code, value in options.items():
        if code not in out and (code in ESSENTIAL or code in always):
            out[code] = value
    # Relay agent information goes last (RFC 3046 2.2 asks for it after the others).
    if Opt.RELAY_AGENT_INFO in out:
        out[Opt.RELAY_AGENT_INFO] = out.pop(Opt.RELAY_AGENT_INFO)
    return out
