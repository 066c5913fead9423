"""DHCPv6 engine rules with a fake clock: no sockets, every decision visible in bytes."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptftpd.dhcp.lease_store import Lease, LeaseState, LeaseStore, MemoryStore
from ptftpd.dhcp.leases import ia_key
from ptftpd.dhcp.store import SqliteStore
from ptftpd.dhcp6.boot import ArchTablePolicy, BootRequest6, boot_url
from ptftpd.dhcp6.codec import (
    BootFileParam,
    BootFileUrl,
    ClientArch,
    ClientId,
    DnsServers,
    ElapsedTime,
    IaAddress,
    IaNa,
    Message,
    MsgType,
    Option,
    OptionRequest,
    RapidCommit,
    ServerId,
    Status,
    StatusCode,
    UserClass,
    VendorClass,
    decode,
    encode,
)
from ptftpd.dhcp6.config import Dhcp6Config
from ptftpd.dhcp6.engine import Dhcp6Engine
from ptftpd.dhcp6.leases import prefix_policy

PREFIX = IPv6Network("fd00:77::/64")
SERVER = IPv6Address("fd00:77::1")
SERVER_DUID = bytes.fromhex("00030001525400aabbcc")
OTHER_DUID = bytes.fromhex("00030001525400ddeeff")
SOURCE = ("fe80::5054:ff:fe12:3456", 546)
T0 = 1_800_000_000.0
TFTP_URL = "tftp://[fd00:77::1]/ipxe.efi"
HTTP_URL = "http://[fd00:77::1]:8080/ipxe.efi"
BIOS_URL = "tftp://[fd00:77::1]/undionly.kpxe"
POLICY = ArchTablePolicy({7: TFTP_URL, 9: TFTP_URL, 16: HTTP_URL, 0: BIOS_URL})


def duid(n: int) -> bytes:
    return bytes.fromhex("00030001") + n.to_bytes(6, "big")


def make_engine(store: LeaseStore | None = None, **overrides: Any) -> Dhcp6Engine:
    settings: dict[str, Any] = {
        "boot_policy": POLICY,
        "dns_servers": (IPv6Address("fd00:77::35"),),
        **overrides,
    }
    cfg = Dhcp6Config(interface="veth0", prefix=PREFIX, server_addresses=(SERVER,), **settings)
    return Dhcp6Engine(cfg, SERVER_DUID, prefix_policy(cfg, store or MemoryStore()))


def committed(engine: Dhcp6Engine) -> list[Lease[IPv6Address]]:
    """The rows a client relies on (offers are rows too, but promise nothing)."""
    return [x for x in engine.policy.leases() if x.state is not LeaseState.OFFERED]


def live(engine: Dhcp6Engine, client: bytes, iaid: int, now: float) -> Lease[IPv6Address] | None:
    """The IA's live row (offered or bound), whichever server made it."""
    return engine.policy.store.lookup(ia_key(client, iaid), engine.policy.pool, now)


def msg(kind: MsgType, client: bytes | None, *options: Option, xid: int = 0x1234) -> bytes:
    opts: list[Option] = [ClientId(client)] if client else []
    return encode(Message(kind, xid, (*opts, ElapsedTime(0), *options)))


def one(engine: Dhcp6Engine, data: bytes, now: float = T0) -> Message:
    out = engine.handle(data, SOURCE, now)
    assert len(out) == 1, f"expected one reply, got {out}"
    assert out[0].address == ("fe80::5054:ff:fe12:3456", 546)
    return decode(out[0].payload)


def none(engine: Dhcp6Engine, data: bytes, now: float = T0) -> None:
    assert engine.handle(data, SOURCE, now) == []


def address_of(reply: Message, iaid: int = 1) -> IaAddress:
    ia = next(i for i in reply.all(IaNa) if i.iaid == iaid)
    assert len(ia.addresses) == 1, ia
    return ia.addresses[0]


def address_of_or_none(reply: Message) -> tuple[IaAddress, ...]:
    return tuple(a for ia in reply.all(IaNa) for a in ia.addresses)


def ia_status(reply: Message, iaid: int = 1) -> int | None:
    ia = next(i for i in reply.all(IaNa) if i.iaid == iaid)
    status = [o for o in ia.options if isinstance(o, StatusCode)]
    return status[0].code if status else None


def lease(engine: Dhcp6Engine, client: bytes, iaid: int = 1, now: float = T0) -> IaAddress:
    adv = one(engine, msg(MsgType.SOLICIT, client, IaNa(iaid, 0, 0)), now)
    offered = address_of(adv, iaid)
    reply = one(
        engine,
        msg(MsgType.REQUEST, client, ServerId(SERVER_DUID), IaNa(iaid, 0, 0, (offered,))),
        now,
    )
    assert reply.msg_type == MsgType.REPLY
    return address_of(reply, iaid)


def test_solicit_advertise_request_reply() -> None:
    engine = make_engine()
    adv = one(engine, msg(MsgType.SOLICIT, duid(1), IaNa(1, 0, 0), xid=0xABCDEF))
    assert adv.msg_type == MsgType.ADVERTISE and adv.transaction_id == 0xABCDEF
    assert adv.first(ServerId) == ServerId(SERVER_DUID)
    assert adv.first(ClientId) == ClientId(duid(1))
    offered = address_of(adv)
    assert offered.address in PREFIX and offered.address != SERVER
    assert (offered.preferred, offered.valid) == (3600, 7200)
    ia = adv.first(IaNa)
    assert ia is not None and (ia.t1, ia.t2) == (1800, 2880)
    assert committed(engine) == [], "an Advertise commits nothing"

    reply = one(
        engine,
        msg(MsgType.REQUEST, duid(1), ServerId(SERVER_DUID), IaNa(1, 0, 0, (offered,))),
    )
    assert reply.msg_type == MsgType.REPLY
    assert address_of(reply).address == offered.address
    saved = committed(engine)
    assert [(x.address, x.client_key) for x in saved] == [(offered.address, ia_key(duid(1), 1))]


def test_two_clients_and_two_ias_get_distinct_addresses() -> None:
    engine = make_engine()
    a = lease(engine, duid(1), 1)
    b = lease(engine, duid(1), 2)
    c = lease(engine, duid(2), 1)
    assert len({a.address, b.address, c.address}) == 3
    assert lease(engine, duid(1), 1).address == a.address, "same (DUID, IAID), same address"


def test_rapid_commit_only_when_enabled_and_asked() -> None:
    engine = make_engine(rapid_commit=True)
    reply = one(engine, msg(MsgType.SOLICIT, duid(1), IaNa(1, 0, 0), RapidCommit()))
    assert reply.msg_type == MsgType.REPLY
    assert reply.first(RapidCommit) is not None
    assert [x.address for x in committed(engine)] == [address_of(reply).address]

    assert one(engine, msg(MsgType.SOLICIT, duid(2), IaNa(1, 0, 0))).msg_type == (MsgType.ADVERTISE)
    off = make_engine(rapid_commit=False)
    adv = one(off, msg(MsgType.SOLICIT, duid(1), IaNa(1, 0, 0), RapidCommit()))
    assert adv.msg_type == MsgType.ADVERTISE and adv.first(RapidCommit) is None


def test_renew_extends_and_rebind_never_creates_a_binding() -> None:
    engine = make_engine()
    got = lease(engine, duid(1))
    later = T0 + 1800
    renew = one(
        engine,
        msg(MsgType.RENEW, duid(1), ServerId(SERVER_DUID), IaNa(1, 0, 0, (got,))),
        later,
    )
    assert address_of(renew).address == got.address and address_of(renew).valid == 7200
    (row,) = committed(engine)
    assert row.expires == later + 7200

    # An Advertise promised nothing: a Renew of an offered-only IA has no binding.
    adv = one(engine, msg(MsgType.SOLICIT, duid(5), IaNa(1, 0, 0)), later)
    offered_only = one(
        engine,
        msg(MsgType.RENEW, duid(5), ServerId(SERVER_DUID), IaNa(1, 0, 0, (address_of(adv),))),
        later,
    )
    assert ia_status(offered_only) == Status.NO_BINDING

    # Renew of an IA we know nothing about: NoBinding in that IA.
    unknown = one(engine, msg(MsgType.RENEW, duid(9), ServerId(SERVER_DUID), IaNa(1, 0, 0)))
    assert ia_status(unknown) == Status.NO_BINDING

    # A Rebind extends the binding it names, like a Renew.
    rebound = one(engine, msg(MsgType.REBIND, duid(1), IaNa(1, 0, 0, (got,))), later + 10)
    assert address_of(rebound).address == got.address
    # A server that lost its database gets a Rebind: NoBinding, and no binding is
    # created (RFC 8415 18.3.5, issue 19 item 13); the client goes back to Solicit.
    fresh = make_engine()
    rebind = one(fresh, msg(MsgType.REBIND, duid(1), IaNa(1, 0, 0, (got,))), later)
    assert ia_status(rebind) == Status.NO_BINDING
    assert live(fresh, duid(1), 1, later) is None
    assert committed(fresh) == []
    # Off-link addresses come back with lifetimes 0.
    foreign = IaAddress(IPv6Address("2001:db8::5"), 100, 200)
    stale = one(fresh, msg(MsgType.REBIND, duid(3), IaNa(1, 0, 0, (foreign,))), later)
    ia = stale.first(IaNa)
    assert ia is not None and ia.addresses == (IaAddress(foreign.address, 0, 0),)


def test_expired_lease_is_not_renewed_and_address_is_reused() -> None:
    engine = make_engine(range_start=IPv6Address("fd00:77::10"), range_end=PREFIX[16])
    got = lease(engine, duid(1))
    after = T0 + 7201
    renew = one(
        engine,
        msg(MsgType.RENEW, duid(1), ServerId(SERVER_DUID), IaNa(1, 0, 0, (got,))),
        after,
    )
    assert ia_status(renew) == Status.NO_BINDING
    assert lease(engine, duid(2), now=after).address == got.address


def test_release_frees_and_decline_quarantines() -> None:
    engine = make_engine(range_start=PREFIX[16], range_end=PREFIX[16])
    got = lease(engine, duid(1))
    reply = one(engine, msg(MsgType.RELEASE, duid(1), ServerId(SERVER_DUID), IaNa(1, 0, 0, (got,))))
    assert reply.first(StatusCode) == StatusCode(Status.SUCCESS, "released")
    assert lease(engine, duid(2)).address == got.address, "released address reusable"

    decline = one(
        engine, msg(MsgType.DECLINE, duid(2), ServerId(SERVER_DUID), IaNa(1, 0, 0, (got,)))
    )
    assert decline.first(StatusCode) == StatusCode(Status.SUCCESS, "declined")
    adv = one(engine, msg(MsgType.SOLICIT, duid(3), IaNa(1, 0, 0)), T0 + 10)
    assert ia_status(adv) == Status.NO_ADDRS_AVAIL
    assert lease(engine, duid(3), now=T0 + 601).address == got.address, "quarantine ends"

    # Releasing an address the IA does not hold changes nothing: NoBinding.
    other = IaAddress(PREFIX[99], 0, 0)
    wrong = one(
        engine,
        msg(MsgType.RELEASE, duid(3), ServerId(SERVER_DUID), IaNa(1, 0, 0, (other,))),
        T0 + 602,
    )
    assert ia_status(wrong) == Status.NO_BINDING
    assert live(engine, duid(3), 1, T0 + 602) is not None, "still bound"

    # Releasing what one does not hold: NoBinding for that IA.
    again = one(engine, msg(MsgType.RELEASE, duid(1), ServerId(SERVER_DUID), IaNa(1, 0, 0, (got,))))
    assert ia_status(again) == Status.NO_BINDING


def test_no_addrs_avail_when_full() -> None:
    engine = make_engine(range_start=PREFIX[16], range_end=PREFIX[17])
    lease(engine, duid(1))
    lease(engine, duid(2))
    adv = one(engine, msg(MsgType.SOLICIT, duid(3), IaNa(1, 0, 0)))
    # NoAddrsAvail inside the IA (RFC 9915 18.3.1, RFC 7550), not at the top level.
    assert adv.msg_type == MsgType.ADVERTISE and adv.first(StatusCode) is None
    assert ia_status(adv) == Status.NO_ADDRS_AVAIL and not address_of_or_none(adv)
    req = one(engine, msg(MsgType.REQUEST, duid(3), ServerId(SERVER_DUID), IaNa(1, 0, 0)))
    assert ia_status(req) == Status.NO_ADDRS_AVAIL


def test_server_never_hands_out_its_own_address() -> None:
    engine = make_engine(range_start=PREFIX[1], range_end=PREFIX[2])
    assert lease(engine, duid(1)).address == PREFIX[2]
    assert not address_of_or_none(one(engine, msg(MsgType.SOLICIT, duid(2), IaNa(1, 0, 0))))


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        (MsgType.SOLICIT, (ServerId(SERVER_DUID),)),  # Solicit must carry no server id
        (MsgType.REQUEST, (ServerId(OTHER_DUID),)),  # for another server
        (MsgType.REQUEST, ()),  # no server id at all
        (MsgType.RENEW, (ServerId(OTHER_DUID),)),
        (MsgType.RELEASE, (ServerId(OTHER_DUID),)),
        (MsgType.DECLINE, (ServerId(OTHER_DUID),)),
        (MsgType.REBIND, (ServerId(SERVER_DUID),)),
        (MsgType.CONFIRM, (ServerId(SERVER_DUID),)),
        (MsgType.INFORMATION_REQUEST, (ServerId(OTHER_DUID),)),
        (MsgType.INFORMATION_REQUEST, ()),  # with an IA (RFC 8415 16.12)
        (MsgType.ADVERTISE, (ServerId(SERVER_DUID),)),  # server messages are not for us
        (MsgType.REPLY, (ServerId(SERVER_DUID),)),
    ],
)
def test_server_id_rules_drop_messages(kind: MsgType, extra: tuple[Option, ...]) -> None:
    engine = make_engine()
    none(engine, msg(kind, duid(1), *extra, IaNa(1, 0, 0)))
    assert committed(engine) == []


def test_messages_without_client_id_are_dropped_except_information_request() -> None:
    engine = make_engine()
    none(engine, msg(MsgType.SOLICIT, None, IaNa(1, 0, 0)))
    info = one(engine, msg(MsgType.INFORMATION_REQUEST, None, OptionRequest((23,))))
    assert info.msg_type == MsgType.REPLY and info.first(ClientId) is None
    assert info.first(DnsServers) == DnsServers((IPv6Address("fd00:77::35"),))
    assert info.first(IaNa) is None


def test_confirm_on_link_and_off_link() -> None:
    engine = make_engine()
    on = IaAddress(PREFIX[99], 0, 0)
    off = IaAddress(IPv6Address("2001:db8::1"), 0, 0)
    ok = one(engine, msg(MsgType.CONFIRM, duid(1), IaNa(1, 0, 0, (on,))))
    assert ok.first(StatusCode) is not None and ok.first(StatusCode).code == Status.SUCCESS  # type: ignore[union-attr]
    bad = one(engine, msg(MsgType.CONFIRM, duid(1), IaNa(1, 0, 0, (on, off))))
    assert bad.first(StatusCode).code == Status.NOT_ON_LINK  # type: ignore[union-attr]
    none(engine, msg(MsgType.CONFIRM, duid(1), IaNa(1, 0, 0)))  # nothing to confirm


def test_dns_only_when_requested() -> None:
    engine = make_engine()
    plain = one(engine, msg(MsgType.SOLICIT, duid(1), IaNa(1, 0, 0)))
    assert plain.first(DnsServers) is None
    asked = one(engine, msg(MsgType.SOLICIT, duid(1), IaNa(1, 0, 0), OptionRequest((23,))))
    assert asked.first(DnsServers) is not None


@pytest.mark.parametrize(
    ("arches", "vendor", "url", "echo"),
    [
        ((7,), b"PXEClient:Arch:00007:UNDI:003016", TFTP_URL, False),
        ((9,), None, TFTP_URL, False),
        ((0x10,), b"HTTPClient:Arch:00016:UNDI:003001", HTTP_URL, True),
        ((0,), b"PXEClient:Arch:00000:UNDI:002001", BIOS_URL, False),
        ((0x13, 7), None, TFTP_URL, False),  # first known architecture of the list
    ],
)
def test_boot_file_url_by_architecture(
    arches: tuple[int, ...], vendor: bytes | None, url: str, echo: bool
) -> None:
    engine = make_engine()
    extra: list[Option] = [ClientArch(arches), OptionRequest((59, 60))]
    if vendor:
        extra.append(VendorClass(343, (vendor,)))
    adv = one(engine, msg(MsgType.SOLICIT, duid(1), IaNa(1, 0, 0), *extra))
    assert adv.first(BootFileUrl) == BootFileUrl(url)
    if echo:
        assert adv.first(VendorClass) == VendorClass(343, (b"HTTPClient",))
    else:
        assert adv.first(VendorClass) is None
    address_of(adv)  # a netboot client in normal mode still gets an address


def test_boot_policy_sees_user_class_and_unknown_arch_gets_nothing() -> None:
    seen: list[BootRequest6] = []
    engine = make_engine(boot_policy=ArchTablePolicy({7: TFTP_URL}, ipxe="http://x/boot.ipxe"))
    ipxe = one(
        engine,
        msg(MsgType.SOLICIT, duid(1), IaNa(1, 0, 0), ClientArch((7,)), UserClass((b"iPXE",))),
    )
    assert ipxe.first(BootFileUrl) == BootFileUrl("http://x/boot.ipxe")
    unknown = one(engine, msg(MsgType.SOLICIT, duid(2), IaNa(1, 0, 0), ClientArch((0x99,))))
    assert unknown.first(BootFileUrl) is None

    from ptftpd.dhcp6.boot import BootChoice6

    def with_params(request: BootRequest6) -> BootChoice6:
        seen.append(request)
        return BootChoice6(TFTP_URL, ("console=ttyS0",))

    engine = make_engine(boot_policy=with_params)
    got = one(
        engine,
        msg(MsgType.INFORMATION_REQUEST, duid(1), ClientArch((7,)), UserClass((b"iPXE",))),
    )
    assert got.first(BootFileParam) == BootFileParam(("console=ttyS0",))
    assert seen[-1].arches == (7,) and seen[-1].user_classes == (b"iPXE",)
    assert seen[-1].duid == duid(1)
    assert boot_url("http", SERVER, "/ipxe.efi", 8080) == HTTP_URL


def test_plain_client_gets_no_boot_options() -> None:
    engine = make_engine(boot_policy=ArchTablePolicy(default=TFTP_URL))
    adv = one(engine, msg(MsgType.SOLICIT, duid(1), IaNa(1, 0, 0)))
    assert adv.first(BootFileUrl) is None
    firmware = one(engine, msg(MsgType.SOLICIT, duid(2), IaNa(1, 0, 0), ClientArch((7,))))
    assert firmware.first(BootFileUrl) == BootFileUrl(TFTP_URL)


def test_proxy_mode_boot_options_only_for_netboot_clients() -> None:
    engine = make_engine(proxy=True, rapid_commit=True)
    netboot = (ClientArch((7,)), OptionRequest((59,)))
    adv = one(engine, msg(MsgType.SOLICIT, duid(1), IaNa(1, 0, 0), RapidCommit(), *netboot))
    assert adv.msg_type == MsgType.ADVERTISE, "never commits anything in proxy mode"
    assert adv.first(IaNa) is None and adv.first(BootFileUrl) == BootFileUrl(TFTP_URL)
    req = one(engine, msg(MsgType.REQUEST, duid(1), ServerId(SERVER_DUID), IaNa(1, 0, 0), *netboot))
    assert req.msg_type == MsgType.REPLY and req.first(IaNa) is None
    assert req.first(BootFileUrl) == BootFileUrl(TFTP_URL)
    info = one(engine, msg(MsgType.INFORMATION_REQUEST, duid(1), *netboot))
    assert info.first(BootFileUrl) == BootFileUrl(TFTP_URL)

    none(engine, msg(MsgType.SOLICIT, duid(2), IaNa(1, 0, 0)))  # not a netboot client
    catch_all = make_engine(proxy=True, boot_policy=ArchTablePolicy(default=TFTP_URL))
    none(catch_all, msg(MsgType.SOLICIT, duid(2), IaNa(1, 0, 0)))
    vendor_only = msg(MsgType.SOLICIT, duid(2), VendorClass(343, (b"PXEClient:Arch:00007",)))
    assert one(catch_all, vendor_only).first(BootFileUrl) == BootFileUrl(TFTP_URL)
    none(engine, msg(MsgType.INFORMATION_REQUEST, duid(2), OptionRequest((23,))))
    none(engine, msg(MsgType.RENEW, duid(1), ServerId(SERVER_DUID), IaNa(1, 0, 0), *netboot))
    none(engine, msg(MsgType.REBIND, duid(1), IaNa(1, 0, 0), *netboot))
    assert committed(engine) == []


def test_bindings_survive_restart_through_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "leases6.sqlite"
    store = SqliteStore(path)
    got = lease(make_engine(store), duid(1))
    store.close()  # committed before the Reply: nothing else to flush

    again = SqliteStore(path)
    engine = make_engine(again)
    assert lease(engine, duid(1)).address == got.address
    assert lease(engine, duid(2)).address != got.address
    again.close()


# -- malformed input never breaks the engine -----------------------------------------


def _well_formed_client_messages() -> st.SearchStrategy[bytes]:
    kinds = st.sampled_from(
        [
            MsgType.SOLICIT,
            MsgType.REQUEST,
            MsgType.RENEW,
            MsgType.REBIND,
            MsgType.RELEASE,
            MsgType.DECLINE,
            MsgType.CONFIRM,
            MsgType.INFORMATION_REQUEST,
        ]
    )
    ias = st.lists(
        st.builds(
            IaNa,
            st.integers(0, 3),
            st.just(0),
            st.just(0),
            st.lists(
                st.builds(
                    IaAddress, st.integers(0, 40).map(lambda i: PREFIX[i]), st.just(0), st.just(0)
                ),
                max_size=2,
            ).map(tuple),
        ),
        max_size=2,
    )
    sid = st.sampled_from([(), (ServerId(SERVER_DUID),), (ServerId(OTHER_DUID),)])
    return st.builds(
        lambda k, c, s, i: msg(k, duid(c), *s, *i, ClientArch((7,))),
        kinds,
        st.integers(0, 3),
        sid,
        ias,
    )


@settings(max_examples=300, deadline=None)
@given(_well_formed_client_messages(), st.data())
def test_mutated_packets_get_only_well_formed_replies(wire: bytes, data: st.DataObject) -> None:
    engine = make_engine(range_start=PREFIX[1], range_end=PREFIX[8])
    pos = data.draw(st.integers(0, len(wire) - 1))
    mutated = [
        wire[: data.draw(st.integers(0, len(wire)))],
        wire[:pos] + bytes([data.draw(st.integers(0, 255))]) + wire[pos + 1 :],
        wire,
    ]
    for blob in mutated:
        for out in engine.handle(blob, SOURCE, T0):
            reply = decode(out.payload)
            assert reply.msg_type in (MsgType.ADVERTISE, MsgType.REPLY)
            assert reply.first(ServerId) == ServerId(SERVER_DUID)


def test_proxy_pxe_clients_get_pxeclient_vendor_class_and_the_boot_service() -> None:
    """EDK2 PXEv6 beside another DHCPv6 server: our Advertise says PXEClient, then the
    firmware sends its Request (no IA, our server id) to the URL's host, port 4011."""
    engine = make_engine(proxy=True)
    pxe = (
        ClientArch((7,)),
        OptionRequest((59, 60)),
        VendorClass(343, (b"PXEClient:Arch:00007:UNDI:003016",)),
    )
    adv = one(engine, msg(MsgType.SOLICIT, duid(1), IaNa(1, 0, 0), *pxe))
    assert adv.first(VendorClass) == VendorClass(343, (b"PXEClient",))
    assert adv.first(IaNa) is None and adv.first(BootFileUrl) == BootFileUrl(TFTP_URL)
    normal = one(make_engine(), msg(MsgType.SOLICIT, duid(1), IaNa(1, 0, 0), *pxe))
    assert normal.first(VendorClass) is None, "with addresses, EDK2 wants no PXEClient"

    bs_source = ("fd00:77::99", 4011)
    request = msg(MsgType.REQUEST, duid(1), ServerId(SERVER_DUID), *pxe, xid=0x777)
    (out,) = engine.handle_boot_service(request, bs_source, T0)
    assert out.address == bs_source, "the reply goes back to port 4011"
    reply = decode(out.payload)
    assert reply.msg_type == MsgType.REPLY and reply.transaction_id == 0x777
    assert reply.first(BootFileUrl) == BootFileUrl(TFTP_URL) and reply.first(IaNa) is None
    assert reply.first(ClientId) == ClientId(duid(1))

    for ignored in (
        msg(MsgType.REQUEST, duid(1), ServerId(OTHER_DUID), *pxe),
        msg(MsgType.REQUEST, duid(1), *pxe),
        msg(MsgType.SOLICIT, duid(1), *pxe),
        msg(MsgType.REQUEST, duid(1), ServerId(SERVER_DUID)),  # not a netboot client
        request[:-3],
    ):
        assert engine.handle_boot_service(ignored, bs_source, T0) == []
    assert committed(engine) == []
