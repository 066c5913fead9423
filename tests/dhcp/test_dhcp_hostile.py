"""Issue 19 (hostile input, round 3), DHCPv4 items 5-9, through the sans-IO engine and
the codec: relayed NAKs broadcast, option 118 echoed and outranked by 82.5, option 82
echoed without giaddr and in relayed proxy offers, and an encoder that keeps every
option RFC 2131 requires."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from dhcpmsg import relayed_message
from test_dhcp_subnets import RACK7, RACK8, engine

from ptftpd.dhcp import DhcpEngine, Message, MessageType, Opt
from ptftpd.dhcp.packet import BROADCAST_FLAG, decode, encode
from ptftpd.pxe.firmware import BootFiles
from ptftpd.pxe.proxy import ProxyResponder

# The subnets of the multi-subnet tests: local 10.5.0.0/24, racks 10.7.0.0/24 and
# 10.8.0.0/22 behind relays.
NOW = 1_700_000_000.0  # the time each message arrives (handle takes it)
SERVER = IPv4Address("10.5.0.1")
RELAY = "10.7.0.1"
# Circuit id "abc", then link selection (RFC 3527) naming rack 8.
INFO_LINK8 = b"\x01\x03abc\x05\x04" + IPv4Address("10.8.0.1").packed
INFO = b"\x01\x04port\x02\x03sw1"


def msg(mtype: MessageType, n: int, giaddr: str = "0.0.0.0", **opts: bytes) -> Message:
    return relayed_message(mtype, 0xB000 + n, bytes([2, 0, 0, 0, 9, n]), giaddr, **opts)


def one(eng: DhcpEngine, m: Message) -> tuple[Message, tuple[str, int]]:
    [out] = eng.handle(encode(m), ("0.0.0.0", 68), NOW)
    return decode(out.payload), out.address


def bind(eng: DhcpEngine, n: int, giaddr: str = "0.0.0.0", **opts: bytes) -> Message:
    offer, _ = one(eng, msg(MessageType.DISCOVER, n, giaddr, **opts))
    request = msg(
        MessageType.REQUEST,
        n,
        giaddr,
        requested_ip=offer.yiaddr.packed,
        server_id=SERVER.packed,
        **opts,
    )
    ack, _ = one(eng, request)
    assert ack.message_type is MessageType.ACK
    return ack


# -- 5: a NAK through a relay carries the broadcast bit on the wire (RFC 2131 4.1) ------


def test_relayed_nak_has_the_broadcast_bit_on_the_wire() -> None:
    eng = engine(authoritative=True)
    ack = bind(eng, 1, RELAY)
    # INIT-REBOOT for an address of another rack: wrong network, NAK.
    wrong = msg(MessageType.REQUEST, 1, RELAY, requested_ip=IPv4Address("10.7.0.250").packed)
    wrong.options[Opt.REQUESTED_IP] = IPv4Address("10.8.0.77").packed
    nak, dest = one(eng, wrong)
    assert ack.yiaddr in RACK7.network
    assert nak.message_type is MessageType.NAK
    assert dest == (RELAY, 67)
    assert nak.flags & BROADCAST_FLAG, "relayed NAK without the broadcast bit"


# -- 6/7: subnet selection (RFC 3011) echoed, link selection (RFC 3527) wins -----------


def test_subnet_selection_is_echoed_in_offer_ack_and_nak() -> None:
    eng = engine(authoritative=True)
    sel = IPv4Address("10.7.0.1").packed
    # The client asks for nothing in 55: 118 comes back anyway (RFC 3011 3: MUST).
    offer, _ = one(eng, msg(MessageType.DISCOVER, 2, o118=sel, parameter_list=bytes([1, 3])))
    assert offer.yiaddr in RACK7.network
    assert offer.options[118] == sel
    ack = bind(eng, 3, o118=sel)
    assert ack.options[118] == sel
    nak, _ = one(
        eng, msg(MessageType.REQUEST, 3, o118=sel, requested_ip=IPv4Address("10.7.0.0").packed)
    )
    assert nak.message_type is MessageType.NAK and nak.options[118] == sel


def test_link_selection_wins_over_subnet_selection() -> None:
    eng = engine()
    ack = bind(eng, 4, "10.5.0.254", o118=IPv4Address(RELAY).packed, relay_agent_info=INFO_LINK8)
    assert ack.yiaddr in RACK8.network, "118 won over 82.5"
    assert ack.options[Opt.RELAY_AGENT_INFO] == INFO_LINK8


# -- 9: option 82 echoed without giaddr, and by the proxy ---------------------------------


def test_relay_agent_info_echoed_with_giaddr_zero() -> None:
    eng = engine()
    offer, _ = one(eng, msg(MessageType.DISCOVER, 5, relay_agent_info=INFO))
    assert offer.options[Opt.RELAY_AGENT_INFO] == INFO
    ack = bind(eng, 6, relay_agent_info=INFO)
    assert ack.options[Opt.RELAY_AGENT_INFO] == INFO
    # RFC 3046 2.2: the last option of the reply.
    assert list(ack.options)[-1] == Opt.RELAY_AGENT_INFO


@pytest.mark.parametrize("giaddr", ["0.0.0.0", RELAY])
def test_proxy_offer_and_boot_server_ack_echo_relay_agent_info(giaddr: str) -> None:
    proxy = ProxyResponder(SERVER, BootFiles(default="pxelinux.0"))
    discover = msg(
        MessageType.DISCOVER,
        7,
        giaddr,
        vendor_class=b"PXEClient:Arch:00000:UNDI:002001",
        relay_agent_info=INFO,
    )
    [out] = proxy.handle(encode(discover), ("0.0.0.0", 68), boot_server=False, now=NOW)
    offer = decode(out.payload)
    assert offer.message_type is MessageType.OFFER
    assert offer.options[Opt.RELAY_AGENT_INFO] == INFO
    request = msg(
        MessageType.REQUEST,
        7,
        giaddr,
        vendor_class=b"PXEClient:Arch:00000:UNDI:002001",
        relay_agent_info=INFO,
    )
    request.ciaddr = IPv4Address("10.7.0.50")
    [out] = proxy.handle(encode(request), ("10.7.0.50", 68), boot_server=True, now=NOW)
    assert decode(out.payload).options[Opt.RELAY_AGENT_INFO] == INFO


# -- 8: fit what fits, required first, overload, never drop a MUST ----------------------


def big_reply(**fields: object) -> Message:
    """An OFFER whose first options are long: the old encoder stopped at the first
    option that did not fit and lost 54 and 51 behind it."""
    m = Message(op=2, xid=0x42, **fields)  # type: ignore[arg-type]
    m.options = {
        Opt.MESSAGE_TYPE: bytes([MessageType.OFFER]),
        224: bytes(200),  # a configured option the client listed first in 55
        225: bytes(120),
        Opt.SERVER_ID: SERVER.packed,
        Opt.LEASE_TIME: (3600).to_bytes(4, "big"),
        Opt.SUBNET_MASK: IPv4Address("255.255.255.0").packed,
        Opt.ROUTER: SERVER.packed,
        226: b"small",
    }
    return m


def test_encoder_keeps_required_options_and_fits_what_fits() -> None:
    # File and sname in use (a PXE reply): no overload, 308 bytes of options.
    m = big_reply(sname=b"boot", file=b"pxelinux.0")
    back = decode(encode(m, 576))
    for code in (Opt.MESSAGE_TYPE, Opt.SERVER_ID, Opt.LEASE_TIME, Opt.SUBNET_MASK, Opt.ROUTER):
        assert back.options[code] == m.options[code], f"option {code} dropped"
    assert back.options[226] == b"small"  # after one that did not fit
    assert 224 in back.options and 225 not in back.options
    assert next(iter(back.options)) == Opt.MESSAGE_TYPE


def test_encoder_overloads_into_free_file_and_sname() -> None:
    m = big_reply()
    data = encode(m, 576)
    assert len(data) <= 576 - 28
    back = decode(data)
    assert back.options == m.options  # everything: 225 went to the file field
    assert data[236 + 4 : 236 + 7] == bytes([52, 1, 1])  # overload: file only
    # With the boot file in `file`, sname (64 bytes) still takes what fits there.
    m = big_reply(file=b"pxelinux.0")
    m.options[227] = bytes(40)
    back = decode(encode(m, 576))
    assert back.options[227] == bytes(40) and back.file_str == "pxelinux.0"


def test_required_options_that_cannot_fit_are_no_reply_not_a_broken_one() -> None:
    eng = engine()
    # A 255-byte client id and 255 bytes of relay information (both echoed, MUST)
    # next to a PXE reply's fields: the encoder refuses, the engine stays silent.
    hostile = msg(
        MessageType.DISCOVER,
        8,
        client_id=bytes(255),
        relay_agent_info=b"\x01\xfd" + bytes(253),
    )
    assert eng.handle(encode(hostile), ("0.0.0.0", 68), NOW) == []
    # A bigger maximum message size (57) lets the same client in.
    hostile.options[Opt.MAX_MESSAGE_SIZE] = (1500).to_bytes(2, "big")
    [out] = eng.handle(encode(hostile), ("0.0.0.0", 68), NOW)
    offer = decode(out.payload)
    assert offer.options[Opt.CLIENT_ID] == bytes(255)
    assert offer.options[Opt.SERVER_ID] == SERVER.packed
