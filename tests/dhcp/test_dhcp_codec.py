"""BOOTP/DHCP codec: golden bytes, RFC 3396 and overload, and fuzzing."""

from __future__ import annotations

from ipaddress import IPv4Address
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptftpd.dhcp import packet
from ptftpd.dhcp.options import (
    MessageType,
    Opt,
    OptionValueError,
    arch_name,
    decode_value,
    encode_value,
    option_by_name,
    pxe_vendor_options,
)
from ptftpd.dhcp.packet import MAGIC_COOKIE, REQUIRED, Message, PacketError, decode, encode

MAC = bytes.fromhex("000b8201fc42")

# The DHCPDISCOVER of the classic Wireshark sample capture, assembled field by field.
DISCOVER = (
    bytes.fromhex("01010600")  # op, htype, hlen, hops
    + bytes.fromhex("3903f326")  # xid
    + bytes.fromhex("00000000")  # secs, flags
    + bytes(16)  # ciaddr, yiaddr, siaddr, giaddr
    + MAC
    + bytes(10)
    + bytes(64 + 128)
    + MAGIC_COOKIE
    + bytes.fromhex("350101")  # 53: DISCOVER
    + bytes.fromhex("3d0701")
    + MAC  # 61: client id
    + bytes.fromhex("320400000000")  # 50: requested 0.0.0.0
    + bytes.fromhex("37040103062a")  # 55: 1 3 6 42
    + bytes.fromhex("ff")
    + bytes(7)  # pad
)

# The OFFER our encoder must produce, byte for byte.
OFFER = (
    bytes.fromhex("020106003903f32600008000")
    + bytes(4)
    + IPv4Address("192.168.0.10").packed
    + IPv4Address("192.168.0.1").packed
    + bytes(4)
    + MAC
    + bytes(10)
    + bytes(64)
    + b"pxelinux.0".ljust(128, b"\x00")
    + MAGIC_COOKIE
    + bytes.fromhex("350102")
    + bytes.fromhex("3604c0a80001")
    + bytes.fromhex("330400000e10")
    + bytes.fromhex("0104ffffff00")
    + bytes.fromhex("0304c0a80001")
    + bytes.fromhex("430a")
    + b"pxelinux.0"
    + bytes.fromhex("ff")
)


def test_golden_discover_decodes() -> None:
    msg = decode(DISCOVER)
    assert msg.op == 1 and msg.xid == 0x3903F326 and msg.mac == MAC
    assert msg.mac_str == "00:0b:82:01:fc:42"
    assert msg.message_type is MessageType.DISCOVER
    assert msg.options[Opt.CLIENT_ID] == b"\x01" + MAC
    assert msg.client_key == b"id:\x01" + MAC
    assert msg.requested_ip == IPv4Address("0.0.0.0")
    assert msg.parameter_list == [1, 3, 6, 42]
    assert not msg.broadcast and not msg.is_bootp
    assert list(msg.options) == [53, 61, 50, 55]
    assert encode(msg) == DISCOVER.ljust(300, b"\x00")


def test_golden_offer_encodes() -> None:
    msg = Message(
        op=2,
        xid=0x3903F326,
        flags=0x8000,
        yiaddr=IPv4Address("192.168.0.10"),
        siaddr=IPv4Address("192.168.0.1"),
        chaddr=MAC,
        file=b"pxelinux.0",
        options={
            Opt.MESSAGE_TYPE: b"\x02",
            Opt.SERVER_ID: IPv4Address("192.168.0.1").packed,
            Opt.LEASE_TIME: (3600).to_bytes(4, "big"),
            Opt.SUBNET_MASK: IPv4Address("255.255.255.0").packed,
            Opt.ROUTER: IPv4Address("192.168.0.1").packed,
            Opt.BOOTFILE_NAME: b"pxelinux.0",
        },
    )
    assert encode(msg) == OFFER.ljust(300, b"\x00")
    assert len(encode(msg)) == 300  # RFC 1542 minimum


def test_message_type_first_and_end_always_present() -> None:
    msg = Message(options={Opt.HOSTNAME: b"h", Opt.MESSAGE_TYPE: b"\x01"})
    data = encode(msg)
    assert data[240:243] == b"\x35\x01\x01"
    assert data[243:246] == b"\x0c\x01h" and data[246] == 0xFF


def test_long_option_split_and_joined_rfc3396() -> None:
    value = bytes(range(256)) * 2 + b"tail"
    data = encode(Message(options={Opt.MESSAGE_TYPE: b"\x05", 224: value}))
    area = data[243:]
    assert area[0] == 224 and area[1] == 255
    assert area[257] == 224 and area[258] == 255
    assert area[514] == 224 and area[515] == len(value) - 510
    assert decode(data).options[224] == value


def test_instances_joined_across_fields_in_rfc_order() -> None:
    # 52 = 3: options field, then file, then sname (RFC 2131 4.1, RFC 3396 7).
    file = bytes([224, 2]) + b"bb" + b"\xff"
    sname = bytes([224, 2]) + b"cc" + b"\xff"
    data = bytearray(encode(Message(options={Opt.MESSAGE_TYPE: b"\x01"})))
    data[44:108] = sname.ljust(64, b"\x00")
    data[108:236] = file.ljust(128, b"\x00")
    data[240:] = b"\x35\x01\x01\x34\x01\x03\xe0\x02aa\xff"
    msg = decode(bytes(data))
    assert msg.options[224] == b"aabbcc"
    assert Opt.OVERLOAD not in msg.options
    assert msg.file == b"" and msg.sname == b""


def test_overload_spill_when_options_do_not_fit() -> None:
    opts = {Opt.MESSAGE_TYPE: b"\x02"}
    for code in range(200, 215):
        opts[code] = bytes([code]) * 20  # 22 bytes each, 330 in all
    data = encode(Message(op=2, options=opts), max_size=576)
    assert len(data) <= 576 - 28
    msg = decode(data)
    assert msg.options == opts
    assert data[240:243] == bytes([52, 1, 1])  # the file field was enough
    assert data[108] != 0 and not data[44:108].strip(b"\x00")


def test_max_size_drops_from_the_end() -> None:
    opts = {Opt.MESSAGE_TYPE: b"\x02", 200: b"a" * 200, 201: b"b" * 200, 202: b"c" * 200}
    msg = decode(encode(Message(op=2, file=b"busy", sname=b"busy", options=opts), 576))
    assert msg.options[200] == b"a" * 200
    assert 202 not in msg.options


def test_a_pxe_reply_never_loses_its_vendor_class_to_a_long_client_id() -> None:
    """Found by tests/pxe/test_pxe_fuzz.py: a proxy OFFER echoing a 255-byte client id
    (file and sname in use, 576-byte client) dropped option 60, and a PXE firmware
    ignores an offer without "PXEClient"."""
    opts = {
        Opt.MESSAGE_TYPE: b"\x02",
        Opt.SERVER_ID: bytes(4),
        Opt.CLIENT_ID: bytes(255),
        Opt.CLIENT_UUID: bytes(17),
        43: b"\x06\x01\x08" + bytes(14) + b"\xff",
        Opt.VENDOR_CLASS: b"PXEClient",
    }
    reply = Message(op=2, file=b"pxelinux.0", sname=b"boot", options=opts)
    msg = decode(encode(reply, 576))
    assert msg.options[Opt.VENDOR_CLASS] == b"PXEClient"
    assert msg.options[Opt.CLIENT_ID] == bytes(255)


def test_bootp_without_cookie_round_trips() -> None:
    msg = Message(xid=7, chaddr=MAC, cookie=False)
    data = encode(msg)
    assert len(data) == 300 and data[236:240] == bytes(4)
    back = decode(data)
    assert back.is_bootp and not back.cookie and back.options == {}


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "truncated"),
        (DISCOVER[:235], "truncated"),
        (DISCOVER[:240] + b"\x35\x05\x01", "past the end"),
        (DISCOVER[:240] + b"\x35", "no length"),
        (DISCOVER[:240] + b"\x34\x01\x07\xff", "overload"),
        (bytes([9]) + DISCOVER[1:], "op"),
        (DISCOVER[:2] + b"\x11" + DISCOVER[3:], "hardware address length"),
    ],
)
def test_malformed_raise_packet_error(data: bytes, why: str) -> None:
    with pytest.raises(PacketError, match=why):
        decode(data)


@pytest.mark.parametrize(
    "vend", [b"\x63\x82\x53\x64\x35\x01\x01\xff", b"\x63\x82", b"CMU\x00" + bytes(60)]
)
def test_vendor_area_without_the_cookie_is_plain_bootp(vend: bytes) -> None:
    msg = decode(DISCOVER[:236] + vend)
    assert msg.is_bootp and not msg.cookie and msg.options == {}
    assert msg.vend_size == len(vend) and msg.xid == 0x3903F326


def test_overload_loop_refused() -> None:
    data = bytearray(DISCOVER[:240] + b"\x34\x01\x01\x35\x01\x01\xff")
    data[108:112] = b"\x34\x01\x01\xff"
    with pytest.raises(PacketError, match="loop"):
        decode(bytes(data))


def test_typed_views() -> None:
    msg = Message(
        options={
            Opt.CLIENT_ARCH: b"\x00\x07\x00\x00",
            Opt.VENDOR_CLASS: b"PXEClient:Arch:00007:UNDI:003016",
            Opt.USER_CLASS: b"iPXE",
            Opt.HOSTNAME: b"node1\x00",
            Opt.MAX_MESSAGE_SIZE: (1500).to_bytes(2, "big"),
        }
    )
    assert msg.arch == 7 and msg.architectures == [7, 0] and msg.arch_label == "EFI x64"
    assert msg.is_pxe and msg.has_user_class("iPXE") and msg.hostname == "node1"
    assert msg.max_message_size == 1500
    rfc3004 = Message(options={Opt.USER_CLASS: b"\x03abc\x04iPXE"})
    assert rfc3004.has_user_class("iPXE") and not rfc3004.has_user_class("ab")
    assert Message(options={Opt.USER_CLASS: b"\x09ab"}).has_user_class("x") is False
    assert Message().client_key == b"hw:\x01" + bytes(6)
    assert arch_name(0) == "BIOS" and arch_name(4242) == "arch 4242"


def test_option_registry() -> None:
    assert encode_value(Opt.ROUTER, ["10.0.0.1", "10.0.0.2"]) == bytes([10, 0, 0, 1, 10, 0, 0, 2])
    assert encode_value(Opt.LEASE_TIME, 60) == b"\x00\x00\x00\x3c"
    assert encode_value(Opt.DOMAIN_NAME, "lab") == b"lab"
    assert encode_value(250, "01:02") == b"\x01\x02"
    assert decode_value(Opt.ROUTER, bytes([10, 0, 0, 1])) == [IPv4Address("10.0.0.1")]
    assert option_by_name("ntp_servers").code == 42
    assert option_by_name("250").code == 250
    for bad in (
        lambda: option_by_name("nope"),
        lambda: encode_value(Opt.ROUTER, "x.y"),
        lambda: encode_value(Opt.DOMAIN_NAME, 5),
        lambda: option_by_name("300"),
    ):
        with pytest.raises(OptionValueError):
            bad()


def test_pxe_vendor_options() -> None:
    assert pxe_vendor_options() == bytes([6, 1, 8, 255])
    menu = pxe_vendor_options(3, menu=[(0x8000, "boot")], prompt=(5, "Press"))
    assert menu.startswith(bytes([6, 1, 3, 9, 7, 0x80, 0, 4]) + b"boot" + bytes([10, 6, 5]))
    assert menu.endswith(b"Press\xff")


# -- property tests ---------------------------------------------------------------------

ips = st.builds(IPv4Address, st.integers(0, 2**32 - 1))
option_codes = st.integers(1, 254).filter(lambda c: c != Opt.OVERLOAD)
messages = st.builds(
    Message,
    op=st.sampled_from([1, 2]),
    htype=st.integers(0, 255),
    hlen=st.integers(0, 16),
    hops=st.integers(0, 255),
    xid=st.integers(0, 2**32 - 1),
    secs=st.integers(0, 65535),
    flags=st.integers(0, 65535),
    ciaddr=ips,
    yiaddr=ips,
    siaddr=ips,
    giaddr=ips,
    chaddr=st.binary(min_size=16, max_size=16),
    sname=st.binary(max_size=64).map(lambda b: b.ljust(64, b"\x00")),
    file=st.binary(max_size=128).map(lambda b: b.ljust(128, b"\x00")),
    options=st.dictionaries(option_codes, st.binary(max_size=600), min_size=1, max_size=12),
)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_round_trip(msg: Message) -> None:
    back = decode(encode(msg))
    assert back == msg


def packed_len(value: bytes) -> int:
    """Bytes an option takes on the wire, split into 255-byte instances (RFC 3396)."""
    return len(value) + 2 * max(1, -(-len(value) // 255))


@settings(max_examples=200, deadline=None)
@given(messages, st.integers(576, 1500))
def test_round_trip_with_max_size_keeps_the_required_and_fits_what_fits(
    msg: Message, size: int
) -> None:
    try:
        data = encode(msg, size)
    except PacketError:
        # Only when the options RFC 2131/6842/3011/3046 require cannot fit together.
        need = sum(packed_len(msg.options[c]) for c in REQUIRED if c in msg.options)
        assert need > size - 28 - 236 - 4 - 1
        return
    assert len(data) <= max(size - 28, 300)  # an IP datagram of `size` bytes
    back = decode(data)
    # Every option that came back is intact, nothing is invented, every required one
    # is there, message type first and relay agent information last in the options field.
    for code, value in back.options.items():
        assert msg.options[code] == value
    for code in REQUIRED:
        assert (code in back.options) == (code in msg.options)
    got = list(back.options)
    if 53 in got:
        assert got[0] == 53
    overloaded = back.file != msg.file or back.sname != msg.sname
    if not overloaded:
        if 82 in got:
            assert got[-1] == 82
        # Fit what fits: an option left out was larger than the room that was left.
        used = 236 + 4 + sum(packed_len(v) for v in back.options.values()) + 1
        free = size - 28 - used
        for code, value in msg.options.items():
            if code not in back.options:
                assert packed_len(value) > free


@st.composite
def wire_messages(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, bytes]]]:
    """A valid 236-byte header with random fields, the cookie and random well-formed
    options (codes 52 and pad/end aside), as bytes; plus the options as sent."""
    fields = draw(
        st.tuples(
            st.sampled_from([1, 2]),
            st.integers(0, 255),
            st.integers(0, 16),
            st.integers(0, 255),
            st.integers(0, 2**32 - 1),
            st.integers(0, 65535),
            st.integers(0, 65535),
            st.binary(min_size=16, max_size=16),
            st.binary(min_size=16, max_size=16),
            st.binary(min_size=64, max_size=64),
            st.binary(min_size=128, max_size=128),
        )
    )
    op, htype, hlen, hops, xid, secs, flags, addrs, chaddr, sname, file = fields
    header = (
        bytes([op, htype, hlen, hops])
        + xid.to_bytes(4, "big")
        + secs.to_bytes(2, "big")
        + flags.to_bytes(2, "big")
        + addrs
        + chaddr
        + sname
        + file
    )
    opts = draw(
        st.lists(
            st.tuples(st.integers(1, 254).filter(lambda c: c != 52), st.binary(max_size=40)),
            max_size=12,
        )
    )
    body = b"".join(bytes([c, len(v)]) + v for c, v in opts)
    tail = draw(st.sampled_from([b"\xff", b"\xff" + bytes(20), b""]))
    return header + MAGIC_COOKIE + body + tail, opts


@settings(max_examples=500, deadline=None)
@given(wire_messages())
def test_decode_reads_every_field_and_option_of_a_valid_datagram(
    sample: tuple[bytes, list[tuple[int, bytes]]],
) -> None:
    data, opts = sample
    msg = decode(data)
    assert (msg.op, msg.htype, msg.hlen, msg.hops) == tuple(data[:4])
    assert msg.xid == int.from_bytes(data[4:8], "big")
    assert msg.secs == int.from_bytes(data[8:10], "big")
    assert msg.flags == int.from_bytes(data[10:12], "big")
    assert msg.giaddr.packed == data[24:28] and msg.chaddr == data[28:44]
    assert msg.sname == data[44:108] and msg.file == data[108:236]
    joined: dict[int, bytes] = {}
    for code, value in opts:
        joined[code] = joined.get(code, b"") + value  # RFC 3396: instances concatenate
    assert msg.options == joined
    # And it survives a round trip through the encoder.
    again = decode(encode(msg))
    assert again.options == joined and again.xid == msg.xid


@settings(max_examples=500, deadline=None)
@given(wire_messages(), st.integers(236, 400), st.binary(max_size=8))
def test_damaged_datagrams_only_raise_packet_error(
    sample: tuple[bytes, list[tuple[int, bytes]]], cut: int, junk: bytes
) -> None:
    data = sample[0][:cut] + junk
    try:
        decode(data)
    except PacketError:
        pass


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=400), st.binary(max_size=64), st.binary(max_size=128))
def test_arbitrary_options_only_raise_packet_error(tail: bytes, sname: bytes, file: bytes) -> None:
    data = bytearray(DISCOVER[:236] + MAGIC_COOKIE + tail)
    data[44 : 44 + len(sname)] = sname
    data[108 : 108 + len(file)] = file
    try:
        msg = decode(bytes(data))
    except PacketError:
        return
    encode(msg)


@settings(max_examples=300, deadline=None)
@given(messages, st.one_of(st.none(), st.integers(576, 1500)))
def test_the_fast_path_gives_the_bytes_of_the_placement(msg: Message, size: int | None) -> None:
    """encode() skips ranking and placement when every option fits the options field
    (issue 18's engine CPU): the datagram must be the one placement would give."""
    try:
        fast: bytes | PacketError = encode(msg, size)
    except PacketError as exc:
        fast = exc
    with mock.patch.object(packet, "_fits_whole", lambda options, room: None):
        try:
            placed: bytes | PacketError = encode(msg, size)
        except PacketError as exc:
            placed = exc
    if isinstance(fast, PacketError) or isinstance(placed, PacketError):
        assert type(fast) is type(placed)
    else:
        assert fast == placed
