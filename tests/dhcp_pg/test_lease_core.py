"""One lease core, every store: the same random DHCP conversations through the engine
with leases in memory, in a SQLite file and in PostgreSQL must get the same replies,
byte for byte (the state table of `ptftpd.dhcp.leases`, written once).

The messages are valid DHCP built from random fields (client, message type, client
state, requested address, server id, time passing), so every line of the state table
is reached: offers and their expiry, SELECTING for what was offered or not, another
server chosen, INIT-REBOOT, RENEWING, RELEASE, DECLINE and its quarantine, INFORM,
a full pool, a static host.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from dhcpmsg import client_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptftpd.dhcp import DhcpConfig, DhcpEngine, MessageType, decode, encode
from ptftpd.dhcp.leases import (
    Ack,
    LeasePolicy,
    LeaseRows,
    MemoryStore,
    Nak,
    StaticHost,
    SubnetConfig,
)
from ptftpd.dhcp.local_leases import LocalLeases
from ptftpd.dhcp.pg_store import PgLink, PgStore
from ptftpd.dhcp.store import SqliteStore

NOW = 1_000_000.0
CLIENTS = 4
STATIC_MAC = bytes([2, 0, 0, 0, 0, 9])
OTHER_SERVER = IPv4Address("192.0.2.99")

KINDS = (
    "discover",
    "discover-asking",
    "select",
    "select-other-address",
    "select-other-server",
    "init-reboot",
    "renew",
    "release",
    "decline",
    "inform",
    "wait",
)


@dataclass(frozen=True)
class Step:
    client: int  # CLIENTS: the static host
    kind: str
    pick: int  # which pool address, when the step names one
    seconds: float  # time passing before the step


steps = st.lists(
    st.builds(
        Step,
        st.integers(min_value=0, max_value=CLIENTS),
        st.sampled_from(KINDS),
        st.integers(min_value=0, max_value=9),
        st.sampled_from([0.0, 0.0, 1.0, 5.0, 11.0, 31.0, 61.0]),
    ),
    min_size=1,
    max_size=40,
)


class Subnets:
    """A fresh /28 for each example, so one PostgreSQL database serves them all."""

    def __init__(self) -> None:
        self.n = 0

    def next(self) -> IPv4Network:
        self.n += 1
        return IPv4Network(f"10.{100 + self.n // 256}.{self.n % 256}.0/28")


def engine(net: IPv4Network, rows: LeaseRows, authoritative: bool) -> DhcpEngine:
    server = net.network_address + 1
    static = StaticHost(STATIC_MAC.hex(":"), net.network_address + 14, "fixed")
    cfg = DhcpConfig(
        server_ip=server,
        network=net,
        answer_all=True,
        lease_time=60,
        offer_time=10,
        decline_time=30,
        static_hosts=(static,),
        authoritative=authoritative,
        # A small pool (.2 .. .6) so clients compete and it runs full.
        range_start=net.network_address + 2,
        range_end=net.network_address + 6,
    )
    pool = SubnetConfig(
        net,
        cfg.range_start,
        cfg.range_end,
        exclude=(server,),
        lease_time=cfg.lease_time,
        offer_time=cfg.offer_time,
        decline_time=cfg.decline_time,
        static_hosts=cfg.static_hosts,
        authoritative=authoritative,
    )
    return DhcpEngine(cfg, LeasePolicy(pool, rows))


class Conversation:
    """The clients' side: what each was offered or holds (from the replies, which are
    the same for every store as long as the test passes)."""

    def __init__(self, net: IPv4Network) -> None:
        self.net = net
        self.server = net.network_address + 1
        self.held: dict[int, IPv4Address] = {}
        self.xid = 0

    def mac(self, client: int) -> bytes:
        return STATIC_MAC if client == CLIENTS else bytes([2, 0, 0, 0, 0, client + 1])

    def address(self, pick: int) -> IPv4Address:
        return self.net.network_address + 1 + pick  # .1 .. .10: pool, server, outside

    def message(self, step: Step) -> bytes | None:
        self.xid += 1
        mac, kind = self.mac(step.client), step.kind
        mine = self.held.get(step.client, self.address(step.pick))
        sid = self.server.packed
        if kind == "discover":
            msg = client_message(MessageType.DISCOVER, self.xid, mac)
        elif kind == "discover-asking":
            asked = self.address(step.pick).packed
            msg = client_message(MessageType.DISCOVER, self.xid, mac, requested_ip=asked)
        elif kind == "select":
            msg = client_message(
                MessageType.REQUEST, self.xid, mac, server_id=sid, requested_ip=mine.packed
            )
        elif kind == "select-other-address":
            asked = self.address(step.pick).packed
            msg = client_message(
                MessageType.REQUEST, self.xid, mac, server_id=sid, requested_ip=asked
            )
        elif kind == "select-other-server":
            msg = client_message(
                MessageType.REQUEST,
                self.xid,
                mac,
                server_id=OTHER_SERVER.packed,
                requested_ip=mine.packed,
            )
        elif kind == "init-reboot":
            asked = (mine if step.pick % 2 else self.address(step.pick)).packed
            msg = client_message(MessageType.REQUEST, self.xid, mac, requested_ip=asked)
        elif kind == "renew":
            msg = client_message(MessageType.REQUEST, self.xid, mac)
            msg.ciaddr = mine
        elif kind == "release":
            msg = client_message(MessageType.RELEASE, self.xid, mac, server_id=sid)
            msg.ciaddr = mine
        elif kind == "decline":
            msg = client_message(
                MessageType.DECLINE, self.xid, mac, server_id=sid, requested_ip=mine.packed
            )
        elif kind == "inform":
            msg = client_message(MessageType.INFORM, self.xid, mac)
            msg.ciaddr = mine
        else:
            return None
        return encode(msg)

    def heard(self, step: Step, replies: list[bytes]) -> None:
        for payload in replies:
            reply = decode(payload)
            if reply.message_type in (MessageType.OFFER, MessageType.ACK):
                if reply.yiaddr != IPv4Address(0):
                    self.held[step.client] = reply.yiaddr
            elif reply.message_type is MessageType.NAK:
                self.held.pop(step.client, None)


@pytest.fixture(scope="module")
def shared_pg(pg_cluster: object) -> Iterator[PgStore]:
    cluster = pg_cluster
    name = cluster.create_database()  # type: ignore[attr-defined]
    store = PgStore(PgLink(cluster.uri(name), "core-test"))  # type: ignore[attr-defined]
    try:
        yield store
    finally:
        store.close()


SUBNETS = Subnets()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(conversation=steps, authoritative=st.booleans())
def test_memory_sqlite_and_postgresql_answer_alike(
    shared_pg: PgStore, conversation: list[Step], authoritative: bool
) -> None:
    net = SUBNETS.next()
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = LocalLeases(SqliteStore(Path(tmp) / "leases.sqlite"))
        stores: dict[str, LeaseRows] = {
            "memory": LocalLeases(MemoryStore()),
            "sqlite": sqlite,
            "postgresql": shared_pg,
        }
        engines = {name: engine(net, rows, authoritative) for name, rows in stores.items()}
        talk = Conversation(net)
        now = NOW
        try:
            for number, step in enumerate(conversation):
                now += step.seconds
                data = talk.message(step)
                if data is None:
                    continue
                answers: dict[str, list[tuple[bytes, tuple[str, int]]]] = {}
                for name, eng in engines.items():
                    with eng.policy.store.batch():
                        out = eng.handle(data, ("0.0.0.0", 68), now)
                    answers[name] = [(o.payload, o.address) for o in out]
                memory = answers["memory"]
                for name in ("sqlite", "postgresql"):
                    assert answers[name] == memory, (
                        f"step {number} {step}: {name} answered "
                        f"{[describe(p) for p, _ in answers[name]]}, memory "
                        f"{[describe(p) for p, _ in memory]}"
                    )
                talk.heard(step, [p for p, _ in memory])
        finally:
            sqlite.close()


def describe(payload: bytes) -> str:
    reply = decode(payload)
    kind = reply.message_type.name if reply.message_type else "BOOTREPLY"
    text = reply.options.get(56, b"").decode(errors="replace")
    return f"{kind} {reply.yiaddr} {text}".strip()


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def rows(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LeaseRows]:
    """Each store in turn (PostgreSQL: a fresh database of the session's cluster)."""
    if request.param == "memory":
        made: LeaseRows = LocalLeases(MemoryStore())
    elif request.param == "sqlite":
        made = LocalLeases(SqliteStore(tmp_path / "leases.sqlite"))
    else:
        cluster = request.getfixturevalue("pg_cluster")
        made = PgStore(PgLink(cluster.uri(cluster.create_database()), "10.77.0.1"))
    try:
        yield made
    finally:
        made.close()


def small(rows: LeaseRows) -> LeasePolicy:
    net = IPv4Network("10.77.0.0/28")
    pool = SubnetConfig(net, exclude=(net.network_address + 1,), lease_time=60)
    return LeasePolicy(pool, rows)


def test_selecting_an_address_never_offered_is_naked_by_every_store(rows: LeaseRows) -> None:
    """The drift the lease core ended: the PostgreSQL policy bound any free address a
    SELECTING client named; now every store NAKs what was not offered to it."""
    policy = small(rows)
    offered = policy.offer(b"\x01c", "02:00:00:00:00:01", now=NOW)
    assert offered is not None
    other = offered + 1
    nak = policy.request(b"\x01c", "02:00:00:00:00:01", other, selecting=True, now=NOW + 1)
    assert isinstance(nak, Nak) and "was not offered to this client" in nak.reason
    # What was offered is bound; the one never offered is still free for others.
    ack = policy.request(b"\x01c", "02:00:00:00:00:01", offered, selecting=True, now=NOW + 2)
    assert isinstance(ack, Ack) and ack.lease.address == offered
    assert policy.offer(b"\x01d", "02:00:00:00:00:02", other, now=NOW + 3) == other


@pytest.mark.parametrize("withdraw_first", [True, False])
def test_the_withdraw_bind_race_never_naks(pg_cluster: object, withdraw_first: bool) -> None:
    """Two servers offered the client the same row (the second took it over); the
    client chose the first. The second withdraws its offer as the first binds it, in
    either order and with the second's clock ahead: the client gets its ACK, never a
    NAK (which makes some firmware give up and boot from disk)."""
    uri = pg_cluster.uri(pg_cluster.create_database())  # type: ignore[attr-defined]
    first, second = PgStore(PgLink(uri, "10.77.0.1")), PgStore(PgLink(uri, "10.77.0.2"))
    try:
        a, b = small(first), small(second)
        key, mac = b"\x01racer", "02:00:00:00:00:07"
        offered = a.offer(key, mac, now=NOW)
        assert offered is not None and b.offer(key, mac, now=NOW) == offered
        if withdraw_first:
            b.withdraw(key, now=NOW + 1.5)  # its clock 0.5 s ahead of the first's
        ack = a.request(key, mac, offered, selecting=True, now=NOW + 1)
        if not withdraw_first:
            b.withdraw(key, now=NOW + 1.5)
        assert isinstance(ack, Ack) and ack.lease.address == offered
        lease = a.lease_for(key, NOW + 2)
        assert lease is not None and lease.address == offered
    finally:
        first.close()
        second.close()
