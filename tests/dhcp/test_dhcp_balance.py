"""RFC 3074 load balancing (dhcp/balance.py): the hash against the RFC's definition, the
split of the 256 buckets, what a server answers, and the engine leaving other buckets."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest
from dhcpmsg import client_message
from hypothesis import given
from hypothesis import strategies as st

from ptftpd.dhcp import DhcpConfig, DhcpServer, Message, MessageType, decode, encode
from ptftpd.dhcp.balance import (
    BUCKETS,
    MIXING_TABLE,
    Balancer,
    bucket_of,
    hash_key,
    owners,
    pearson,
)

# SHA-256 of the 256 octets of RFC 3074 section 6's mixing table, as transcribed
# independently by ISC dhcpd (server/failover.c) and Kea (the HA hook's query filter);
# both transcriptions were compared octet by octet when this test was written.
RFC3074_TABLE_SHA256 = "50015bcb049a75f57f1224b2d303a4d75485a0de3a772a30e06256daa1c873a7"

# The RFC's C function (section 6: `hash = len; for (i = len; i > 0;) hash =
# loadb_mx_tbl[hash ^ key[--i]];`) compiled with gcc over that table gave these.
RFC3074_VECTORS = {
    "": 0,
    "00": 175,
    "ff": 234,
    "000102030405": 161,
    "525400123456": 156,
    "025c0b000000": 163,
    "025c0b000001": 17,
    "01525400123456": 253,
    "ff0000000100012c010203": 58,
    "000102030405060708090a0b0c0d0e0f": 155,
}


def test_the_mixing_table_is_rfc_3074s() -> None:
    assert sorted(MIXING_TABLE) == list(range(256))
    assert hashlib.sha256(MIXING_TABLE).hexdigest() == RFC3074_TABLE_SHA256


@pytest.mark.parametrize(("key", "expected"), sorted(RFC3074_VECTORS.items()))
def test_the_hash_is_the_rfcs_c_function(key: str, expected: int) -> None:
    assert pearson(bytes.fromhex(key)) == expected


@given(st.binary(max_size=64))
def test_the_hash_follows_the_rfcs_loop(key: bytes) -> None:
    """The RFC's loop, written as the C does it (unsigned char: mod 256)."""
    value = len(key) % 256
    i = len(key)
    while i > 0:
        i -= 1
        value = MIXING_TABLE[value ^ key[i]]
    assert pearson(key) == value


def msg(mtype: MessageType | None, n: int = 1, **opts: bytes) -> Message:
    return client_message(mtype, 0x2000 + n, bytes([2, 0x5C, 0, 0, 0, n]), **opts)


def test_the_key_is_the_client_identifier_else_chaddr() -> None:
    plain = msg(MessageType.DISCOVER, 1)
    assert hash_key(plain) == bytes([2, 0x5C, 0, 0, 0, 1])  # hlen octets only
    with_id = msg(MessageType.DISCOVER, 1, client_id=b"\x01\x52\x54\x00\x12\x34\x56")
    assert hash_key(with_id) == bytes.fromhex("01525400123456")
    assert bucket_of(with_id) == 253
    assert hash_key(msg(MessageType.DISCOVER, 1, client_id=b"")) == hash_key(plain)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_every_bucket_has_exactly_one_owner(n: int) -> None:
    servers = [f"10.0.0.{i}" for i in range(n, 0, -1)]
    split = owners(servers)
    assert sorted(split) == sorted(servers)
    seen = [b for buckets in split.values() for b in buckets]
    assert sorted(seen) == list(range(BUCKETS))
    assert max(map(len, split.values())) - min(map(len, split.values())) <= 1
    assert owners(reversed(servers)) == split  # the same on every server


def test_a_silent_peer_loses_its_buckets_and_gets_them_back() -> None:
    a = Balancer("10.0.0.1", peer_timeout=3)
    assert len(a.split.mine) == BUCKETS  # alone until a heartbeat says otherwise
    both = a.update([("10.0.0.1", 0.0), ("10.0.0.2", 1.0)])
    assert both is not None and both.servers == ("10.0.0.1", "10.0.0.2")
    assert both.mine == frozenset(range(0, BUCKETS, 2))
    assert a.update([("10.0.0.1", 0.1), ("10.0.0.2", 2.9)]) is None  # unchanged
    alone = a.update([("10.0.0.1", 0.0), ("10.0.0.2", 3.5)])
    assert alone is not None and len(alone.mine) == BUCKETS
    assert "256 of 256 buckets (1 live server: 10.0.0.1)" in alone.describe()
    back = a.update([("10.0.0.2", 0.2)])  # our own row missing: we are live anyway
    assert back is not None and back.mine == both.mine


def mine_and_theirs(bal: Balancer) -> tuple[int, int]:
    """A client number in this server's buckets, and one in the other's."""
    ours = next(n for n in range(1, 200) if bucket_of(msg(None, n)) in bal.split.mine)
    theirs = next(n for n in range(1, 200) if bucket_of(msg(None, n)) not in bal.split.mine)
    return ours, theirs


def test_what_a_server_answers() -> None:
    bal = Balancer("10.0.0.1", max_secs=3)
    bal.update([("10.0.0.1", 0.0), ("10.0.0.2", 0.0)])
    ours, theirs = mine_and_theirs(bal)
    for kind in (MessageType.DISCOVER, MessageType.REQUEST, MessageType.INFORM, None):
        assert bal.answers(msg(kind, ours), unicast=False)
        assert not bal.answers(msg(kind, theirs), unicast=False)
    assert bal.left == 4
    # Sent to this server's address (a RENEWING client): always.
    assert bal.answers(msg(MessageType.REQUEST, theirs), unicast=True)
    # SELECTING names a server: the named one binds; another withdraws an offer it
    # can only have made to a client of its own buckets.
    to_us = msg(MessageType.REQUEST, theirs, server_id=IPv4Address("10.0.0.1").packed)
    assert bal.answers(to_us, unicast=False)
    to_them = msg(MessageType.REQUEST, theirs, server_id=IPv4Address("10.0.0.2").packed)
    assert not bal.answers(to_them, unicast=False)
    ours_to_them = msg(MessageType.REQUEST, ours, server_id=IPv4Address("10.0.0.2").packed)
    assert bal.answers(ours_to_them, unicast=False)
    assert bal.left == 4
    for kind in (MessageType.RELEASE, MessageType.DECLINE):
        assert bal.answers(msg(kind, theirs), unicast=False)
    # RFC 3074's secs rule: a client trying for longer than max_secs gets everyone.
    assert not bal.answers(replace(msg(MessageType.DISCOVER, theirs), secs=3), unicast=False)
    assert bal.answers(replace(msg(MessageType.DISCOVER, theirs), secs=4), unicast=False)
    assert bal.by_secs == 1


NET = IPv4Network("10.5.0.0/24")
SERVER = IPv4Address("10.5.0.1")


def test_the_engine_leaves_other_buckets_to_their_server() -> None:
    cfg = DhcpConfig(server_ip=SERVER, network=NET, bootfile="pxelinux.0", answer_all=True)
    eng = DhcpServer(cfg).build_engine()
    bal = Balancer(str(SERVER))
    bal.update([(str(SERVER), 0.0), ("10.5.0.2", 0.0)])
    eng.balancer = bal
    ours, theirs = mine_and_theirs(bal)

    def replies(m: Message, **kw: bool) -> list[MessageType | None]:
        out = eng.handle(encode(m), ("0.0.0.0", 68), 1_700_000_000.0, **kw)
        return [decode(o.payload).message_type for o in out]

    assert replies(msg(MessageType.DISCOVER, ours)) == [MessageType.OFFER]
    assert replies(msg(MessageType.DISCOVER, theirs)) == []
    assert replies(replace(msg(MessageType.DISCOVER, theirs), secs=10)) == [MessageType.OFFER]
    # INIT-REBOOT broadcast for another bucket: left to its server; sent to us: answered.
    asked = msg(MessageType.REQUEST, theirs, requested_ip=IPv4Address("10.5.0.99").packed)
    assert replies(asked) == []
    assert replies(asked, unicast=True) != []
    # Through a relay (giaddr): a relay forwards broadcasts, so the buckets apply.
    relayed = replace(msg(MessageType.DISCOVER, theirs), giaddr=IPv4Address("10.5.0.254"))
    assert replies(relayed, unicast=True) == []
    mine = replace(msg(MessageType.DISCOVER, ours), giaddr=IPv4Address("10.5.0.254"))
    assert replies(mine, unicast=True) == [MessageType.OFFER]
