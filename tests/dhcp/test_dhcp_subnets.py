"""Several subnets behind relays (issue 10 item 9), through the sans-IO engine: the
subnet is chosen by option 118 (RFC 3011), 82.5 (RFC 3527), giaddr, or the ciaddr of
a routed renewal; each has its own range, router, DNS, boot file and static hosts."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from dhcpmsg import relayed_message

from ptftpd.dhcp import (
    DhcpConfig,
    DhcpEngine,
    DhcpServer,
    Message,
    MessageType,
    Opt,
    StaticHost,
    decode,
    encode,
)
from ptftpd.dhcp.local_leases import LocalLeases
from ptftpd.dhcp.scope import SubnetConfig
from ptftpd.dhcp.store import SqliteStore

NOW = 1_700_000_000.0  # the time each message arrives (handle takes it)
LOCAL = IPv4Network("10.5.0.0/24")
SERVER = IPv4Address("10.5.0.1")
RACK7 = SubnetConfig(
    network=IPv4Network("10.7.0.0/24"),
    range_start=IPv4Address("10.7.0.100"),
    range_end=IPv4Address("10.7.0.110"),
    routers=(IPv4Address("10.7.0.1"),),
    dns=(IPv4Address("10.7.0.53"),),
    domain_name="rack7.lab",
    bootfile="rack7/pxelinux.0",
    lease_time=600,
    static_hosts=(StaticHost("02:00:00:00:07:99", IPv4Address("10.7.0.99"), "r7n99"),),
)
RACK8 = SubnetConfig(
    network=IPv4Network("10.8.0.0/22"),
    routers=(IPv4Address("10.8.0.1"),),
    next_server=IPv4Address("10.8.0.5"),
)


def engine(tmp: Path | None = None, **overrides: object) -> DhcpEngine:
    cfg = DhcpConfig(
        server_ip=SERVER,
        network=LOCAL,
        bootfile="pxelinux.0",
        answer_all=True,
        subnets=(RACK7, RACK8),
        leases_path=None if tmp is None else tmp / "leases.sqlite",
    )
    return DhcpServer(replace(cfg, **overrides)).build_engine()  # type: ignore[arg-type]


def msg(mtype: MessageType, n: int, giaddr: str = "0.0.0.0", **opts: bytes) -> Message:
    return relayed_message(mtype, 0xC000 + n, bytes([2, 0, 0, 0, 7, n]), giaddr, **opts)


def exchange(eng: DhcpEngine, n: int, giaddr: str, **opts: bytes) -> tuple[Message, Message]:
    [out] = eng.handle(encode(msg(MessageType.DISCOVER, n, giaddr, **opts)), ("0.0.0.0", 68), NOW)
    offer = decode(out.payload)
    relayed = giaddr != "0.0.0.0"
    assert not relayed or out.address == (giaddr, 67)
    request = msg(
        MessageType.REQUEST,
        n,
        giaddr,
        requested_ip=offer.yiaddr.packed,
        server_id=SERVER.packed,
        **opts,
    )
    [out] = eng.handle(encode(request), ("0.0.0.0", 68), NOW)
    ack = decode(out.payload)
    assert ack.message_type is MessageType.ACK
    assert not relayed or out.address == (giaddr, 67)
    return offer, ack


def test_relayed_client_gets_its_subnets_settings() -> None:
    eng = engine()
    _, ack = exchange(eng, 1, "10.7.0.1")
    assert IPv4Address("10.7.0.100") <= ack.yiaddr <= IPv4Address("10.7.0.110")
    o = ack.options
    assert o[Opt.SUBNET_MASK] == IPv4Address("255.255.255.0").packed
    assert o[Opt.ROUTER] == IPv4Address("10.7.0.1").packed
    assert o[Opt.DNS] == IPv4Address("10.7.0.53").packed
    assert o[Opt.DOMAIN_NAME] == b"rack7.lab"
    assert o[Opt.LEASE_TIME] == (600).to_bytes(4, "big")
    assert ack.file_str == "rack7/pxelinux.0" and ack.siaddr == SERVER
    assert o[Opt.SERVER_ID] == SERVER.packed
    # The other rack: its own mask, router and next server, the default boot file.
    _, ack8 = exchange(eng, 2, "10.8.1.1")
    assert ack8.yiaddr in RACK8.network and ack8.yiaddr != IPv4Address("10.8.0.1")
    assert ack8.options[Opt.SUBNET_MASK] == IPv4Address("255.255.252.0").packed
    assert ack8.siaddr == IPv4Address("10.8.0.5") and ack8.file_str == "pxelinux.0"
    # And a local client still gets the local subnet.
    [out] = eng.handle(encode(msg(MessageType.DISCOVER, 3)), ("0.0.0.0", 68), NOW)
    assert decode(out.payload).yiaddr in LOCAL


def test_subnet_and_link_selection_options_win_over_giaddr() -> None:
    eng = engine()
    # RFC 3011: option 118 names the client's subnet (the relay sits elsewhere).
    _, ack = exchange(eng, 1, "10.5.0.254", o118=IPv4Address("10.7.0.1").packed)
    assert ack.yiaddr in RACK7.network
    # RFC 3527: link selection, sub-option 5 of relay information (82).
    info = b"\x01\x03abc\x05\x04" + IPv4Address("10.8.2.1").packed
    _, ack = exchange(eng, 2, "10.5.0.254", relay_agent_info=info)
    assert ack.yiaddr in RACK8.network
    assert ack.options[Opt.RELAY_AGENT_INFO] == info  # echoed (RFC 3046)


def test_unknown_link_is_dropped_and_static_hosts_are_per_subnet() -> None:
    eng = engine()
    assert eng.handle(encode(msg(MessageType.DISCOVER, 1, "192.0.2.1")), ("0.0.0.0", 68), NOW) == []
    static = msg(MessageType.DISCOVER, 0x99, "10.7.0.1")
    [out] = eng.handle(encode(static), ("0.0.0.0", 68), NOW)
    reply = decode(out.payload)
    assert reply.yiaddr == IPv4Address("10.7.0.99")
    assert reply.options[Opt.HOSTNAME] == b"r7n99"
    # The same MAC on the local link is just another client.
    [out] = eng.handle(encode(msg(MessageType.DISCOVER, 0x99)), ("0.0.0.0", 68), NOW)
    assert decode(out.payload).yiaddr in LOCAL


def test_routed_renewal_and_restart_keep_each_subnets_leases(tmp_path: Path) -> None:
    eng = engine(tmp_path)
    _, ack7 = exchange(eng, 1, "10.7.0.1")
    _, ack5 = exchange(eng, 2, "0.0.0.0")
    # A unicast renewal from the routed client (no relay on the way): its ciaddr says
    # which subnet it is on.
    renew = msg(MessageType.REQUEST, 1)
    renew.ciaddr = ack7.yiaddr
    [out] = eng.handle(encode(renew), ("0.0.0.0", 68), NOW)
    assert decode(out.payload).message_type is MessageType.ACK
    assert out.address == (str(ack7.yiaddr), 68)
    eng.policy.store.close()
    again = engine(tmp_path)
    assert again.scopes[1].policy.lease_for(b"hw:\x01\x02\x00\x00\x00\x07\x01") is not None
    assert {str(le.address) for le in again.scopes[1].policy.leases()} == {str(ack7.yiaddr)}
    assert {str(le.address) for le in again.policy.leases()} == {str(ack5.yiaddr)}
    rows = again.policy.store
    assert isinstance(rows, LocalLeases) and isinstance(rows.persist, SqliteStore)
    again.policy.store.close()


def test_full_relayed_pool_is_not_served_from_another_subnet() -> None:
    small = replace(
        RACK7, range_start=IPv4Address("10.7.0.100"), range_end=IPv4Address("10.7.0.101")
    )
    eng = engine(subnets=(small,))
    got = {exchange(eng, n, "10.7.0.1")[1].yiaddr for n in (1, 2)}
    assert got == {IPv4Address("10.7.0.100"), IPv4Address("10.7.0.101")}
    assert eng.handle(encode(msg(MessageType.DISCOVER, 3, "10.7.0.1")), ("0.0.0.0", 68), NOW) == []
