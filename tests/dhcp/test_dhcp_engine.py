"""The sans-IO engine (RFC 2131 decisions, addressing, boot policy hook) and the asyncio
server embedded in a caller's event loop (loopback only)."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest
from dhcpmsg import client_message
from hypothesis import given, settings
from hypothesis import strategies as st

from ptftpd.dhcp import (
    BootChoice,
    DhcpConfig,
    DhcpEngine,
    DhcpServer,
    Message,
    MessageType,
    Opt,
    decode,
    encode,
    pxe_vendor_options,
)
from ptftpd.dhcp.scope import SubnetConfig
from support import free_udp_port, require_root

NOW = 1_700_000_000.0  # the time each message arrives (handle takes it)
NET = IPv4Network("10.5.0.0/24")
SERVER = IPv4Address("10.5.0.1")
PXE = b"PXEClient:Arch:00007:UNDI:003016"


def engine(**overrides: object) -> DhcpEngine:
    cfg = DhcpConfig(server_ip=SERVER, network=NET, bootfile="pxelinux.0", answer_all=True)
    cfg = replace(cfg, **overrides)  # type: ignore[arg-type]
    eng = DhcpServer(cfg).build_engine()
    return eng


def req(mtype: MessageType | None, n: int = 1, **opts: bytes) -> Message:
    return client_message(mtype, 0x1000 + n, bytes([2, 0, 0, 0, 0, n]), **opts)


def one(eng: DhcpEngine, msg: Message) -> tuple[Message, tuple[str, int], object]:
    out = eng.handle(encode(msg), ("0.0.0.0", 68), NOW)
    assert len(out) == 1, out
    return decode(out[0].payload), out[0].address, out[0].arp


def lease(eng: DhcpEngine, n: int = 1, **opts: bytes) -> Message:
    offer, _, _ = one(eng, req(MessageType.DISCOVER, n, **opts))
    ack, _, _ = one(
        eng,
        req(
            MessageType.REQUEST,
            n,
            requested_ip=offer.yiaddr.packed,
            server_id=SERVER.packed,
            **opts,
        ),
    )
    assert ack.message_type is MessageType.ACK
    return ack


def test_pxe_only_ignores_others() -> None:
    eng = engine(answer_all=False)
    assert eng.handle(encode(req(MessageType.DISCOVER)), ("0.0.0.0", 68), NOW) == []
    offer, _, _ = one(eng, req(MessageType.DISCOVER, vendor_class=PXE, client_arch=b"\x00\x07"))
    assert offer.message_type is MessageType.OFFER
    assert offer.options[Opt.VENDOR_CLASS] == b"PXEClient"
    assert offer.options[Opt.VENDOR_SPECIFIC] == pxe_vendor_options()
    assert offer.file_str == "pxelinux.0" and offer.options[Opt.BOOTFILE_NAME] == b"pxelinux.0"
    assert offer.siaddr == SERVER and offer.options[Opt.TFTP_SERVER_NAME] == b"10.5.0.1"
    uuid = b"\x00" + bytes(range(16))
    with_uuid = one(
        eng,
        req(
            MessageType.DISCOVER,
            2,
            vendor_class=PXE,
            client_uuid=uuid,
            parameter_list=bytes([1, 3]),
        ),
    )[0]
    assert with_uuid.options[Opt.CLIENT_UUID] == uuid
    eng2 = engine(answer_all=False, pxe_vendor_prefixes=("PXEClient", "HW-Client"))
    assert eng2.handle(
        encode(req(MessageType.DISCOVER, vendor_class=b"HW-Client:x")), ("0.0.0.0", 68), NOW
    )


def test_offer_and_ack_contents() -> None:
    eng = engine(
        dns=(IPv4Address("10.5.0.53"),), routers=(IPv4Address("10.5.0.254"),), lease_time=600
    )
    ack = lease(eng)
    o = ack.options
    assert ack.yiaddr in NET and ack.yiaddr not in (SERVER, IPv4Address("10.5.0.254"))
    assert o[Opt.SERVER_ID] == SERVER.packed
    assert o[Opt.SUBNET_MASK] == bytes([255, 255, 255, 0])
    assert o[Opt.ROUTER] == IPv4Address("10.5.0.254").packed
    assert o[Opt.DNS] == IPv4Address("10.5.0.53").packed
    assert int.from_bytes(o[Opt.LEASE_TIME], "big") == 600
    assert int.from_bytes(o[Opt.RENEWAL_TIME], "big") == 300
    assert int.from_bytes(o[Opt.REBINDING_TIME], "big") == 525
    assert Opt.VENDOR_CLASS not in o  # not a PXE client


def test_reply_addressing_rfc2131_4_1() -> None:
    eng = engine()
    _, dest, arp = one(eng, req(MessageType.DISCOVER, 1))
    assert dest == ("10.5.0.2", 68) and arp == (bytes([2, 0, 0, 0, 0, 1]), IPv4Address("10.5.0.2"))
    bcast = req(MessageType.DISCOVER, 2)
    bcast.flags = 0x8000
    _, dest, arp = one(eng, bcast)
    assert dest == ("255.255.255.255", 68) and arp is None
    relayed = req(MessageType.DISCOVER, 3, relay_agent_info=b"\x01\x02ab")
    relayed.giaddr = IPv4Address("10.5.0.200")
    offer, dest, _ = one(eng, relayed)
    assert dest == ("10.5.0.200", 67)
    assert offer.giaddr == relayed.giaddr and offer.options[Opt.RELAY_AGENT_INFO] == b"\x01\x02ab"
    assert list(offer.options)[-1] == Opt.RELAY_AGENT_INFO
    # Echoed also without giaddr (a snooping switch inserted it, RFC 3046 2.2, issue 19
    # item 9); relays from other subnets are not ours.
    snooped = one(eng, req(MessageType.DISCOVER, 4, relay_agent_info=b"\x01\x00"))[0]
    assert snooped.options[Opt.RELAY_AGENT_INFO] == b"\x01\x00"
    foreign = req(MessageType.DISCOVER, 5)
    foreign.giaddr = IPv4Address("10.6.0.1")
    assert eng.handle(encode(foreign), ("0.0.0.0", 68), NOW) == []
    renew = req(MessageType.REQUEST, 1)
    renew.ciaddr = IPv4Address("10.5.0.2")
    ack, dest, arp = one(eng, renew)
    assert ack.message_type is MessageType.ACK and dest == ("10.5.0.2", 68) and arp is None


def test_request_states_and_nak() -> None:
    eng = engine(authoritative=True)
    first = lease(eng, 1)
    # INIT-REBOOT for someone else's address, authoritative server: NAK, broadcast.
    nak, dest, _ = one(eng, req(MessageType.REQUEST, 2, requested_ip=first.yiaddr.packed))
    assert nak.message_type is MessageType.NAK and dest == ("255.255.255.255", 68)
    assert nak.yiaddr == IPv4Address(0) and Opt.LEASE_TIME not in nak.options
    # INIT-REBOOT on the wrong network: NAK.
    wrong = req(MessageType.REQUEST, 1, requested_ip=IPv4Address("192.0.2.7").packed)
    assert one(eng, wrong)[0].message_type is MessageType.NAK
    # INIT-REBOOT of a known client: ACK.
    back = one(eng, req(MessageType.REQUEST, 1, requested_ip=first.yiaddr.packed))[0]
    assert back.message_type is MessageType.ACK and back.yiaddr == first.yiaddr
    # INIT-REBOOT by an unknown client for a free address: silence (RFC 2131 4.3.2).
    assert (
        eng.handle(
            encode(req(MessageType.REQUEST, 7, requested_ip=IPv4Address("10.5.0.99").packed)),
            ("0.0.0.0", 68),
            NOW,
        )
        == []
    )


def test_request_for_other_server_withdraws_offer() -> None:
    eng = engine()
    offer, _, _ = one(eng, req(MessageType.DISCOVER, 1))
    chose_other = req(
        MessageType.REQUEST,
        1,
        requested_ip=IPv4Address("10.5.0.77").packed,
        server_id=IPv4Address("10.5.0.9").packed,
    )
    assert eng.handle(encode(chose_other), ("0.0.0.0", 68), NOW) == []
    # The withdrawn address is free at once for the next client that asks for it.
    again = req(MessageType.DISCOVER, 2, requested_ip=offer.yiaddr.packed)
    assert one(eng, again)[0].yiaddr == offer.yiaddr
    taken = req(MessageType.REQUEST, 2, requested_ip=offer.yiaddr.packed, server_id=SERVER.packed)
    assert one(eng, taken)[0].message_type is MessageType.ACK


def test_release_decline_inform() -> None:
    eng = engine()
    ack = lease(eng, 1)
    release = req(MessageType.RELEASE, 1, server_id=SERVER.packed)
    release.ciaddr = ack.yiaddr
    assert eng.handle(encode(release), ("0.0.0.0", 68), NOW) == []
    again = lease(eng, 1)
    assert again.yiaddr == ack.yiaddr
    decline = req(MessageType.DECLINE, 1, requested_ip=again.yiaddr.packed, server_id=SERVER.packed)
    assert eng.handle(encode(decline), ("0.0.0.0", 68), NOW) == []
    assert lease(eng, 1).yiaddr != again.yiaddr
    inform = req(MessageType.INFORM, 9)
    inform.ciaddr = IPv4Address("10.5.0.150")
    reply, dest, _ = one(eng, inform)
    assert reply.message_type is MessageType.ACK and reply.yiaddr == IPv4Address(0)
    assert Opt.LEASE_TIME not in reply.options and dest == ("10.5.0.150", 68)


def test_parameter_request_list_order_and_extras() -> None:
    eng = engine(extra_options={42: IPv4Address("10.5.0.123").packed, 15: b"lab"})
    offer, _, _ = one(eng, req(MessageType.DISCOVER, parameter_list=bytes([6, 42, 3, 1])))
    codes = list(offer.options)
    assert codes[0] == Opt.MESSAGE_TYPE
    assert codes[1:4] == [42, 3, 1]  # requested, in the client's order (6: none configured)
    assert 15 not in codes  # configured extra that was not asked for
    assert Opt.SERVER_ID in codes and Opt.LEASE_TIME in codes and Opt.BOOTFILE_NAME in codes
    everything = one(eng, req(MessageType.DISCOVER, 2))[0]
    assert everything.options[15] == b"lab" and everything.options[42]


def test_boot_policy_hook() -> None:
    seen: list[Message] = []

    def boot(request: Message) -> BootChoice | str | None:
        seen.append(request)
        if request.has_user_class("iPXE"):
            return BootChoice("http://10.5.0.1/boot.ipxe", options={175: b"\x13\x01\x01"})
        if request.arch == 7:
            return BootChoice("ipxe.efi", next_server=IPv4Address("10.5.0.7"))
        if request.arch == 6:
            raise RuntimeError("bug in a hook")
        if request.arch == 0:
            return "undionly.kpxe"
        return None

    eng = engine()
    eng.boot_policy = boot
    efi = one(eng, req(MessageType.DISCOVER, 1, vendor_class=PXE, client_arch=b"\x00\x07"))[0]
    assert efi.file_str == "ipxe.efi" and efi.siaddr == IPv4Address("10.5.0.7")
    assert efi.options[Opt.TFTP_SERVER_NAME] == b"10.5.0.7"
    assert seen[-1].vendor_class == PXE.decode() and seen[-1].arch == 7
    ipxe = one(eng, req(MessageType.DISCOVER, 2, user_class=b"iPXE", client_arch=b"\x00\x07"))[0]
    assert ipxe.file_str == "http://10.5.0.1/boot.ipxe" and ipxe.options[175] == b"\x13\x01\x01"
    bios = one(eng, req(MessageType.DISCOVER, 3, client_arch=b"\x00\x00"))[0]
    assert bios.options[Opt.BOOTFILE_NAME] == b"undionly.kpxe"
    broken = one(eng, req(MessageType.DISCOVER, 4, client_arch=b"\x00\x06"))[0]
    assert broken.file_str == "pxelinux.0"  # the default, and the server goes on
    none = one(eng, req(MessageType.DISCOVER, 5, client_arch=b"\x00\x0b"))[0]
    assert none.file_str == "" and Opt.BOOTFILE_NAME not in none.options
    odd = one(eng, req(MessageType.DISCOVER, 6, client_arch=b"\xff\xfe\x00"))[0]
    assert odd.message_type is MessageType.OFFER  # unknown arch codes are fine


def test_bootp_only_when_enabled() -> None:
    dhcp = engine()
    bootp_req = req(None, 1)  # RFC 1048 vendor area (cookie), no options
    assert dhcp.handle(encode(bootp_req), ("0.0.0.0", 68), NOW) == []
    bootp = engine(dhcp=False, bootp=True, boot_file_size=1025)
    reply, _, _ = one(bootp, bootp_req)
    assert reply.message_type is None and reply.yiaddr in NET and reply.file_str == "pxelinux.0"
    assert reply.options[Opt.BOOT_FILE_SIZE] == b"\x00\x03"
    assert bootp.handle(encode(req(MessageType.DISCOVER, 2)), ("0.0.0.0", 68), NOW) == []


def test_garbage_is_dropped_and_counted() -> None:
    eng = engine()
    assert eng.handle(b"\x01" * 50, ("0.0.0.0", 68), NOW) == []
    assert (
        eng.handle(encode(Message(op=2, options={Opt.MESSAGE_TYPE: b"\x01"})), ("0.0.0.0", 68), NOW)
        == []
    )
    assert eng.dropped == 1
    assert lease(eng).message_type is MessageType.ACK


def test_small_max_message_size_keeps_essentials() -> None:
    eng = engine(extra_options={c: bytes(60) for c in range(224, 232)})
    offer = req(MessageType.DISCOVER, 1, max_message_size=(576).to_bytes(2, "big"))
    data = eng.handle(encode(offer), ("0.0.0.0", 68), NOW)[0].payload
    assert len(data) <= 576 - 28
    got = decode(data)
    assert got.message_type is MessageType.OFFER and got.options[Opt.SERVER_ID]


def test_server_in_callers_loop_with_hook() -> None:
    require_root()  # SO_BINDTODEVICE on lo
    port, client_port = free_udp_port(), free_udp_port()
    cfg = DhcpConfig(
        server_ip=IPv4Address("127.0.0.1"),
        network=IPv4Network("127.0.0.0/8"),
        interface="lo",
        bootfile="default.0",
        port=port,
        client_port=client_port,
        answer_all=True,
    )

    async def scenario() -> Message:
        server = DhcpServer(cfg, boot_policy=lambda m: BootChoice(f"arch-{m.arch}.efi"))
        await server.start()
        try:
            loop = asyncio.get_running_loop()
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", client_port))
            sock.setblocking(False)
            inform = req(MessageType.INFORM, 1, client_arch=b"\x00\x0b")
            inform.ciaddr = IPv4Address("127.0.0.1")
            sock.sendto(encode(inform), ("127.0.0.1", port))
            data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 5)
            sock.close()
            return decode(data)
        finally:
            server.close()
            assert server.closed

    reply = asyncio.run(scenario())
    assert reply.message_type is MessageType.ACK and reply.file_str == "arch-11.efi"


@pytest.mark.parametrize("bad", [b"", b"\x00" * 236 + b"\x63\x82\x53\x63\x35\xff"])
def test_engine_never_raises_on_bad_input(bad: bytes) -> None:
    assert engine().handle(bad, ("0.0.0.0", 68), NOW) == []


def test_ipxe_gets_its_script_not_the_binary_again() -> None:
    eng = engine(bootfile="undionly.kpxe", ipxe_bootfile="boot.ipxe")
    rom = one(eng, req(MessageType.DISCOVER, 1, vendor_class=PXE))[0]
    assert rom.file_str == "undionly.kpxe"
    ipxe = one(eng, req(MessageType.DISCOVER, 1, vendor_class=PXE, user_class=b"iPXE"))[0]
    assert ipxe.file_str == "boot.ipxe"
    ipxe175 = one(eng, req(MessageType.DISCOVER, 2, vendor_class=PXE, ipxe_encap=b"\x13\x01\x01"))[
        0
    ]
    assert ipxe175.file_str == "boot.ipxe"


relevant = st.sampled_from([12, 43, 50, 51, 53, 54, 55, 57, 60, 61, 77, 82, 93, 94, 97, 118, 175])
RELAYED = IPv4Network("10.6.0.0/24")
fuzz_messages = st.builds(
    Message,
    op=st.sampled_from([1, 1, 1, 2]),
    htype=st.integers(0, 255),
    hlen=st.integers(0, 16),
    flags=st.integers(0, 65535),
    ciaddr=st.sampled_from([IPv4Address(0), IPv4Address("10.5.0.9"), IPv4Address("1.2.3.4")]),
    giaddr=st.sampled_from(
        [IPv4Address(0), IPv4Address("10.5.0.200"), IPv4Address("10.6.0.1"), IPv4Address("9.9.9.9")]
    ),
    chaddr=st.binary(min_size=16, max_size=16),
    options=st.dictionaries(
        relevant,
        st.one_of(
            st.binary(max_size=20),
            st.sampled_from(
                [
                    b"\x01",
                    b"\x03",
                    b"\x07",
                    b"\x08",
                    SERVER.packed,
                    PXE,
                    b"iPXE",
                    b"\x0a\x06\x00\x01",
                ]
            ),
        ),
        max_size=10,
    ),
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(fuzz_messages, st.integers(0, 2**32 - 1)), max_size=6),
    st.booleans(),
)
def test_engine_survives_any_message_sequence(msgs: list[tuple[Message, int]], bootp: bool) -> None:
    eng = engine(bootp=bootp, dhcp=not bootp, subnets=(SubnetConfig(RELAYED),))
    for msg, xid in msgs:
        msg.xid = xid
        for out in eng.handle(encode(msg), ("0.0.0.0", 68), NOW):
            reply = decode(out.payload)
            assert reply.op == 2 and reply.xid == xid and reply.chaddr == msg.chaddr
            assert reply.yiaddr == IPv4Address(0) or reply.yiaddr in NET or reply.yiaddr in RELAYED
            if reply.message_type is not None and Opt.CLIENT_ID in msg.options:
                assert reply.options[Opt.CLIENT_ID] == msg.options[Opt.CLIENT_ID]


def test_excluded_addresses_never_offered() -> None:
    eng = engine(
        range_start=IPv4Address("10.5.0.2"),
        range_end=IPv4Address("10.5.0.4"),
        exclude=(IPv4Address("10.5.0.3"),),
    )
    got = {lease(eng, n).yiaddr for n in (1, 2)}
    assert got == {IPv4Address("10.5.0.2"), IPv4Address("10.5.0.4")}
    assert (
        eng.handle(encode(req(MessageType.DISCOVER, 3)), ("0.0.0.0", 68), NOW) == []
    )  # full, and no loop
