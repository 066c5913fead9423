"""The RFC MUSTs a protocol audit found broken (issue 10, items 1-8), one test each,
driven through the sans-IO engine (bytes in, bytes out) and the codec."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from dhcpmsg import client_message

import ptftpd.dhcp.server as server_module
from ptftpd import datagrams
from ptftpd.dhcp import (
    BootChoice,
    DhcpConfig,
    DhcpEngine,
    DhcpServer,
    Message,
    MessageType,
    Opt,
    Outgoing,
    StaticHost,
    decode,
    encode,
)
from ptftpd.dhcp.packet import MAGIC_COOKIE
from support import script

NOW = 1_700_000_000.0  # the time each message arrives (handle takes it)
NET = IPv4Network("10.5.0.0/24")
SERVER = IPv4Address("10.5.0.1")
RANGE = (IPv4Address("10.5.0.100"), IPv4Address("10.5.0.150"))
OUTSIDE_RANGE = IPv4Address("10.5.0.20")


def engine(**overrides: object) -> DhcpEngine:
    cfg = DhcpConfig(
        server_ip=SERVER,
        network=NET,
        bootfile="pxelinux.0",
        answer_all=True,
        range_start=RANGE[0],
        range_end=RANGE[1],
    )
    return DhcpServer(replace(cfg, **overrides)).build_engine()  # type: ignore[arg-type]


def msg(mtype: MessageType | None, n: int = 1, **opts: bytes) -> Message:
    return client_message(mtype, 0xA000 + n, bytes([2, 0, 0, 0, 1, n]), **opts)


def replies(eng: DhcpEngine, m: Message) -> list[Message]:
    return [decode(out.payload) for out in eng.handle(encode(m), ("0.0.0.0", 68), NOW)]


def bind(eng: DhcpEngine, n: int) -> IPv4Address:
    (offer,) = replies(eng, msg(MessageType.DISCOVER, n))
    (ack,) = replies(
        eng,
        msg(MessageType.REQUEST, n, requested_ip=offer.yiaddr.packed, server_id=SERVER.packed),
    )
    assert ack.message_type is MessageType.ACK
    return ack.yiaddr


# -- 1: silence towards clients we have no record of (RFC 2131 4.3.2) -------------------


def init_reboot(n: int, address: IPv4Address) -> Message:
    return msg(MessageType.REQUEST, n, requested_ip=address.packed)


def rebinding(n: int, address: IPv4Address) -> Message:
    m = msg(MessageType.REQUEST, n)
    m.ciaddr = address
    m.flags = 0x8000
    return m


@pytest.mark.parametrize("state", [init_reboot, rebinding])
@pytest.mark.parametrize("address", [OUTSIDE_RANGE, IPv4Address("192.0.2.7")])
def test_unknown_client_wrong_request_is_met_with_silence(state: object, address: object) -> None:
    assert callable(state) and isinstance(address, IPv4Address)
    eng = engine()
    bind(eng, 1)  # the server is busy with others; client 9 is a stranger
    assert replies(eng, state(9, address)) == []
    # Authoritative for the segment: the stranger is told at once.
    (nak,) = replies(engine(authoritative=True), state(9, address))
    assert nak.message_type is MessageType.NAK


@pytest.mark.parametrize("authoritative", [False, True])
def test_known_client_wrong_request_is_naked(authoritative: bool) -> None:
    eng = engine(authoritative=authoritative)
    bind(eng, 1)
    (nak,) = replies(eng, init_reboot(1, OUTSIDE_RANGE))
    assert nak.message_type is MessageType.NAK


# -- 2: option 61 echoed (RFC 6842) -----------------------------------------------------


def test_client_identifier_echoed_in_offer_ack_and_nak() -> None:
    eng = engine()
    cid = b"\xff\x00\x00\x00\x01\x00\x01\x02\x03"
    infiniband = dict(client_id=cid, parameter_list=bytes([1, 3]))
    discover = msg(MessageType.DISCOVER, 1, **infiniband)
    discover.htype, discover.hlen, discover.chaddr = 32, 0, bytes(16)
    (offer,) = replies(eng, discover)
    assert offer.options[Opt.CLIENT_ID] == cid
    request = replace(
        discover,
        options={
            **discover.options,
            Opt.MESSAGE_TYPE: bytes([MessageType.REQUEST]),
            Opt.REQUESTED_IP: offer.yiaddr.packed,
            Opt.SERVER_ID: SERVER.packed,
        },
    )
    (ack,) = replies(eng, request)
    assert ack.message_type is MessageType.ACK and ack.options[Opt.CLIENT_ID] == cid
    wrong = replace(request, options={**request.options, Opt.REQUESTED_IP: b"\x0a\x05\x00\x14"})
    del wrong.options[Opt.SERVER_ID]
    (nak,) = replies(eng, wrong)
    assert nak.message_type is MessageType.NAK and nak.options[Opt.CLIENT_ID] == cid


# -- 3: BOOTP replies fit the client ----------------------------------------------------


def bootp_engine() -> DhcpEngine:
    mac = "02:00:00:00:01:01"
    return engine(
        dhcp=False,
        bootp=True,
        dns=tuple(IPv4Address(f"10.5.0.{i}") for i in (53, 54, 55)),
        domain_name="rack-17.lab.example.org",
        routers=(IPv4Address("10.5.0.254"),),
        static_hosts=(StaticHost(mac, IPv4Address("10.5.0.42"), "build-node-0042"),),
        boot_file_size=4000,
    )


def bootp_request(vend: bytes, n: int = 1) -> bytes:
    header = encode(Message(xid=0xB000 + n, chaddr=bytes([2, 0, 0, 0, 1, n]) + bytes(10)))
    return header[:236] + vend


def test_bootp_reply_fits_a_64_byte_vendor_area() -> None:
    eng = bootp_engine()
    data = bootp_request(MAGIC_COOKIE + b"\xff" + bytes(59))
    assert len(data) == 300
    (out,) = eng.handle(data, ("0.0.0.0", 68), NOW)
    assert len(out.payload) <= 300
    reply = decode(out.payload)
    assert reply.yiaddr == IPv4Address("10.5.0.42") and reply.file_str == "pxelinux.0"
    # Most important first: mask and router always fit; the rest as room allows.
    assert reply.options[Opt.SUBNET_MASK] == NET.netmask.packed
    assert reply.options[Opt.ROUTER] == IPv4Address("10.5.0.254").packed
    dns = b"".join(IPv4Address(f"10.5.0.{i}").packed for i in (53, 54, 55))
    assert reply.options[Opt.DNS] == dns
    vend_used = 4 + sum(2 + len(v) for v in reply.options.values()) + 1
    assert vend_used <= 64
    # A client with a larger vendor area gets everything.
    (big,) = eng.handle(bootp_request(MAGIC_COOKIE + b"\xff" + bytes(307)), ("0.0.0.0", 68), NOW)
    assert len(big.payload) <= 548
    full = decode(big.payload)
    assert full.options[Opt.HOSTNAME] == b"build-node-0042"
    assert full.options[Opt.DOMAIN_NAME] == b"rack-17.lab.example.org"


@pytest.mark.parametrize(
    "vend", [bytes(64), b"\x01\x02\x03\x04" + bytes(60), b"CMU\x00" + b"\x01\x04abcd" + bytes(54)]
)
def test_bootp_without_rfc1048_cookie_gets_a_plain_reply(vend: bytes) -> None:
    (out,) = bootp_engine().handle(bootp_request(vend, 2), ("0.0.0.0", 68), NOW)
    assert len(out.payload) == 300
    assert out.payload[236:240] != MAGIC_COOKIE and not out.payload[236:].strip(b"\x00")
    reply = decode(out.payload)
    assert reply.yiaddr in NET and reply.file_str == "pxelinux.0" and reply.siaddr == SERVER


# -- 4: boot options whatever option 55 says --------------------------------------------


def test_boot_policy_options_survive_a_parameter_request_list() -> None:
    eng = engine()
    eng.boot_policy = lambda m: BootChoice(
        "pxelinux.0", options={209: b"pxelinux.cfg/rack17", 210: b"/srv/", 175: b"\x13\x01\x01"}
    )
    (offer,) = replies(eng, msg(MessageType.DISCOVER, 1, parameter_list=bytes([1, 3, 6])))
    assert offer.options[209] == b"pxelinux.cfg/rack17"
    assert offer.options[210] == b"/srv/" and offer.options[175] == b"\x13\x01\x01"
    assert offer.file_str == "pxelinux.0" and offer.siaddr == SERVER
    # file and siaddr never depend on 55, even when it names nothing of ours.
    (bare,) = replies(engine(), msg(MessageType.DISCOVER, 2, parameter_list=bytes([252])))
    assert bare.file_str == "pxelinux.0" and bare.siaddr == SERVER


# -- 5: the encoder keeps an option that fits -------------------------------------------


def test_no_room_reserved_for_overload_when_sname_and_file_are_used() -> None:
    m = Message(op=2, sname=b"boot-server", file=b"pxelinux.0")
    # 576 - 28 - 236 - 4 = 308 bytes of options, one for END: 3 + 252 + 52 = 307.
    m.options = {53: b"\x02", 224: bytes(250), 225: bytes(50), 226: bytes(100)}
    back = decode(encode(m, 576))
    assert back.options[225] == bytes(50)
    assert 226 not in back.options and back.file_str == "pxelinux.0"


# -- 6: numeric settings are checked against their wire size ----------------------------


@pytest.mark.parametrize(
    ("argv", "toml"),
    [
        (["--lease-time", "4294967296"], ""),
        (["--lease-time", "0"], ""),
        ([], "lease-time = 4294967296\n"),
        ([], "reply-delay = 1e400\n"),
        ([], "port = 70000\n"),
        ([], '[[subnet]]\nnetwork = "10.9.0.0/24"\nlease-time = 5000000000\n'),
    ],
)
def test_out_of_range_numbers_are_a_one_line_usage_error(
    tmp_path: Path, argv: list[str], toml: str
) -> None:
    conf = tmp_path / "dhcpd.toml"
    conf.write_text(toml)
    res = subprocess.run(
        [script("dhcpd"), "--config", str(conf), *argv, "lo", "pxelinux.0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(" (try --help)"), res.stderr
    where = "--lease-time: " if argv else f"{conf}:"
    assert lines[0].startswith(f"dhcpd: {where}"), res.stderr


def test_largest_finite_lease_time_is_sent_as_is() -> None:
    eng = engine(lease_time=0xFFFFFFFE)
    (offer,) = replies(eng, msg(MessageType.DISCOVER, 1))
    assert offer.options[Opt.LEASE_TIME] == b"\xff\xff\xff\xfe"


# -- 7: one odd hardware address does not turn unicast off ------------------------------


def test_odd_hardware_address_is_broadcast_and_others_stay_unicast() -> None:
    eng = engine()
    odd = msg(MessageType.DISCOVER, 1, client_id=b"\x20odd-client")
    odd.htype, odd.hlen = 32, 16
    (out,) = eng.handle(encode(odd), ("0.0.0.0", 68), NOW)
    assert out.arp is None and out.address == ("255.255.255.255", 68)
    (normal,) = eng.handle(encode(msg(MessageType.DISCOVER, 2)), ("0.0.0.0", 68), NOW)
    assert normal.arp is not None and normal.address[0] != "255.255.255.255"


def test_server_keeps_unicast_after_an_odd_client(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []

    def fake_neighbour(sock: socket.socket, iface: str, mac: bytes, ip: IPv4Address) -> bool:
        calls.append(mac)
        return len(mac) == 6  # what the real one answers

    monkeypatch.setattr(server_module, "add_neighbour", fake_neighbour)
    server = DhcpServer(DhcpConfig(server_ip=SERVER, network=NET, interface="lo"))
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    server._endpoint = datagrams.endpoint(
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM), lambda burst: None, server_module.log
    )
    try:
        port = sink.getsockname()[1]
        server._send(Outgoing(b"x", ("127.0.0.1", port), (bytes(16), IPv4Address("10.5.0.9"))))
        server._send(Outgoing(b"y", ("127.0.0.1", port), (bytes(6), IPv4Address("10.5.0.10"))))
    finally:
        server._endpoint.close()
        sink.close()
    assert calls and calls[-1] == bytes(6)


# -- 8: static hosts and SELECTING ------------------------------------------------------


def test_static_host_offer_and_ack_state_the_same_lease() -> None:
    host = StaticHost("02:00:00:00:01:01", IPv4Address("10.5.0.42"), "node42")
    eng = engine(static_hosts=(host,), lease_time=7200)
    (offer,) = replies(eng, msg(MessageType.DISCOVER, 1))
    (ack,) = replies(
        eng,
        msg(MessageType.REQUEST, 1, requested_ip=offer.yiaddr.packed, server_id=SERVER.packed),
    )
    assert offer.yiaddr == ack.yiaddr == host.address
    for reply in (offer, ack):
        assert reply.options[Opt.LEASE_TIME] == (7200).to_bytes(4, "big")
        assert reply.options[Opt.RENEWAL_TIME] == (3600).to_bytes(4, "big")
        assert reply.options[Opt.REBINDING_TIME] == (6300).to_bytes(4, "big")


def test_selecting_request_for_an_address_never_offered_is_naked() -> None:
    eng = engine()
    (offer,) = replies(eng, msg(MessageType.DISCOVER, 1))
    other = IPv4Address(int(offer.yiaddr) + 5)
    (nak,) = replies(
        eng, msg(MessageType.REQUEST, 1, requested_ip=other.packed, server_id=SERVER.packed)
    )
    assert nak.message_type is MessageType.NAK
    # Never offered anything at all, and naming us: NAK too (we are the chosen server).
    (nak2,) = replies(
        eng, msg(MessageType.REQUEST, 2, requested_ip=other.packed, server_id=SERVER.packed)
    )
    assert nak2.message_type is MessageType.NAK
    # The offered address is still granted.
    (ack,) = replies(
        eng, msg(MessageType.REQUEST, 1, requested_ip=offer.yiaddr.packed, server_id=SERVER.packed)
    )
    assert ack.message_type is MessageType.ACK
