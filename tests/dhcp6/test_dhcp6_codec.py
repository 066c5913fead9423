"""DHCPv6 codec: golden vectors built by hand from the RFC 8415 / RFC 5970 layouts,
hypothesis round trips of messages with random options, and malformed input."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptftpd.dhcp6.codec import (
    BootFileParam,
    BootFileUrl,
    ClientArch,
    ClientId,
    DnsServers,
    ElapsedTime,
    IaAddress,
    IaNa,
    IaPd,
    IaPrefix,
    InterfaceId,
    Message,
    MsgType,
    Nii,
    OptionRequest,
    PacketError,
    RapidCommit,
    RawOption,
    ServerId,
    StatusCode,
    UserClass,
    VendorClass,
    VendorOpts,
    decode,
    encode,
)
from ptftpd.dhcp6.duid import duid_ll, duid_llt, identity

MAC = bytes.fromhex("080027fe8f95")
# DUID-LLT: type 1, hardware type 1, time 0x1c39cf88, MAC (RFC 8415 11.2).
CLIENT_DUID = bytes.fromhex("000100011c39cf88080027fe8f95")
SERVER_DUID = bytes.fromhex("00030001525400123456")  # DUID-LL (11.4)
PXE_VENDOR = b"PXEClient:Arch:00007:UNDI:003016"

SOLICIT = (
    bytes.fromhex(
        "01"
        "a1b2c3"  # Solicit, transaction id
        "0001"
        "000e"
        "00010001"
        "1c39cf88"
        "080027fe8f95"  # client id
        "0006"
        "0008"
        "0017"
        "003b"
        "003c"
        "0010"  # ORO: 23 59 60 16
        "0008"
        "0002"
        "0000"  # elapsed time 0
        "0003"
        "000c"
        "27fe8f95"
        "00000000"
        "00000000"  # IA_NA, no addresses
        "000e"
        "0000"  # rapid commit
        "003d"
        "0002"
        "0007"  # client arch: EFI x64
        "003e"
        "0003"
        "010300"  # NII: UNDI 3.0
        "0010"
        "0026"
        "00000157"
        "0020"  # vendor class, enterprise 343, one item of 32
    )
    + PXE_VENDOR
)

REPLY = (
    bytes.fromhex(
        "07"
        "a1b2c3"
        "0002"
        "000a"
        "0003"
        "0001"
        "525400123456"  # server id, DUID-LL
        "0001"
        "000e"
        "00010001"
        "1c39cf88"
        "080027fe8f95"
        "0003"
        "0037"
        "27fe8f95"
        "00000708"
        "00000b40"  # IA_NA, T1 1800, T2 2880
        "0005"
        "0027"  # IA address (24 + nested status of 4 + 11)
        "fd000000000000000000000000000064"
        "00000e10"
        "00001c20"  # ::64, 3600, 7200
        "000d"
        "000b"
        "0000"
        "6c6561736564206f6b"  # status Success "leased ok" (9)
        "0017"
        "0010"
        "fd000000000000000000000000000035"  # DNS fd00::35
        "003b"
        "0018"
    )
    + b"tftp://[fd00::1]/ipxe.efi"[:24]
    + bytes.fromhex(
        "003c"
        "000b"
        "0004"
        "7365726c"
        "0003"
        "613d62"  # params "serl", "a=b"
        "000f"
        "0006"
        "0004"
        "69505845"  # user class "iPXE"
        "0011"
        "000c"
        "00000137"
        "0001"
        "0004"
        "deadbeef"  # vendor opts, enterprise 311
        "1234"
        "0003"
        "abcdef"  # an option nobody knows: kept raw
    )
)

REPLY_MESSAGE = Message(
    MsgType.REPLY,
    0xA1B2C3,
    (
        ServerId(SERVER_DUID),
        ClientId(CLIENT_DUID),
        IaNa(
            0x27FE8F95,
            1800,
            2880,
            (IaAddress(IPv6Address("fd00::64"), 3600, 7200, (StatusCode(0, "leased ok"),)),),
        ),
        DnsServers((IPv6Address("fd00::35"),)),
        BootFileUrl("tftp://[fd00::1]/ipxe.ef"),
        BootFileParam(("serl", "a=b")),
        UserClass((b"iPXE",)),
        VendorOpts(311, ((1, bytes.fromhex("deadbeef")),)),
        RawOption(0x1234, bytes.fromhex("abcdef")),
    ),
)


def test_golden_solicit_decodes_field_by_field() -> None:
    msg = decode(SOLICIT)
    assert msg.msg_type == MsgType.SOLICIT
    assert msg.transaction_id == 0xA1B2C3
    assert msg.options == (
        ClientId(CLIENT_DUID),
        OptionRequest((23, 59, 60, 16)),
        ElapsedTime(0),
        IaNa(0x27FE8F95, 0, 0),
        RapidCommit(),
        ClientArch((7,)),
        Nii(1, 3, 0),
        VendorClass(343, (PXE_VENDOR,)),
    )
    assert encode(msg) == SOLICIT


def test_golden_reply_with_nested_ia_and_netboot_options() -> None:
    assert encode(REPLY_MESSAGE) == REPLY
    assert decode(REPLY) == REPLY_MESSAGE
    ia = REPLY_MESSAGE.first(IaNa)
    assert ia is not None and ia.addresses[0].address == IPv6Address("fd00::64")


def test_duid_builders_follow_rfc_layouts() -> None:
    assert duid_ll(bytes.fromhex("525400123456")) == SERVER_DUID
    # DUID-LLT time counts seconds since 2000-01-01 UTC (946684800 in Unix time).
    assert duid_llt(MAC, 946684800 + 0x1C39CF88) == CLIENT_DUID



def test_a_duid_names_its_machine_by_mac_or_uuid_only_when_well_formed() -> None:
    assert identity(CLIENT_DUID) == ("08:00:27:fe:8f:95", None)
    assert identity(SERVER_DUID) == ("52:54:00:12:34:56", None)
    uuid = bytes(range(16))
    assert identity(b"\x00\x04" + uuid) == (None, uuid.hex())
    assert identity(b"\x00\x04" + uuid[:15]) == (None, None)  # RFC 6355: 16 octets
    assert identity(b"\x00\x03\x00\x06" + bytes(6)) == (None, None)  # not Ethernet
    assert identity(SERVER_DUID[:-1]) == (None, None)  # a 5-octet "MAC"
    assert identity(b"\x00\x02\x00\x00\x01\x37abc") == (None, None)  # DUID-EN
    assert identity(b"\x00") == (None, None)

# -- hypothesis round trips ------------------------------------------------------------

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
duids = st.binary(min_size=3, max_size=130)
addresses = st.integers(0, 2**128 - 1).map(IPv6Address)
texts = st.text(max_size=40)
items = st.lists(st.binary(max_size=30), max_size=4).map(tuple)
status = st.builds(StatusCode, u16, texts)
ia_address = st.builds(IaAddress, addresses, u32, u32, st.lists(status, max_size=2).map(tuple))
ia_na = st.builds(
    IaNa, u32, u32, u32, st.lists(st.one_of(ia_address, status), max_size=3).map(tuple)
)
known = {1, 2, 3, 5, 6, 8, 9, 13, 14, 15, 16, 17, 18, 23, 25, 26, 59, 60, 61, 62}
raw = st.builds(RawOption, u16.filter(lambda c: c not in known), st.binary(max_size=40))
ia_prefix = st.builds(
    IaPrefix, u32, u32, st.integers(0, 128), addresses, st.lists(status, max_size=2).map(tuple)
)
ia_pd = st.builds(
    IaPd, u32, u32, u32, st.lists(st.one_of(ia_prefix, status), max_size=3).map(tuple)
)
options = st.one_of(
    st.builds(ClientId, duids),
    ia_pd,
    ia_prefix,
    st.builds(InterfaceId, st.binary(max_size=20)),
    st.builds(ServerId, duids),
    ia_na,
    ia_address,
    status,
    st.builds(OptionRequest, st.lists(u16, max_size=8).map(tuple)),
    st.builds(ElapsedTime, u16),
    st.just(RapidCommit()),
    st.builds(UserClass, items),
    st.builds(VendorClass, u32, items),
    st.builds(
        VendorOpts, u32, st.lists(st.tuples(u16, st.binary(max_size=12)), max_size=3).map(tuple)
    ),
    st.builds(DnsServers, st.lists(addresses, max_size=3).map(tuple)),
    st.builds(BootFileUrl, texts),
    st.builds(BootFileParam, st.lists(texts, max_size=3).map(tuple)),
    st.builds(ClientArch, st.lists(u16, min_size=1, max_size=4).map(tuple)),
    st.builds(Nii, st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)),
    raw,
)
msg_types = st.sampled_from([t for t in range(256) if t not in (12, 13)])
messages = st.builds(
    Message, msg_types, st.integers(0, 0xFFFFFF), st.lists(options, max_size=8).map(tuple)
)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_round_trip_random_messages(msg: Message) -> None:
    wire = encode(msg)
    assert decode(wire) == msg
    assert encode(decode(wire)) == wire


@settings(max_examples=300, deadline=None)
@given(messages, st.data())
def test_truncated_or_corrupted_messages_raise_only_packet_error(
    msg: Message, data: st.DataObject
) -> None:
    wire = encode(msg)
    cut = data.draw(st.integers(0, len(wire)))
    blobs = [wire[:cut]]
    if wire:
        pos = data.draw(st.integers(0, len(wire) - 1))
        blobs.append(wire[:pos] + bytes([data.draw(st.integers(0, 255))]) + wire[pos + 1 :])
    for blob in blobs:
        try:
            decoded = decode(blob)
        except PacketError:
            continue
        assert isinstance(decoded, Message)


MALFORMED = {
    "empty": b"",
    "short header": b"\x01\xaa\xbb",
    "truncated option header": bytes.fromhex("010000010001"),
    "option overruns message": bytes.fromhex("0100000100010010000300"),
    "client id too short": bytes.fromhex("01000001000100020003"),
    "odd ORO": bytes.fromhex("0100000100060003001700"),
    "elapsed time of 3 bytes": bytes.fromhex("0100000100080003000000"),
    "rapid commit with data": bytes.fromhex("01000001000e000100"),
    "IA_NA of 11 bytes": bytes.fromhex("010000010003000b" + "00" * 11),
    "IA address inside IA_NA truncated": bytes.fromhex(
        "0100000100030014" + "00" * 12 + "00050004fd000000"
    ),
    "status inside IA address overruns": bytes.fromhex(
        "0100000100030024" + "00" * 12 + "00050014" + "00" * 16 + "000d00090000"
    ),
    "status message not UTF-8": bytes.fromhex("07000001000d00030000ff"),
    "vendor class item overruns": bytes.fromhex("0100000100100006000001570009"),
    "user class truncated length": bytes.fromhex("01000001000f000100"),
    "DNS list of 15 bytes": bytes.fromhex("070000010017000f" + "00" * 15),
    "client arch empty": bytes.fromhex("01000001003d0000"),
    "NII of 2 bytes": bytes.fromhex("01000001003e00020103"),
    "relay-forward": bytes.fromhex("0c00" + "00" * 32),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_packets_raise_packet_error(name: str) -> None:
    with pytest.raises(PacketError):
        decode(MALFORMED[name])
