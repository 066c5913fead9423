"""Issue 22: the client link-layer address option (79, RFC 6939) of a Relay-forward.

The codec reads a well-formed 79 (a type and 1 to 16 octets) as `ClientLinkLayer` and
keeps any other as raw bytes (a malformed 79 is ignored, never fatal: dnsmasq's
CVE-2017-14493 was an unbounded 79); the engine hands the innermost relay's 79 to the
boot policy, and pxed's decisions take the MAC from it when the DUID names none: the
inventory matches it and the decision API is asked for it. A hypothesis case builds
valid Relay-forward chains with random option 79 fields and sends them through the
real engine, pxed's DHCPv6 policy and its decision chain."""

from __future__ import annotations

import struct
from datetime import timedelta
from ipaddress import IPv6Address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_dhcp6_engine import PREFIX, SERVER, T0, make_engine

from ptftpd.dhcp6.boot import BootChoice6, BootRequest6
from ptftpd.dhcp6.codec import (
    MAX_LINK_ADDRESS,
    BootFileUrl,
    ClientId,
    ClientLinkLayer,
    ElapsedTime,
    IaNa,
    Message,
    MsgType,
    Option,
    OptionRequest,
    RawOption,
    RelayMessage,
    RelayMsg,
    decode,
    decode_any,
    encode,
)
from ptftpd.dhcp6.engine import Dhcp6Engine, Outgoing
from ptftpd.pxe.decision import Decision, Kind, MachineFacts, Source
from ptftpd.pxe.firmware import BootFiles
from ptftpd.pxe.inventory import inventory_from
from ptftpd.pxe.ipv6 import Pxe6Policy
from ptftpd.pxe.machines import Machines

MAC = "52:54:00:22:79:01"
DUID_EN = bytes.fromhex("000200000009") + b"machine-7"  # no MAC, no UUID in it
RELAY_PEER = IPv6Address("fe80::5054:ff:fe22:7901")
FUZZ = settings(
    max_examples=200,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow],
)


def solicit(duid: bytes = DUID_EN) -> Message:
    oro = OptionRequest((59,))  # a netboot client asks for boot-file-url
    return Message(MsgType.SOLICIT, 0x79, (ClientId(duid), ElapsedTime(0), IaNa(1, 0, 0), oro))


def relayed(inner: Message | RelayMessage, *options: Option, hops: int = 0) -> RelayMessage:
    options = (*options, RelayMsg(inner))
    return RelayMessage(MsgType.RELAY_FORW, hops, PREFIX[1], RELAY_PEER, options)


def option79(hw_type: int, address: bytes) -> RawOption:
    return RawOption(79, struct.pack("!H", hw_type) + address)


def pxe_engine(machines: Machines) -> Dhcp6Engine:
    policy = Pxe6Policy(BootFiles("table.efi"), SERVER, None, None, machines)
    return make_engine(boot_policy=policy)


def boot_url(out: list[Outgoing], hops: int = 1) -> str | None:
    assert len(out) == 1
    packet = decode_any(out[0].payload)
    for _ in range(hops):
        assert isinstance(packet, RelayMessage) and packet.msg_type == MsgType.RELAY_REPL
        inner = packet.first(RelayMsg)
        assert inner is not None
        packet = inner.message
    assert isinstance(packet, Message)
    url = packet.first(BootFileUrl)
    return None if url is None else url.url


def inventory_machines() -> Machines:
    inventory = inventory_from(
        {
            "machine": [{"mac": MAC, "profile": "seen"}],
            "profile": {"seen": {"bootfile": {"default": "by-mac.efi"}}},
        }
    )
    return Machines(inventory)


def test_option_79_decodes_and_round_trips() -> None:
    mac = bytes.fromhex(MAC.replace(":", ""))
    data = encode(relayed(solicit(), ClientLinkLayer(1, mac)))
    packet = decode_any(data)
    assert isinstance(packet, RelayMessage)
    assert packet.first(ClientLinkLayer) == ClientLinkLayer(1, mac)
    assert ClientLinkLayer(1, mac).mac == MAC
    assert ClientLinkLayer(6, mac).mac is None  # not Ethernet: no MAC fact
    assert encode(packet) == data


@pytest.mark.parametrize("size", [0, 1, 2, 2 + MAX_LINK_ADDRESS + 1, 300])
def test_a_malformed_79_is_kept_raw_and_the_message_still_decodes(size: int) -> None:
    body = bytes(range(256))[:size] if size <= 256 else b"\x00\x01" + b"A" * (size - 2)
    data = encode(relayed(solicit(), RawOption(79, body)))
    packet = decode_any(data)
    assert isinstance(packet, RelayMessage)
    assert packet.first(ClientLinkLayer) is None
    assert packet.first(RawOption) == RawOption(79, body)
    # and the engine still answers the client, from pxed's table (no MAC known)
    engine = pxe_engine(inventory_machines())
    assert boot_url(engine.handle(data, ("fd00:77::2", 547), T0)) == f"tftp://[{SERVER}]/table.efi"


def test_the_mac_of_79_picks_the_inventory_entry_and_only_from_the_innermost_relay() -> None:
    mac = bytes.fromhex(MAC.replace(":", ""))
    engine = pxe_engine(inventory_machines())
    source = ("fd00:77::2", 547)
    chosen = f"tftp://[{SERVER}]/by-mac.efi"
    table = f"tftp://[{SERVER}]/table.efi"
    first = relayed(solicit(), option79(1, mac))
    assert boot_url(engine.handle(encode(first), source, T0)) == chosen
    # without 79 the DUID-EN client is nobody in particular
    assert boot_url(engine.handle(encode(relayed(solicit())), source, T0)) == table
    # two relays: the one next to the client (innermost) is the one that saw the MAC
    inner = relayed(solicit(), option79(1, mac))
    outer = relayed(inner, hops=1)
    assert boot_url(engine.handle(encode(outer), source, T0), hops=2) == chosen
    # an outer relay's 79 is not the client's
    wrong = relayed(relayed(solicit()), option79(1, mac), hops=1)
    assert boot_url(engine.handle(encode(wrong), source, T0), hops=2) == table
    # a client's own 79 (not relayed) is not trusted either
    own = Message(MsgType.SOLICIT, 1, (*solicit().options, option79(1, mac)))
    out = engine.handle(encode(own), ("fe80::1", 546), T0)
    assert decode(out[0].payload).first(BootFileUrl) == BootFileUrl(table)
    # a MAC in the DUID (DUID-LL) goes first
    ll = bytes.fromhex("00030001") + bytes.fromhex("525400227902")
    other = relayed(solicit(ll), option79(1, mac))
    assert boot_url(engine.handle(encode(other), source, T0)) == table


class AskedApi:
    """A decision source that records whom it was asked about (the API's question)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def decide(self, facts: MachineFacts, now: float) -> Decision | None:
        self.asked.append(facts.mac)
        return Decision(Kind.IGNORE, Source.API, rule="test")


def test_the_decision_api_is_asked_for_the_mac_of_79() -> None:
    machines = Machines()
    api = AskedApi()
    machines.set_api(api)
    engine = pxe_engine(machines)
    mac = bytes.fromhex(MAC.replace(":", ""))
    out = engine.handle(encode(relayed(solicit(), option79(1, mac))), ("fd00:77::2", 547), T0)
    assert api.asked == [MAC]
    assert boot_url(out) is None  # the API said ignore: an address, no boot file


@FUZZ
@given(
    hw_type=st.integers(0, 0xFFFF),
    address=st.binary(max_size=40),
    hops=st.integers(0, 3),
    duid=st.sampled_from([DUID_EN, bytes.fromhex("0004") + bytes(range(16))]),
)
def test_relay_forwards_with_random_79_fields(
    hw_type: int, address: bytes, hops: int, duid: bytes
) -> None:
    """Valid Relay-forward chains (1 + `hops` relays, 79 in the innermost) with random
    type and address: the codec never raises, the engine answers through every relay,
    and the boot URL follows the MAC exactly when 79 is a well-formed Ethernet MAC."""
    packet: Message | RelayMessage = relayed(solicit(duid), option79(hw_type, address))
    for hop in range(1, hops + 1):
        packet = relayed(packet, hops=hop)
    data = encode(packet)
    decoded = decode_any(data)
    inner = decoded
    while True:  # down to the relay next to the client
        assert isinstance(inner, RelayMessage)
        nested = inner.first(RelayMsg)
        assert nested is not None
        if isinstance(nested.message, Message):
            break
        inner = nested.message
    well_formed = 1 <= len(address) <= MAX_LINK_ADDRESS
    expected = ClientLinkLayer(hw_type, address) if well_formed else None
    assert inner.first(ClientLinkLayer) == expected
    seen: list[BootRequest6] = []
    policy = Pxe6Policy(BootFiles("table.efi"), SERVER, None, None, inventory_machines())

    def recording(request: BootRequest6) -> BootChoice6 | None:
        seen.append(request)
        return policy(request)

    engine = make_engine(boot_policy=recording)
    url = boot_url(engine.handle(data, ("fd00:77::2", 547), T0), hops=hops + 1)
    assert [r.link_layer for r in seen] == [expected]
    is_mac = hw_type == 1 and address == bytes.fromhex(MAC.replace(":", ""))
    assert url == f"tftp://[{SERVER}]/{'by-mac.efi' if is_mac else 'table.efi'}"


@FUZZ
@given(hw_type=st.integers(0, 0xFFFF), tail=st.binary(max_size=6))
def test_relay_forwards_naming_the_inventory_mac_with_random_types(
    hw_type: int, tail: bytes
) -> None:
    """The inventory's own MAC with a random type, or with random bytes after it: only
    type 1 with exactly six octets is that machine."""
    mac = bytes.fromhex(MAC.replace(":", ""))
    engine = pxe_engine(inventory_machines())
    data = encode(relayed(solicit(), option79(hw_type, mac + tail)))
    url = boot_url(engine.handle(data, ("fd00:77::2", 547), T0))
    match = hw_type == 1 and not tail
    assert url == f"tftp://[{SERVER}]/{'by-mac.efi' if match else 'table.efi'}"
