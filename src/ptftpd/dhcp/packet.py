"""BOOTP/DHCP message codec (RFC 951, 1497, 2131, 2132, 3396), shared by dhcpd, bootpd
and the PXE proxy.

Sans-IO: `decode(bytes) -> Message` and `encode(Message) -> bytes`. Every way a datagram
can be malformed surfaces as `PacketError` and nothing else, so a server can drop the
packet with one log line and keep serving.

Options are kept as an ordered `dict[int, bytes]`: multiple instances of one code in the
options field, the `file` field and the `sname` field (overload, option 52) are joined
in that order (RFC 3396), and on encoding a value longer than 255 bytes is split into
consecutive instances. Options that do not fit the client's maximum message size (57)
spill into `file` and `sname` when those are unused; the ones RFC 2131 and the echo
RFCs require are placed first and never left out (see `encode`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from ptftpd.dhcp.options import MessageType, Opt, arch_name

__all__ = [
    "BOOTREPLY",
    "BOOTREQUEST",
    "MAGIC_COOKIE",
    "Message",
    "PacketError",
    "decode",
    "encode",
]

BOOTREQUEST = 1
BOOTREPLY = 2
MAGIC_COOKIE = b"\x63\x82\x53\x63"
BROADCAST_FLAG = 0x8000
HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
HEADER_LEN = HEADER.size  # 236
MIN_REPLY_LEN = 300  # RFC 1542 2.1: some BOOTP relays and ROMs drop anything shorter
DEFAULT_MAX_SIZE = 576  # RFC 2131: what every client must accept (IP datagram)
IP_UDP_HEADERS = 28
ZERO_IP = IPv4Address(0)
# Pad, overload (computed here), message type (always first) and end are not copied.
_NOT_PACKED = frozenset({0, 52, 53, 255})


class PacketError(ValueError):
    """The datagram is not a BOOTP/DHCP message we can read."""


@dataclass
class Message:
    op: int = BOOTREQUEST
    htype: int = 1
    hlen: int = 6
    hops: int = 0
    xid: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: IPv4Address = ZERO_IP
    yiaddr: IPv4Address = ZERO_IP
    siaddr: IPv4Address = ZERO_IP
    giaddr: IPv4Address = ZERO_IP
    chaddr: bytes = b"\x00" * 16
    sname: bytes = b""
    file: bytes = b""
    options: dict[int, bytes] = field(default_factory=dict)
    # False for plain RFC 951 BOOTP: a vendor area without the RFC 1048 magic cookie
    # (empty, zeros, or another vendor's format), so no options either.
    cookie: bool = True
    # Size of the vendor area as received: a BOOTP reply must fit the client's (RFC 951
    # clients have 64 bytes). Not part of the message's identity.
    vend_size: int = field(default=0, compare=False)

    # -- typed views used by the servers and the boot policy hook -----------------

    @property
    def message_type(self) -> MessageType | None:
        raw = self.options.get(Opt.MESSAGE_TYPE)
        if raw is None or len(raw) != 1:
            return None
        try:
            return MessageType(raw[0])
        except ValueError:
            return None

    @property
    def is_bootp(self) -> bool:
        """Plain BOOTP: no DHCP message type at all."""
        return Opt.MESSAGE_TYPE not in self.options

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & BROADCAST_FLAG)

    @property
    def mac(self) -> bytes:
        return self.chaddr[: min(self.hlen, 16)]

    @property
    def mac_str(self) -> str:
        return self.mac.hex(":")

    @property
    def client_key(self) -> bytes:
        """What leases are bound to: option 61 when sent, else hardware type + MAC."""
        cid = self.options.get(Opt.CLIENT_ID)
        if cid:
            return b"id:" + cid
        return b"hw:" + bytes([self.htype & 0xFF]) + self.mac

    def _ip(self, code: int) -> IPv4Address | None:
        raw = self.options.get(code)
        return IPv4Address(raw) if raw is not None and len(raw) == 4 else None

    @property
    def requested_ip(self) -> IPv4Address | None:
        return self._ip(Opt.REQUESTED_IP)

    @property
    def server_id(self) -> IPv4Address | None:
        return self._ip(Opt.SERVER_ID)

    def _text(self, code: int) -> str | None:
        raw = self.options.get(code)
        if raw is None:
            return None
        return raw.rstrip(b"\x00").decode("utf-8", "replace")

    @property
    def hostname(self) -> str | None:
        return self._text(Opt.HOSTNAME)

    @property
    def vendor_class(self) -> str | None:
        return self._text(Opt.VENDOR_CLASS)

    @property
    def user_class(self) -> bytes | None:
        """Raw option 77: iPXE sends the bare string `iPXE`, RFC 3004 clients a
        length-prefixed list; `has_user_class` understands both."""
        return self.options.get(Opt.USER_CLASS)

    def has_user_class(self, name: str) -> bool:
        raw = self.user_class
        if raw is None:
            return False
        want = name.encode()
        if raw == want:
            return True
        i = 0
        while i < len(raw):
            n = raw[i]
            if raw[i + 1 : i + 1 + n] == want:
                return True
            i += 1 + n
        return False

    @property
    def architectures(self) -> list[int]:
        raw = self.options.get(Opt.CLIENT_ARCH, b"")
        return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw) - 1, 2)]

    @property
    def arch(self) -> int | None:
        archs = self.architectures
        return archs[0] if archs else None

    @property
    def arch_label(self) -> str | None:
        return None if self.arch is None else arch_name(self.arch)

    @property
    def is_pxe(self) -> bool:
        return (self.vendor_class or "").startswith("PXEClient")

    @property
    def parameter_list(self) -> list[int] | None:
        raw = self.options.get(Opt.PARAMETER_LIST)
        return None if raw is None else list(raw)

    @property
    def max_message_size(self) -> int:
        raw = self.options.get(Opt.MAX_MESSAGE_SIZE)
        if raw is None or len(raw) != 2:
            return DEFAULT_MAX_SIZE
        return max(DEFAULT_MAX_SIZE, int.from_bytes(raw, "big"))

    @property
    def sname_str(self) -> str:
        return self.sname.split(b"\x00", 1)[0].decode("utf-8", "replace")

    @property
    def file_str(self) -> str:
        return self.file.split(b"\x00", 1)[0].decode("utf-8", "replace")


# -- decoding ----------------------------------------------------------------------


def _parse_options(area: bytes, where: str, into: dict[int, bytearray], order: list[int]) -> None:
    i, n = 0, len(area)
    while i < n:
        code = area[i]
        if code == Opt.PAD:
            i += 1
            continue
        if code == Opt.END:
            return
        if i + 1 >= n:
            raise PacketError(f"option {code} in {where} has no length byte")
        length = area[i + 1]
        end = i + 2 + length
        if end > n:
            raise PacketError(f"option {code} in {where} runs past the end ({length} bytes)")
        if code not in into:
            into[code] = bytearray()
            order.append(code)
        into[code] += area[i + 2 : end]
        i = end


def decode(data: bytes) -> Message:
    """Parse one datagram; raises `PacketError` for anything malformed."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PacketError("not bytes")
    data = bytes(data)
    if len(data) < HEADER_LEN:
        raise PacketError(f"truncated header: {len(data)} bytes")
    (op, htype, hlen, hops, xid, secs, flags, ci, yi, si, gi, chaddr, sname, file) = (
        HEADER.unpack_from(data)
    )
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise PacketError(f"bad op {op}")
    if hlen > 16:
        raise PacketError(f"bad hardware address length {hlen}")
    msg = Message(
        op=op,
        htype=htype,
        hlen=hlen,
        hops=hops,
        xid=xid,
        secs=secs,
        flags=flags,
        ciaddr=IPv4Address(ci),
        yiaddr=IPv4Address(yi),
        siaddr=IPv4Address(si),
        giaddr=IPv4Address(gi),
        chaddr=chaddr,
        sname=sname,
        file=file,
    )
    vend = data[HEADER_LEN:]
    msg.vend_size = len(vend)
    if vend[:4] != MAGIC_COOKIE:
        # RFC 951 leaves the vendor area's format to the vendor: without the RFC 1048
        # cookie it is plain BOOTP (answered from the fixed fields), not an error.
        msg.cookie = False
        return msg
    into: dict[int, bytearray] = {}
    order: list[int] = []
    _parse_options(vend[4:], "options", into, order)
    overload_raw = into.get(Opt.OVERLOAD)
    if overload_raw is not None:
        if len(overload_raw) != 1 or overload_raw[0] not in (1, 2, 3):
            raise PacketError(f"bad overload option {bytes(overload_raw)!r}")
        overload = overload_raw[0]
        # RFC 2131 4.1: options, then file, then sname. A 52 inside either field would
        # make the fields point at each other; refuse instead of looping.
        for bit, name, area in ((1, "file", file), (2, "sname", sname)):
            if overload & bit:
                before = len(into[Opt.OVERLOAD])
                _parse_options(area, name, into, order)
                if len(into[Opt.OVERLOAD]) != before:
                    raise PacketError(f"overload option inside {name}: loop")
        if overload & 1:
            msg.file = b""
        if overload & 2:
            msg.sname = b""
        del into[Opt.OVERLOAD]
        order.remove(Opt.OVERLOAD)
    msg.options = {code: bytes(into[code]) for code in order}
    return msg


# -- encoding ----------------------------------------------------------------------


def _pack_option(code: int, value: bytes) -> bytes:
    if len(value) <= 255:
        return bytes((code, len(value))) + value
    out = bytearray()
    for i in range(0, len(value), 255):
        chunk = value[i : i + 255]
        out += bytes([code, len(chunk)]) + chunk
    return bytes(out)


# Never left out to make room: RFC 2131 table 3 (53 and 54 in OFFER, ACK and NAK, 51 in
# OFFER and ACK) and the echoes other RFCs make a MUST: client identifier (RFC 6842),
# subnet selection (RFC 3011), relay agent information (RFC 3046); and a PXE reply's
# vendor class "PXEClient" (PXE 2.1, 2.2.4: a firmware ignores an offer without it,
# so a proxy offer that loses it to a long client identifier is no offer at all). A
# reply that cannot hold them is not sent (`PacketError`), rather than sent broken.
REQUIRED = (53, 54, 51, 61, 118, 82, 60)
# Next, what makes the address usable: mask, router, renewal and rebinding times.
PRIORITY = (1, 3, 58, 59)


@dataclass
class _Area:
    room: int  # bytes for options, one kept for END
    items: list[tuple[int, bytes]] = field(default_factory=list)

    def take(self, index: int, packed: bytes) -> bool:
        if len(packed) > self.room - 1:
            return False
        self.items.append((index, packed))
        self.room -= len(packed)
        return True

    def emit(self) -> bytes:
        # Message type first (RFC 2131 hint), relay agent information last (RFC 3046
        # 2.2), the rest in the reply's order (option 55's, when the client sent one).
        def key(item: tuple[int, bytes]) -> tuple[int, int]:
            code = item[1][0]
            return (0 if code == 53 else 2 if code == 82 else 1, item[0])

        return b"".join(packed for _, packed in sorted(self.items, key=key))


def _place(items: list[tuple[int, bytes, bool]], areas: list[_Area]) -> tuple[list[_Area], bool]:
    """First fit, most important first; an optional option that fits nowhere is left
    out and the next one tried. Returns the areas and whether every required option
    found room."""
    for index, packed, required in items:
        if not any(area.take(index, packed) for area in areas) and required:
            return areas, False
    return areas, True


def _fits_whole(options: dict[int, bytes], room: int) -> bytes | None:
    """The options field when every option fits it (the usual reply): the same bytes
    `_place` and `_Area.emit` would give, without ranking; None when some would not
    fit, so the caller places them by importance."""
    first = last = b""
    middle: list[bytes] = []
    size = 0
    for code, value in options.items():
        if code in _NOT_PACKED and code != 53:
            continue
        n = len(value)
        packed = bytes((code, n)) + value if n <= 255 else _pack_option(code, value)
        size += len(packed)
        if code == 53:
            first = packed
        elif code == 82:
            last = packed
        else:
            middle.append(packed)
    if size > room - 1:
        return None
    return MAGIC_COOKIE + first + b"".join(middle) + last + b"\xff"


def encode(msg: Message, max_size: int | None = None) -> bytes:
    """Pack a message. `max_size` is the client's maximum DHCP message size (option 57,
    an IP datagram size). What does not fit the options field goes to `file` and
    `sname` when those are unused (option 52, RFC 2131 4.1, RFC 3396), required
    options (`REQUIRED`) placed first; optional ones that fit nowhere are left out.
    Raises `PacketError` when a required option cannot be placed."""
    sname = msg.sname[:64]
    file = msg.file[:128]
    vend: bytes | None = b""
    room = 0
    if msg.cookie:
        limit = max_size if max_size is not None else 65535
        room = max(limit - IP_UDP_HEADERS - HEADER_LEN - len(MAGIC_COOKIE), 64)
        vend = _fits_whole(msg.options, room)
    if vend is None:
        # Not everything fits the options field: place by importance (below).
        options = msg.options
        order = {code: i for i, code in enumerate(options)}
        rank = {code: i for i, code in enumerate(REQUIRED + PRIORITY)}
        codes = sorted(
            (c for c in options if c not in _NOT_PACKED or c == 53),
            key=lambda c: (rank.get(c, len(rank)), order[c]),
        )
        items = [(order[c], _pack_option(c, options[c]), c in REQUIRED) for c in codes]
        areas, ok = _place(items, [_Area(room)])
        spare: list[tuple[int, int]] = []
        if len(areas[0].items) < len(items):
            if not file.strip(b"\x00"):
                spare.append((1, 128))
            if not sname.strip(b"\x00"):
                spare.append((2, 64))
        overload = 0
        if spare:
            # Room for the overload option itself only when a field can take options:
            # with sname and file both in use (the usual PXE reply) nothing spills.
            wide, wide_ok = _place(items, [_Area(room - 3)] + [_Area(n) for _, n in spare])
            if wide_ok and (not ok or sum(len(a.items) for a in wide) > len(areas[0].items)):
                areas, ok = wide, True
                for (bit, size), area in zip(spare, wide[1:], strict=True):
                    if not area.items:
                        continue
                    overload |= bit
                    packed = (area.emit() + b"\xff").ljust(size, b"\x00")
                    if bit == 1:
                        file = packed
                    else:
                        sname = packed
        if not ok:
            raise PacketError("the reply's required options do not fit the client's size")
        main = areas[0].emit()
        if overload:
            main = bytes([Opt.OVERLOAD, 1, overload]) + main
        vend = MAGIC_COOKIE + main + b"\xff"
    header = HEADER.pack(
        msg.op,
        msg.htype,
        msg.hlen,
        msg.hops,
        msg.xid & 0xFFFFFFFF,
        msg.secs,
        msg.flags,
        msg.ciaddr.packed,
        msg.yiaddr.packed,
        msg.siaddr.packed,
        msg.giaddr.packed,
        msg.chaddr[:16].ljust(16, b"\x00"),
        sname.ljust(64, b"\x00"),
        file.ljust(128, b"\x00"),
    )
    out = header + vend
    if len(out) < MIN_REPLY_LEN:
        out = out.ljust(MIN_REPLY_LEN, b"\x00")
    return out
