"""Issue 19 items 10-15: DHCPv6 message rules (RFC 8415 / RFC 9915) through the sans-IO
engine with a fake clock: NotOnLink, per-IA NoAddrsAvail/NoPrefixAvail, Information-
request with an IA discarded, Rebind creating nothing, Relay-forward answered with a
Relay-reply, and a boot service that wants a client id."""

from __future__ import annotations

import tracemalloc
from ipaddress import IPv6Address

import pytest
from test_dhcp6_engine import (
    PREFIX,
    SERVER_DUID,
    SOURCE,
    T0,
    TFTP_URL,
    address_of,
    duid,
    ia_status,
    lease,
    live,
    make_engine,
    msg,
    none,
    one,
)

from ptftpd.dhcp6.codec import (
    MAX_RELAYS,
    BootFileUrl,
    ClientArch,
    ClientId,
    ElapsedTime,
    IaAddress,
    IaNa,
    IaPd,
    IaPrefix,
    InterfaceId,
    Message,
    MsgType,
    Option,
    OptionRequest,
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

OFF_LINK = IPv6Address("2001:db8:5::10")
RELAY_SOURCE = ("fd00:88::2", 547)
RELAY_LINK = PREFIX[0xFFFF]  # the relay's address on the client's link: in our prefix
PEER = IPv6Address("fe80::5054:ff:fe00:4242")
PXE = (
    ClientArch((7,)),
    OptionRequest((59, 60)),
    VendorClass(343, (b"PXEClient:Arch:00007:UNDI:003016",)),
)


def pd_status(reply: Message) -> int | None:
    [ia] = reply.all(IaPd)
    [status] = [o for o in ia.options if isinstance(o, StatusCode)]
    return status.code


# -- 10: NotOnLink ----------------------------------------------------------------------


def test_request_for_an_off_link_address_gets_not_on_link() -> None:
    engine = make_engine()
    wrong = IaNa(1, 0, 0, (IaAddress(OFF_LINK, 0, 0),))
    reply = one(engine, msg(MsgType.REQUEST, duid(1), ServerId(SERVER_DUID), wrong))
    assert ia_status(reply) == Status.NOT_ON_LINK
    assert not reply.first(IaNa).addresses  # type: ignore[union-attr]
    assert live(engine, duid(1), 1, T0) is None, "no address given instead"
    confirm = one(engine, msg(MsgType.CONFIRM, duid(1), wrong))
    assert confirm.first(StatusCode) == StatusCode(Status.NOT_ON_LINK, "not on this link")


# -- 11: statuses inside each IA; IA_PD alone -------------------------------------------


def test_no_addrs_avail_is_inside_each_ia() -> None:
    engine = make_engine(range_start=PREFIX[16], range_end=PREFIX[16])
    lease(engine, duid(1))
    adv = one(engine, msg(MsgType.SOLICIT, duid(2), IaNa(1, 0, 0), IaNa(2, 0, 0)))
    assert adv.first(StatusCode) is None, "no top-level status"
    assert ia_status(adv, 1) == ia_status(adv, 2) == Status.NO_ADDRS_AVAIL


def test_solicit_with_only_ia_pd_gets_ia_pd_with_no_prefix_avail() -> None:
    engine = make_engine()
    hint = IaPrefix(0, 0, 56, IPv6Address("fd00:aa00::"))
    adv = one(engine, msg(MsgType.SOLICIT, duid(3), IaPd(7, 0, 0, (hint,))))
    assert adv.msg_type == MsgType.ADVERTISE
    [ia] = adv.all(IaPd)
    assert ia.iaid == 7 and not ia.prefixes
    assert pd_status(adv) == Status.NO_PREFIX_AVAIL
    # Both kinds: the address is given, the IA_PD says NoPrefixAvail.
    both = one(engine, msg(MsgType.SOLICIT, duid(4), IaNa(1, 0, 0), IaPd(7, 0, 0)))
    assert address_of(both).address in PREFIX and pd_status(both) == Status.NO_PREFIX_AVAIL
    renew = one(engine, msg(MsgType.RENEW, duid(4), ServerId(SERVER_DUID), IaPd(7, 0, 0)))
    assert pd_status(renew) == Status.NO_BINDING


# -- 12: Information-request with an IA is discarded -------------------------------------


@pytest.mark.parametrize(
    "ia",
    [IaNa(1, 0, 0), IaPd(1, 0, 0), RawOption(4, b"\x00\x00\x00\x01")],
    ids=["IA_NA", "IA_PD", "IA_TA"],
)
def test_information_request_with_an_ia_is_discarded(ia: Option) -> None:
    engine = make_engine()
    assert one(engine, msg(MsgType.INFORMATION_REQUEST, duid(5))).msg_type == MsgType.REPLY
    none(engine, msg(MsgType.INFORMATION_REQUEST, duid(5), ia))
    none(make_engine(proxy=True), msg(MsgType.INFORMATION_REQUEST, duid(5), ia, *PXE))


# -- 13: Rebind without a binding creates none ------------------------------------------


def test_rebind_without_a_binding_creates_none() -> None:
    engine = make_engine()
    on_link = IaNa(1, 0, 0, (IaAddress(PREFIX[0x50], 100, 200),))
    reply = one(engine, msg(MsgType.REBIND, duid(6), on_link))
    assert ia_status(reply) == Status.NO_BINDING
    off_link = IaNa(1, 0, 0, (IaAddress(OFF_LINK, 100, 200),))
    reply = one(engine, msg(MsgType.REBIND, duid(6), off_link))
    assert reply.first(IaNa) == IaNa(1, 0, 0, (IaAddress(OFF_LINK, 0, 0),))
    assert live(engine, duid(6), 1, T0) is None
    assert not [x for x in engine.policy.leases() if x.state.value != "offered"]


# -- 14: Relay-forward gets a Relay-reply ------------------------------------------------


def relayed(inner: bytes, hops: int = 1, link: IPv6Address = RELAY_LINK) -> bytes:
    """`inner` through `hops` relays; the first one (next to the client) adds an
    Interface-ID and names the client's link."""
    packet: Message | RelayMessage = decode_any(inner)
    for hop in range(hops):
        first = hop == 0
        options: tuple[Option, ...] = (RelayMsg(packet),)
        if first:
            options = (InterfaceId(b"port-7"), *options)
        packet = RelayMessage(
            MsgType.RELAY_FORW,
            hop,
            link if first else IPv6Address("::"),
            PEER if first else IPv6Address(f"fd00:88::{hop + 1}"),
            options,
        )
    return encode(packet)


def unwrap(data: bytes, hops: int) -> tuple[list[RelayMessage], Message]:
    packet = decode_any(data)
    layers = []
    while isinstance(packet, RelayMessage):
        assert packet.msg_type == MsgType.RELAY_REPL
        layers.append(packet)
        inner = packet.first(RelayMsg)
        assert inner is not None
        packet = inner.message
    assert len(layers) == hops
    return layers, packet


@pytest.mark.parametrize("hops", [1, 3, MAX_RELAYS])
def test_relay_forward_gets_a_relay_reply(hops: int) -> None:
    engine = make_engine()
    solicit = msg(MsgType.SOLICIT, duid(7), IaNa(1, 0, 0), xid=0x4711)
    [out] = engine.handle(relayed(solicit, hops), RELAY_SOURCE, T0)
    assert out.address == RELAY_SOURCE, "to the relay, port 547"
    layers, adv = unwrap(out.payload, hops)
    # Each layer keeps its relay's hop count, link and peer; the first its Interface-ID.
    assert [r.hop_count for r in layers] == list(reversed(range(hops)))
    innermost = layers[-1]
    assert innermost.link_address == RELAY_LINK and innermost.peer_address == PEER
    assert innermost.first(InterfaceId) == InterfaceId(b"port-7")
    assert all(r.first(InterfaceId) is None for r in layers[:-1])
    assert adv.msg_type == MsgType.ADVERTISE and adv.transaction_id == 0x4711
    offered = address_of(adv)
    request = msg(
        MsgType.REQUEST, duid(7), ServerId(SERVER_DUID), IaNa(1, 0, 0, (offered,)), xid=0x4712
    )
    [out] = engine.handle(relayed(request, hops), RELAY_SOURCE, T0)
    _, reply = unwrap(out.payload, hops)
    assert reply.msg_type == MsgType.REPLY and address_of(reply).address == offered.address


def test_relayed_from_a_link_we_do_not_serve_or_too_deep_is_dropped() -> None:
    engine = make_engine()
    solicit = msg(MsgType.SOLICIT, duid(8), IaNa(1, 0, 0))
    assert engine.handle(relayed(solicit, 1, IPv6Address("fd00:99::1")), RELAY_SOURCE, T0) == []
    assert engine.handle(relayed(solicit, MAX_RELAYS + 1), RELAY_SOURCE, T0) == []
    # A Relay-reply is never something a server answers.
    reply = RelayMessage(MsgType.RELAY_REPL, 0, RELAY_LINK, PEER, (RelayMsg(decode_any(solicit)),))
    assert engine.handle(encode(reply), RELAY_SOURCE, T0) == []
    # A proxy gives boot options to a netboot client on any link.
    proxy = make_engine(proxy=True)
    pxe = msg(MsgType.SOLICIT, duid(8), *PXE)
    [out] = proxy.handle(relayed(pxe, 1, IPv6Address("fd00:99::1")), RELAY_SOURCE, T0)
    _, adv = unwrap(out.payload, 1)
    assert adv.first(BootFileUrl) == BootFileUrl(TFTP_URL)


def test_direct_messages_still_go_to_the_client_port() -> None:
    [out] = make_engine().handle(msg(MsgType.SOLICIT, duid(9), IaNa(1, 0, 0)), SOURCE, T0)
    assert out.address == (SOURCE[0], 546)
    assert isinstance(decode(out.payload), Message)


# -- 15: the boot service wants a client id ------------------------------------------------


def test_boot_service_ignores_a_request_without_client_id() -> None:
    engine = make_engine(proxy=True)
    no_id = encode(Message(MsgType.REQUEST, 0x99, (ServerId(SERVER_DUID), ElapsedTime(0), *PXE)))
    assert engine.handle_boot_service(no_id, ("fd00:77::99", 4011), T0) == []
    with_id = encode(
        Message(MsgType.REQUEST, 0x99, (ClientId(duid(1)), ServerId(SERVER_DUID), *PXE))
    )
    assert len(engine.handle_boot_service(with_id, ("fd00:77::99", 4011), T0)) == 1


# -- 1: offers expire; per-client and total caps --------------------------------------


def test_offers_from_a_flood_of_new_duids_are_capped_and_expire() -> None:
    engine = make_engine(max_bindings=50, max_offers=100, max_per_client=4)
    for n in range(3000):
        engine.handle(msg(MsgType.SOLICIT, duid(10_000 + n), IaNa(1, 0, 0)), SOURCE, T0)
    assert len(engine.policy.store) <= 100, "offers beyond the cap are kept"
    # The newest client still gets an offer (the oldest one made room for it)...
    assert address_of(one(engine, msg(MsgType.SOLICIT, duid(1), IaNa(1, 0, 0)), T0 + 1))
    # ...and once the offer time has passed, the next packet forgets every offer.
    later = T0 + 60 + 2
    one(engine, msg(MsgType.SOLICIT, duid(2), IaNa(1, 0, 0)), later)
    assert len(engine.policy.store) == 1


def test_default_caps_bound_memory_after_many_clients() -> None:
    engine = make_engine()
    tracemalloc.start()
    try:
        for n in range(6000):
            engine.handle(msg(MsgType.SOLICIT, duid(20_000 + n), IaNa(1, 0, 0)), SOURCE, T0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(engine.policy.store) <= engine.config.max_offers
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes"


def test_one_solicit_with_thousands_of_ias_gets_the_per_client_cap() -> None:
    engine = make_engine(max_per_client=8)
    ias = tuple(IaNa(i, 0, 0) for i in range(4000))
    data = msg(MsgType.SOLICIT, duid(3), *ias)
    assert len(data) > 60_000
    [out] = engine.handle(data, SOURCE, T0)
    adv = decode(out.payload)
    given = [ia for ia in adv.all(IaNa) if ia.addresses]
    assert len(given) == 8 and len(engine.policy.store) == 8
    assert len(out.payload) < 4096, "the reply is bounded too"
    assert all(ia_status(adv, ia.iaid) == Status.NO_ADDRS_AVAIL for ia in adv.all(IaNa)[8:])


def test_bindings_are_capped_and_a_release_makes_room() -> None:
    engine = make_engine(max_bindings=5)
    held = [lease(engine, duid(30 + n)) for n in range(5)]
    full = one(engine, msg(MsgType.SOLICIT, duid(40), IaNa(1, 0, 0), RapidCommit()))
    request = msg(MsgType.REQUEST, duid(40), ServerId(SERVER_DUID), IaNa(1, 0, 0))
    assert ia_status(one(engine, request)) == Status.NO_ADDRS_AVAIL
    # A Request without an Advertise before it (or a rapid commit) is capped the same.
    direct = msg(MsgType.REQUEST, duid(41), ServerId(SERVER_DUID), IaNa(1, 0, 0))
    assert ia_status(one(engine, direct)) == Status.NO_ADDRS_AVAIL
    assert len([x for x in engine.policy.leases() if x.state.value == "bound"]) == 5
    assert full.msg_type == MsgType.ADVERTISE  # rapid commit is off by default
    release = IaNa(1, 0, 0, (held[0],))
    one(engine, msg(MsgType.RELEASE, duid(30), ServerId(SERVER_DUID), release))
    assert address_of(one(engine, request, T0 + 2)).address in PREFIX
