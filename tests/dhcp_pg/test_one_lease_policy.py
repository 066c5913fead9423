"""One lease policy for DHCPv4 and DHCPv6 (issue 18 item 1), and the lease files and
databases of the previous version (DHCPv6 bindings in their own `leases6` table) still
serving their clients after the upgrade.

- The DHCPv4 and the DHCPv6 engine decide through the same class, `LeasePolicy`, and
  no other class in src decides what a message does to the leases (a class with a
  `decline` is the policy or one of its stores).
- A SQLite lease file with a `leases6` table, and a PostgreSQL database with `leases6`
  rows, written as the previous version wrote them: a Renew of that binding is
  answered with its address and lifetimes, another client gets another address, and
  the old rows have moved into `leases`.
"""

from __future__ import annotations

import ast
import sqlite3
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

import psycopg
from dhcpmsg import client_message

from ptftpd.dhcp import DhcpConfig, DhcpEngine, MessageType, decode
from ptftpd.dhcp import encode as encode4
from ptftpd.dhcp.lease_store import LeaseState, MemoryStore
from ptftpd.dhcp.leases import LeasePolicy, SubnetConfig, ia_key
from ptftpd.dhcp.pg_store import PgLink, PgStore
from ptftpd.dhcp.store import SqliteStore
from ptftpd.dhcp6.codec import (
    ClientId,
    ElapsedTime,
    IaAddress,
    IaNa,
    Message,
    MsgType,
    ServerId,
    encode,
)
from ptftpd.dhcp6.codec import decode as decode6
from ptftpd.dhcp6.config import Dhcp6Config
from ptftpd.dhcp6.engine import Dhcp6Engine
from ptftpd.dhcp6.leases import prefix_policy
from support.postgres import PgCluster

SRC = Path(__file__).resolve().parents[2] / "src" / "ptftpd"
PREFIX = IPv6Network("fd00:18::/64")
SERVER_DUID = bytes.fromhex("00030001525400aabbcc")
CLIENT_DUID = bytes.fromhex("00030001020000000001")
OLD_ADDRESS = IPv6Address("fd00:18::1234")
SOURCE = ("fe80::5054:ff:fe00:1", 546)
NOW = 1_000_000.0

# The previous version's DHCPv6 SQLite table, as it created it.
OLD_SQLITE = """
CREATE TABLE leases6 (
    address  TEXT PRIMARY KEY,
    duid     BLOB NOT NULL,
    iaid     INTEGER NOT NULL,
    state    TEXT NOT NULL,
    expires  REAL NOT NULL,
    since    REAL NOT NULL
)
"""


def config6() -> Dhcp6Config:
    return Dhcp6Config(
        interface="veth0",
        prefix=PREFIX,
        server_addresses=(PREFIX.network_address + 1,),
        server_duid=SERVER_DUID,
        send_ra=False,
    )


def test_dhcpv4_and_dhcpv6_engines_use_the_one_policy_class() -> None:
    net = IPv4Network("10.18.0.0/24")
    cfg = DhcpConfig(server_ip=IPv4Address("10.18.0.1"), network=net, answer_all=True)
    v4 = DhcpEngine(cfg, LeasePolicy(SubnetConfig(net), MemoryStore()))
    v6 = Dhcp6Engine(config6(), SERVER_DUID, prefix_policy(config6(), MemoryStore()))
    assert type(v4.policy) is LeasePolicy and type(v6.policy) is LeasePolicy
    assert type(v4.policy.store) is type(v6.policy.store)  # the one store interface
    # Both decide: a DISCOVER gets an offer, a Solicit an Advertise.
    discover = encode4(client_message(MessageType.DISCOVER, 1, bytes([2, 0, 0, 0, 0, 1])))
    [offer] = v4.handle(discover, ("0.0.0.0", 68), NOW)
    assert decode(offer.payload).yiaddr in net
    solicit = Message(MsgType.SOLICIT, 1, (ClientId(CLIENT_DUID), ElapsedTime(0), IaNa(1, 0, 0)))
    [advertise] = v6.handle(encode(solicit), SOURCE, NOW)
    assert decode6(advertise.payload).msg_type == MsgType.ADVERTISE


def test_no_second_lease_policy_class_in_src() -> None:
    """A class that can decline an address is the policy, its store interface or one
    of its three stores' rows (memory and SQLite: LocalLeases; PostgreSQL: PgStore): a
    second policy (the former dhcp6 `Bindings`, dhcp/shared_policy.py's) would be one
    more."""
    deciding = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
                if "decline" in methods:
                    deciding.add(f"{path.relative_to(SRC)}:{node.name}")
    assert deciding == {
        "dhcp/leases.py:LeasePolicy",
        "dhcp/lease_store.py:LeaseRows",  # the one store interface
        "dhcp/local_leases.py:LocalLeases",
        "dhcp/pg_store.py:PgStore",
    }


def renew(engine: Dhcp6Engine, now: float) -> list[IaAddress]:
    ia = IaNa(7, 0, 0, (IaAddress(OLD_ADDRESS, 0, 0),))
    options = (ClientId(CLIENT_DUID), ElapsedTime(0), ServerId(SERVER_DUID), ia)
    [reply] = engine.handle(encode(Message(MsgType.RENEW, 2, options)), SOURCE, now)
    got = decode6(reply.payload).first(IaNa)
    assert got is not None
    return list(got.addresses)


def solicit_other(engine: Dhcp6Engine, now: float) -> IPv6Address:
    other = bytes.fromhex("00030001020000000002")
    ia = IaNa(7, 0, 0, (IaAddress(OLD_ADDRESS, 0, 0),))  # asks for the old address
    options = (ClientId(other), ElapsedTime(0), ia)
    [reply] = engine.handle(encode(Message(MsgType.SOLICIT, 3, options)), SOURCE, now)
    got = decode6(reply.payload).first(IaNa)
    assert got is not None and got.addresses
    return got.addresses[0].address


def test_a_previous_versions_sqlite_lease_file_keeps_its_bindings(tmp_path: Path) -> None:
    path = tmp_path / "leases6.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(OLD_SQLITE)
        db.execute(
            "INSERT INTO leases6 VALUES (?, ?, ?, 'bound', ?, ?)",
            (str(OLD_ADDRESS), CLIENT_DUID, 7, NOW + 3600, NOW - 60),
        )
    db.close()
    store = SqliteStore(path)
    engine = Dhcp6Engine(config6(), SERVER_DUID, prefix_policy(config6(), store))
    assert [a.address for a in renew(engine, NOW + 10)] == [OLD_ADDRESS]
    assert solicit_other(engine, NOW + 11) != OLD_ADDRESS
    store.close()
    with sqlite3.connect(path) as db:
        names = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        rows = db.execute("SELECT client, state FROM leases WHERE address = ?", (str(OLD_ADDRESS),))
        moved = rows.fetchall()
    db.close()
    assert "leases6" not in names
    assert moved == [(ia_key(CLIENT_DUID, 7), "bound")]


def test_a_previous_versions_postgresql_bindings_keep_serving(pg_cluster: PgCluster) -> None:
    url = pg_cluster.uri(pg_cluster.create_database())
    PgStore(PgLink(url, "migrating")).close()  # the schema as any server creates it
    with psycopg.connect(url) as conn:  # a binding the previous version wrote
        conn.execute(
            "INSERT INTO leases6 VALUES (%s, %s, %s, 7, 'bound', %s, %s, 'old-server')",
            (str(OLD_ADDRESS), str(PREFIX), CLIENT_DUID, NOW + 3600, NOW - 60),
        )
    store = PgStore(PgLink(url, "upgraded"))
    try:
        engine = Dhcp6Engine(config6(), SERVER_DUID, prefix_policy(config6(), store))
        assert [a.address for a in renew(engine, NOW + 10)] == [OLD_ADDRESS]
        assert solicit_other(engine, NOW + 11) != OLD_ADDRESS
        rows = {
            (x.address, x.client_key, x.state)
            for x in store.leases(str(PREFIX))
            if x.state is LeaseState.BOUND
        }
        assert rows == {(OLD_ADDRESS, ia_key(CLIENT_DUID, 7), LeaseState.BOUND)}
    finally:
        store.close()
    with psycopg.connect(url) as conn:
        left = conn.execute("SELECT count(*) FROM leases6").fetchone()
    assert left == (0,)
