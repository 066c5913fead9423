"""DHCPv6 codec (RFC 8415, RFC 5970 netboot options): bytes <-> `Message`, sans-IO.

A message is a type, a 24-bit transaction id and a tuple of typed options; IA_NA (3),
IA_PD (25) and their addresses (5) and prefixes (26) carry nested options, decoded the
same way. Options this module does not know stay `RawOption`, so a message decodes and
re-encodes byte for byte. Relay-forward/relay-reply (12/13) have their own header
(hop count, link and peer address) and carry the relayed message in option 9:
`decode_any` returns a `RelayMessage` for them, `decode` only client/server messages.

Malformed input (a truncated header or option, a length that disagrees with its
option's layout, broken nesting) raises `PacketError` and nothing else. Nesting is
bounded: options inside options at most `MAX_OPTION_DEPTH` deep (IA_NA > IA address >
status is 3), relay messages inside relay messages at most `MAX_RELAYS` deep (the
hop count limit of RFC 8415 section 7.6, plus the first relay), so a hostile datagram
costs a bounded amount of work and recursion.

The client link-layer address option (79, RFC 6939), which the relay agent next to the
client adds to its Relay-forward, decodes to `ClientLinkLayer` only when it is well
formed (a type and 1 to `MAX_LINK_ADDRESS` octets); any other 79 stays a `RawOption`,
so a hostile one is ignored, not fatal to the message that carries it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv6Address
from typing import TypeVar

from ptftpd.dhcp6.duid import HW_ETHERNET

__all__ = [
    "MAX_LINK_ADDRESS",
    "MAX_OPTION_DEPTH",
    "MAX_RELAYS",
    "BootFileParam",
    "BootFileUrl",
    "ClientArch",
    "ClientId",
    "ClientLinkLayer",
    "DnsServers",
    "ElapsedTime",
    "IaAddress",
    "IaNa",
    "IaPd",
    "IaPrefix",
    "InterfaceId",
    "Message",
    "MsgType",
    "Nii",
    "Opt",
    "Option",
    "OptionRequest",
    "PacketError",
    "RapidCommit",
    "RawOption",
    "RelayMessage",
    "RelayMsg",
    "ServerId",
    "Status",
    "StatusCode",
    "UserClass",
    "VendorClass",
    "VendorOpts",
    "decode",
    "decode_any",
    "decode_options",
    "encode",
    "encode_options",
]


class PacketError(ValueError):
    """The datagram is not a well-formed DHCPv6 client/server message."""


class MsgType(IntEnum):
    SOLICIT = 1
    ADVERTISE = 2
    REQUEST = 3
    CONFIRM = 4
    RENEW = 5
    REBIND = 6
    REPLY = 7
    RELEASE = 8
    DECLINE = 9
    RECONFIGURE = 10
    INFORMATION_REQUEST = 11
    RELAY_FORW = 12
    RELAY_REPL = 13


class Opt(IntEnum):
    CLIENTID = 1
    SERVERID = 2
    IA_NA = 3
    IA_TA = 4
    IAADDR = 5
    ORO = 6
    ELAPSED_TIME = 8
    RELAY_MSG = 9
    STATUS_CODE = 13
    RAPID_COMMIT = 14
    USER_CLASS = 15
    VENDOR_CLASS = 16
    VENDOR_OPTS = 17
    INTERFACE_ID = 18
    DNS_SERVERS = 23
    IA_PD = 25
    IAPREFIX = 26
    BOOTFILE_URL = 59
    BOOTFILE_PARAM = 60
    CLIENT_ARCH_TYPE = 61
    NII = 62
    CLIENT_LINKLAYER_ADDR = 79


class Status(IntEnum):
    SUCCESS = 0
    UNSPEC_FAIL = 1
    NO_ADDRS_AVAIL = 2
    NO_BINDING = 3
    NOT_ON_LINK = 4
    USE_MULTICAST = 5
    NO_PREFIX_AVAIL = 6


MAX_OPTION_DEPTH = 4
HOP_COUNT_LIMIT = 8  # RFC 8415 section 7.6
MAX_RELAYS = HOP_COUNT_LIMIT + 1
RELAY_HEADER = 34  # type, hop count, link address, peer address
MAX_LINK_ADDRESS = 16  # a link-layer address in option 79 (DHCPv4's chaddr holds 16)

def _duid(data: bytes, name: str) -> bytes:
    # RFC 8415 11.1: a 2-octet type and 1 to 128 octets of identifier.
    if not 3 <= len(data) <= 130:
        raise PacketError(f"{name} DUID of {len(data)} bytes")
    return data


@dataclass(frozen=True)
class ClientId:
    duid: bytes


@dataclass(frozen=True)
class ServerId:
    duid: bytes


@dataclass(frozen=True)
class StatusCode:
    code: int
    message: str = ""


@dataclass(frozen=True)
class IaAddress:
    address: IPv6Address
    preferred: int
    valid: int
    options: tuple[Option, ...] = ()


@dataclass(frozen=True)
class IaNa:
    iaid: int
    t1: int
    t2: int
    options: tuple[Option, ...] = ()

    @property
    def addresses(self) -> tuple[IaAddress, ...]:
        return tuple(o for o in self.options if isinstance(o, IaAddress))


@dataclass(frozen=True)
class IaPrefix:
    preferred: int
    valid: int
    prefix_length: int
    prefix: IPv6Address
    options: tuple[Option, ...] = ()


@dataclass(frozen=True)
class IaPd:
    """Identity association for prefix delegation (RFC 8415 21.21)."""

    iaid: int
    t1: int
    t2: int
    options: tuple[Option, ...] = ()

    @property
    def prefixes(self) -> tuple[IaPrefix, ...]:
        return tuple(o for o in self.options if isinstance(o, IaPrefix))


@dataclass(frozen=True)
class InterfaceId:
    """Set by a relay agent (18); the server echoes it in the Relay-reply."""

    data: bytes


@dataclass(frozen=True)
class RelayMsg:
    """Option 9: the message a relay agent forwards (or the server's answer)."""

    message: Message | RelayMessage


@dataclass(frozen=True)
class OptionRequest:
    codes: tuple[int, ...]


@dataclass(frozen=True)
class ElapsedTime:
    hundredths: int


@dataclass(frozen=True)
class RapidCommit:
    pass


@dataclass(frozen=True)
class UserClass:
    items: tuple[bytes, ...]


@dataclass(frozen=True)
class VendorClass:
    enterprise: int
    items: tuple[bytes, ...]


@dataclass(frozen=True)
class VendorOpts:
    enterprise: int
    options: tuple[tuple[int, bytes], ...]


@dataclass(frozen=True)
class DnsServers:
    addresses: tuple[IPv6Address, ...]


@dataclass(frozen=True)
class BootFileUrl:
    url: str


@dataclass(frozen=True)
class BootFileParam:
    params: tuple[str, ...]


@dataclass(frozen=True)
class ClientArch:
    types: tuple[int, ...]


@dataclass(frozen=True)
class Nii:
    type: int
    major: int
    minor: int


@dataclass(frozen=True)
class ClientLinkLayer:
    """Option 79 (RFC 6939): the client's link-layer address as its first relay saw it;
    `hw_type` is the IANA hardware type (1: Ethernet)."""

    hw_type: int
    address: bytes

    @property
    def mac(self) -> str | None:
        """The Ethernet MAC (``52:54:00:...``), or None for another kind of link."""
        if self.hw_type != HW_ETHERNET or len(self.address) != 6:
            return None
        return self.address.hex(":")


@dataclass(frozen=True)
class RawOption:
    code: int
    data: bytes


Option = (
    ClientId
    | ServerId
    | IaNa
    | IaAddress
    | IaPd
    | IaPrefix
    | InterfaceId
    | RelayMsg
    | StatusCode
    | OptionRequest
    | ElapsedTime
    | RapidCommit
    | UserClass
    | VendorClass
    | VendorOpts
    | DnsServers
    | BootFileUrl
    | BootFileParam
    | ClientArch
    | Nii
    | ClientLinkLayer
    | RawOption
)


_T = TypeVar("_T")


class _OptionLookup:
    """Finding options in a message's top-level option list."""

    options: tuple[Option, ...]

    def first(self, kind: type[_T]) -> _T | None:
        """The first top-level option of a type (RFC 8415: most appear once)."""
        for opt in self.options:
            if isinstance(opt, kind):
                return opt
        return None

    def all(self, kind: type[_T]) -> tuple[_T, ...]:
        return tuple(o for o in self.options if isinstance(o, kind))


@dataclass(frozen=True)
class Message(_OptionLookup):
    msg_type: int
    transaction_id: int
    options: tuple[Option, ...] = ()


@dataclass(frozen=True)
class RelayMessage(_OptionLookup):
    """Relay-forward (12) or Relay-reply (13), RFC 8415 section 9."""

    msg_type: int
    hop_count: int
    link_address: IPv6Address
    peer_address: IPv6Address
    options: tuple[Option, ...] = ()


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise PacketError(f"{what} is not UTF-8") from None


def _len_items(data: bytes, what: str) -> tuple[bytes, ...]:
    """The `2-octet length + bytes` lists of user class, vendor class and 60."""
    items: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise PacketError(f"truncated {what} item length")
        (size,) = struct.unpack_from("!H", data, pos)
        pos += 2
        if pos + size > len(data):
            raise PacketError(f"{what} item overruns its option")
        items.append(data[pos : pos + size])
        pos += size
    return tuple(items)


def _pack_items(items: tuple[bytes, ...]) -> bytes:
    return b"".join(struct.pack("!H", len(i)) + i for i in items)


def _fixed(data: bytes, size: int, what: str) -> None:
    if len(data) != size:
        raise PacketError(f"{what} option of {len(data)} bytes, expected {size}")


def _decode_one(code: int, data: bytes, depth: int, relays: int) -> Option:
    if code == Opt.CLIENTID:
        return ClientId(_duid(data, "client"))
    if code == Opt.SERVERID:
        return ServerId(_duid(data, "server"))
    if code == Opt.IA_NA:
        if len(data) < 12:
            raise PacketError("truncated IA_NA")
        iaid, t1, t2 = struct.unpack_from("!III", data)
        return IaNa(iaid, t1, t2, _options(data[12:], depth + 1, relays))
    if code == Opt.IAADDR:
        if len(data) < 24:
            raise PacketError("truncated IA address")
        preferred, valid = struct.unpack_from("!II", data, 16)
        return IaAddress(
            IPv6Address(data[:16]), preferred, valid, _options(data[24:], depth + 1, relays)
        )
    if code == Opt.IA_PD:
        if len(data) < 12:
            raise PacketError("truncated IA_PD")
        iaid, t1, t2 = struct.unpack_from("!III", data)
        return IaPd(iaid, t1, t2, _options(data[12:], depth + 1, relays))
    if code == Opt.IAPREFIX:
        if len(data) < 25:
            raise PacketError("truncated IA prefix")
        preferred, valid, length = struct.unpack_from("!IIB", data)
        if length > 128:
            raise PacketError(f"IA prefix length {length}")
        prefix = IPv6Address(data[9:25])
        return IaPrefix(preferred, valid, length, prefix, _options(data[25:], depth + 1, relays))
    if code == Opt.RELAY_MSG:
        return RelayMsg(_message(data, relays))
    if code == Opt.INTERFACE_ID:
        return InterfaceId(data)
    if code == Opt.STATUS_CODE:
        if len(data) < 2:
            raise PacketError("truncated status code")
        return StatusCode(struct.unpack_from("!H", data)[0], _text(data[2:], "status message"))
    if code == Opt.ORO:
        if len(data) % 2:
            raise PacketError("odd option request length")
        return OptionRequest(struct.unpack(f"!{len(data) // 2}H", data))
    if code == Opt.ELAPSED_TIME:
        _fixed(data, 2, "elapsed time")
        return ElapsedTime(struct.unpack("!H", data)[0])
    if code == Opt.RAPID_COMMIT:
        _fixed(data, 0, "rapid commit")
        return RapidCommit()
    if code == Opt.USER_CLASS:
        return UserClass(_len_items(data, "user class"))
    if code == Opt.VENDOR_CLASS:
        if len(data) < 4:
            raise PacketError("truncated vendor class")
        return VendorClass(struct.unpack_from("!I", data)[0], _len_items(data[4:], "vendor class"))
    if code == Opt.VENDOR_OPTS:
        if len(data) < 4:
            raise PacketError("truncated vendor options")
        raw = decode_raw(data[4:])
        return VendorOpts(struct.unpack_from("!I", data)[0], raw)
    if code == Opt.DNS_SERVERS:
        if len(data) % 16:
            raise PacketError("DNS server list not a multiple of 16 bytes")
        return DnsServers(tuple(IPv6Address(data[i : i + 16]) for i in range(0, len(data), 16)))
    if code == Opt.BOOTFILE_URL:
        return BootFileUrl(_text(data, "boot file URL"))
    if code == Opt.BOOTFILE_PARAM:
        return BootFileParam(tuple(_text(i, "boot file parameter") for i in _len_items(data, "60")))
    if code == Opt.CLIENT_ARCH_TYPE:
        if not data or len(data) % 2:
            raise PacketError("client architecture list of odd or zero length")
        return ClientArch(struct.unpack(f"!{len(data) // 2}H", data))
    if code == Opt.NII:
        _fixed(data, 3, "network interface identifier")
        return Nii(data[0], data[1], data[2])
    if code == Opt.CLIENT_LINKLAYER_ADDR and 3 <= len(data) <= 2 + MAX_LINK_ADDRESS:
        return ClientLinkLayer(struct.unpack_from("!H", data)[0], data[2:])
    return RawOption(code, data)  # a malformed 79 too: kept as bytes, never trusted


def decode_raw(data: bytes) -> tuple[tuple[int, bytes], ...]:
    """The `code, length, data` runs of an option area, undecoded."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise PacketError("truncated option header")
        code, size = struct.unpack_from("!HH", data, pos)
        pos += 4
        if pos + size > len(data):
            raise PacketError(f"option {code} overruns the message")
        out.append((code, data[pos : pos + size]))
        pos += size
    return tuple(out)


def _options(data: bytes, depth: int, relays: int) -> tuple[Option, ...]:
    if depth > MAX_OPTION_DEPTH:
        raise PacketError(f"options nested more than {MAX_OPTION_DEPTH} deep")
    return tuple(_decode_one(code, body, depth, relays) for code, body in decode_raw(data))


def decode_options(data: bytes) -> tuple[Option, ...]:
    return _options(data, 1, 0)


def _message(data: bytes, relays: int) -> Message | RelayMessage:
    if len(data) < 4:
        raise PacketError(f"datagram of {len(data)} bytes is too short for DHCPv6")
    msg_type = data[0]
    if msg_type in (MsgType.RELAY_FORW, MsgType.RELAY_REPL):
        if relays >= MAX_RELAYS:
            raise PacketError(f"relay messages nested more than {MAX_RELAYS} deep")
        if len(data) < RELAY_HEADER:
            raise PacketError(f"relay message of {len(data)} bytes")
        link, peer = IPv6Address(data[2:18]), IPv6Address(data[18:34])
        options = _options(data[RELAY_HEADER:], 1, relays + 1)
        if not any(isinstance(o, RelayMsg) for o in options):
            raise PacketError("relay message without a relay message option")
        return RelayMessage(msg_type, data[1], link, peer, options)
    xid = int.from_bytes(data[1:4], "big")
    return Message(msg_type, xid, _options(data[4:], 1, relays))


def decode(data: bytes) -> Message:
    """A client or server message; relay messages raise `PacketError` (`decode_any`)."""
    msg = _message(data, 0)
    if isinstance(msg, RelayMessage):
        raise PacketError("a relay message where a client or server message was expected")
    return msg


def decode_any(data: bytes) -> Message | RelayMessage:
    """Any DHCPv6 message, relay messages included (nested at most `MAX_RELAYS`)."""
    return _message(data, 0)


def _body(opt: Option) -> tuple[int, bytes]:
    if isinstance(opt, ClientId):
        return Opt.CLIENTID, opt.duid
    if isinstance(opt, ServerId):
        return Opt.SERVERID, opt.duid
    if isinstance(opt, IaNa):
        return Opt.IA_NA, struct.pack("!III", opt.iaid, opt.t1, opt.t2) + encode_options(
            opt.options
        )
    if isinstance(opt, IaAddress):
        head = opt.address.packed + struct.pack("!II", opt.preferred, opt.valid)
        return Opt.IAADDR, head + encode_options(opt.options)
    if isinstance(opt, IaPd):
        head = struct.pack("!III", opt.iaid, opt.t1, opt.t2)
        return Opt.IA_PD, head + encode_options(opt.options)
    if isinstance(opt, IaPrefix):
        head = struct.pack("!IIB", opt.preferred, opt.valid, opt.prefix_length)
        return Opt.IAPREFIX, head + opt.prefix.packed + encode_options(opt.options)
    if isinstance(opt, RelayMsg):
        return Opt.RELAY_MSG, encode(opt.message)
    if isinstance(opt, InterfaceId):
        return Opt.INTERFACE_ID, opt.data
    if isinstance(opt, StatusCode):
        return Opt.STATUS_CODE, struct.pack("!H", opt.code) + opt.message.encode()
    if isinstance(opt, OptionRequest):
        return Opt.ORO, struct.pack(f"!{len(opt.codes)}H", *opt.codes)
    if isinstance(opt, ElapsedTime):
        return Opt.ELAPSED_TIME, struct.pack("!H", opt.hundredths)
    if isinstance(opt, RapidCommit):
        return Opt.RAPID_COMMIT, b""
    if isinstance(opt, UserClass):
        return Opt.USER_CLASS, _pack_items(opt.items)
    if isinstance(opt, VendorClass):
        return Opt.VENDOR_CLASS, struct.pack("!I", opt.enterprise) + _pack_items(opt.items)
    if isinstance(opt, VendorOpts):
        inner = b"".join(struct.pack("!HH", c, len(d)) + d for c, d in opt.options)
        return Opt.VENDOR_OPTS, struct.pack("!I", opt.enterprise) + inner
    if isinstance(opt, DnsServers):
        return Opt.DNS_SERVERS, b"".join(a.packed for a in opt.addresses)
    if isinstance(opt, BootFileUrl):
        return Opt.BOOTFILE_URL, opt.url.encode()
    if isinstance(opt, BootFileParam):
        return Opt.BOOTFILE_PARAM, _pack_items(tuple(p.encode() for p in opt.params))
    if isinstance(opt, ClientArch):
        return Opt.CLIENT_ARCH_TYPE, struct.pack(f"!{len(opt.types)}H", *opt.types)
    if isinstance(opt, Nii):
        return Opt.NII, bytes((opt.type, opt.major, opt.minor))
    if isinstance(opt, ClientLinkLayer):
        return Opt.CLIENT_LINKLAYER_ADDR, struct.pack("!H", opt.hw_type) + opt.address
    return opt.code, opt.data


def encode_options(options: tuple[Option, ...]) -> bytes:
    parts = []
    for opt in options:
        code, body = _body(opt)
        if len(body) > 0xFFFF:
            raise ValueError(f"option {code} is {len(body)} bytes, more than 65535")
        parts.append(struct.pack("!HH", code, len(body)) + body)
    return b"".join(parts)


def encode(msg: Message | RelayMessage) -> bytes:
    if isinstance(msg, RelayMessage):
        head = bytes((msg.msg_type, msg.hop_count)) + msg.link_address.packed
        return head + msg.peer_address.packed + encode_options(msg.options)
    return (
        bytes((msg.msg_type,)) + msg.transaction_id.to_bytes(3, "big") + encode_options(msg.options)
    )
