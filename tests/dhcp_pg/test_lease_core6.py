"""One lease core for DHCPv6 too: the same random DHCPv6 conversations through the
engine with bindings in memory, in a SQLite file and in PostgreSQL must get the same
replies, byte for byte (the one lease policy, `ptftpd.dhcp.leases.LeasePolicy`, DHCPv4's
too, over its store interface `LeaseRows`; the state table is in its module docstring).

The messages are valid DHCPv6 built from random fields (client DUID, IAID, message
type, the address named, our server id or another's, rapid commit, time passing, and
a server restart that rebuilds the bindings from the store), so the policy's lines
are reached: Solicit and its offers' expiry, Request for what was offered or another
address (on or off the link), Renew, Rebind, Release, Decline and its quarantine,
Confirm, Information-request, a full pool and the per-client and table limits.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ptftpd.dhcp.lease_store import LeaseStore, MemoryStore
from ptftpd.dhcp.leases import LeaseRows, ia_key
from ptftpd.dhcp.pg_store import PgLink, PgStore
from ptftpd.dhcp.store import SqliteStore
from ptftpd.dhcp6.codec import (
    ClientId,
    ElapsedTime,
    IaAddress,
    IaNa,
    Message,
    MsgType,
    Option,
    RapidCommit,
    ServerId,
    decode,
    encode,
)
from ptftpd.dhcp6.config import Dhcp6Config
from ptftpd.dhcp6.engine import Dhcp6Engine
from ptftpd.dhcp6.leases import prefix_policy

NOW = 1_000_000.0
CLIENTS = 4
SERVER_DUID = bytes.fromhex("00030001525400aabbcc")
OTHER_DUID = bytes.fromhex("00030001525400ddeeff")
SOURCE = ("fe80::5054:ff:fe00:1", 546)

KINDS = (
    "solicit",
    "solicit-rapid",
    "request",
    "request-other-address",
    "request-off-link",
    "request-other-server",
    "renew",
    "rebind",
    "rebind-off-link",
    "release",
    "decline",
    "decline",
    "confirm",
    "information-request",
    "restart",
    "restart",
    "wait",
)


@dataclass(frozen=True)
class Step:
    client: int
    iaid: int
    kind: str
    pick: int  # which address, when the step names one
    seconds: float  # time passing before the step


steps = st.lists(
    st.builds(
        Step,
        st.integers(min_value=0, max_value=CLIENTS - 1),
        st.integers(min_value=1, max_value=3),
        st.sampled_from(KINDS),
        st.integers(min_value=0, max_value=7),
        st.sampled_from([0.0, 0.0, 1.0, 5.0, 31.0, 61.0, 121.0]),
    ),
    min_size=1,
    max_size=40,
)


class Prefixes:
    """A fresh /64 for each example, so one PostgreSQL database serves them all."""

    def __init__(self) -> None:
        self.n = 0

    def next(self) -> IPv6Network:
        self.n += 1
        return IPv6Network(f"fd00:{self.n:x}::/64")


def config(prefix: IPv6Network) -> Dhcp6Config:
    base = prefix.network_address
    return Dhcp6Config(
        interface="veth0",
        prefix=prefix,
        server_addresses=(base + 1,),
        server_duid=SERVER_DUID,
        # A small range (::2 .. ::6) so clients compete and it runs full.
        range_start=base + 2,
        range_end=base + 6,
        preferred_lifetime=60,
        valid_lifetime=120,
        offer_time=30,
        decline_time=60,
        max_bindings=4,
        max_offers=3,
        max_per_client=2,
        rapid_commit=True,
        send_ra=False,
    )


def engine(cfg: Dhcp6Config, store: LeaseStore | LeaseRows) -> Dhcp6Engine:
    return Dhcp6Engine(cfg, SERVER_DUID, prefix_policy(cfg, store))


class Conversation:
    """The clients' side: what each IA holds (from the replies, the same for every
    store as long as the test passes)."""

    def __init__(self, prefix: IPv6Network) -> None:
        self.prefix = prefix
        self.held: dict[tuple[int, int], IPv6Address] = {}
        self.xid = 0

    def duid(self, client: int) -> bytes:
        return bytes.fromhex("0003000102000000") + bytes([0, client + 1])

    def address(self, pick: int) -> IPv6Address:
        return self.prefix.network_address + 1 + pick  # ::1 .. ::8: server, pool, outside

    def message(self, step: Step) -> bytes | None:
        self.xid += 1
        kind = step.kind
        mine = self.held.get((step.client, step.iaid), self.address(step.pick))
        named = mine
        if kind == "request-other-address":
            named = self.address(step.pick)
        elif kind in ("request-off-link", "rebind-off-link"):
            named = IPv6Address("2001:db8::5")
        ia = IaNa(step.iaid, 0, 0, (IaAddress(named, 0, 0),))
        ours = ServerId(SERVER_DUID)
        body: tuple[Option, ...]
        if kind == "solicit":
            body, mtype = (IaNa(step.iaid, 0, 0),), MsgType.SOLICIT
        elif kind == "solicit-rapid":
            body, mtype = (IaNa(step.iaid, 0, 0), RapidCommit()), MsgType.SOLICIT
        elif kind in ("request", "request-other-address", "request-off-link"):
            body, mtype = (ours, ia), MsgType.REQUEST
        elif kind == "request-other-server":
            body, mtype = (ServerId(OTHER_DUID), ia), MsgType.REQUEST
        elif kind == "renew":
            body, mtype = (ours, ia), MsgType.RENEW
        elif kind in ("rebind", "rebind-off-link"):
            body, mtype = (ia,), MsgType.REBIND
        elif kind == "release":
            body, mtype = (ours, ia), MsgType.RELEASE
        elif kind == "decline":
            body, mtype = (ours, ia), MsgType.DECLINE
        elif kind == "confirm":
            body, mtype = (ia,), MsgType.CONFIRM
        elif kind == "information-request":
            return encode(Message(MsgType.INFORMATION_REQUEST, self.xid, (ElapsedTime(0),)))
        else:
            return None
        options = (ClientId(self.duid(step.client)), ElapsedTime(0), *body)
        return encode(Message(mtype, self.xid, options))

    def heard(self, step: Step, replies: list[bytes]) -> None:
        for payload in replies:
            reply = decode(payload)
            for ia in reply.all(IaNa):
                live = [a for a in ia.addresses if a.valid > 0]
                if live:
                    self.held[(step.client, ia.iaid)] = live[0].address
                else:
                    self.held.pop((step.client, ia.iaid), None)


@pytest.fixture(scope="module")
def shared_pg6(pg_cluster: object) -> Iterator[str]:
    cluster = pg_cluster
    yield cluster.uri(cluster.create_database())  # type: ignore[attr-defined]


PREFIXES = Prefixes()


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(conversation=steps)
@example(
    conversation=[
        Step(0, 1, "solicit-rapid", 0, 0.0),
        Step(0, 1, "decline", 0, 1.0),
        Step(0, 1, "restart", 0, 0.0),
        Step(0, 1, "solicit", 0, 1.0),
    ]
)
@example(
    conversation=[
        Step(0, 1, "solicit-rapid", 0, 0.0),
        Step(1, 1, "solicit-rapid", 0, 0.0),
        Step(0, 1, "release", 0, 1.0),
        Step(1, 1, "renew", 0, 1.0),
        Step(0, 1, "restart", 0, 0.0),
        Step(1, 1, "renew", 0, 1.0),
        Step(0, 1, "renew", 0, 1.0),
        Step(2, 1, "solicit", 0, 1.0),
    ]
)
@example(
    conversation=[
        Step(0, 1, "solicit-rapid", 0, 0.0),
        Step(0, 2, "solicit-rapid", 0, 0.0),
        Step(0, 3, "solicit-rapid", 0, 0.0),
        Step(0, 1, "restart", 0, 121.0),
        Step(0, 1, "rebind", 0, 0.0),
        Step(0, 2, "renew", 0, 0.0),
        Step(3, 1, "solicit-rapid", 0, 0.0),
    ]
)
@example(
    conversation=[  # the expired offer's row is forgotten and its address bound anew
        Step(0, 1, "solicit", 0, 0.0),
        Step(0, 1, "solicit-rapid", 0, 31.0),
        Step(0, 1, "restart", 0, 0.0),
        Step(0, 1, "solicit", 0, 1.0),
    ]
)
@example(
    conversation=[  # the pool full, the offer cap reached: the oldest offer goes
        Step(0, 1, "solicit-rapid", 0, 0.0),
        Step(1, 1, "solicit-rapid", 0, 0.0),
        Step(2, 1, "solicit", 0, 1.0),
        Step(2, 2, "solicit", 0, 1.0),
        Step(3, 1, "solicit", 0, 1.0),
        Step(3, 2, "solicit", 0, 1.0),
        Step(2, 1, "request", 0, 1.0),
    ]
)
def test_dhcpv6_memory_sqlite_and_postgresql_answer_alike(
    shared_pg6: str, conversation: list[Step]
) -> None:
    prefix = PREFIXES.next()
    cfg = config(prefix)
    with tempfile.TemporaryDirectory() as tmp:
        stores: dict[str, LeaseStore | LeaseRows] = {
            "memory": MemoryStore(),
            "sqlite": SqliteStore(Path(tmp) / "leases6.sqlite"),
            "postgresql": PgStore(PgLink(shared_pg6, "core-test")),
        }
        engines = {name: engine(cfg, store) for name, store in stores.items()}
        talk = Conversation(prefix)
        now = NOW
        try:
            for number, step in enumerate(conversation):
                now += step.seconds
                if step.kind == "restart":
                    # The server restarts: its bindings come back from the store alone.
                    engines = {name: engine(cfg, store) for name, store in stores.items()}
                    continue
                data = talk.message(step)
                if data is None:
                    continue
                answers = {
                    name: [(o.payload, o.address) for o in eng.handle(data, SOURCE, now)]
                    for name, eng in engines.items()
                }
                memory = answers["memory"]
                for name in ("sqlite", "postgresql"):
                    assert answers[name] == memory, (
                        f"step {number} {step}: {name} answered "
                        f"{[describe(p) for p, _ in answers[name]]}, memory "
                        f"{[describe(p) for p, _ in memory]}"
                    )
                talk.heard(step, [p for p, _ in memory])
        finally:
            for store in stores.values():
                store.close()


def describe(payload: bytes) -> str:
    reply = decode(payload)
    ias = [
        (ia.iaid, [(str(a.address), a.valid) for a in ia.addresses], ia.options)
        for ia in reply.all(IaNa)
    ]
    return f"{MsgType(reply.msg_type).name} {ias}"


def test_servers_share_dhcpv6_bindings(pg_cluster: object) -> None:
    """Servers on one database (PgStore each): a binding made at one is renewed at
    another (its row is the database's), and no other server binds its address to
    another client (taken: the next candidate instead)."""
    uri = pg_cluster.uri(pg_cluster.create_database())  # type: ignore[attr-defined]
    prefix = IPv6Network("fd00:2525::/64")
    cfg = config(prefix)
    first = PgStore(PgLink(uri, "server-a"))
    second = PgStore(PgLink(uri, "server-b"))
    third = PgStore(PgLink(uri, "server-c"))
    try:
        # Started before any binding exists: their memories know nothing.
        a, b, c = engine(cfg, first), engine(cfg, second), engine(cfg, third)
        talk = Conversation(prefix)
        rapid = Step(0, 1, "solicit-rapid", 0, 0.0)
        [reply] = a.handle(talk.message(rapid) or b"", SOURCE, NOW)
        talk.heard(rapid, [reply.payload])
        held = talk.held[(0, 1)]
        # The Renew reaches the other server (its memory never saw the client).
        renew = Step(0, 1, "renew", 0, 0.0)
        [renewed] = b.handle(talk.message(renew) or b"", SOURCE, NOW + 10)
        ia = decode(renewed.payload).first(IaNa)
        assert ia is not None and [x.address for x in ia.addresses] == [held], describe(
            renewed.payload
        )
        # Another client asks a third server, whose memory never heard of the
        # binding, for that very address: the database refuses, the next one is given.
        ask = IaNa(1, 0, 0, (IaAddress(held, 0, 0),))
        other = talk.duid(1)
        data = encode(
            Message(MsgType.SOLICIT, 7, (ClientId(other), ElapsedTime(0), ask, RapidCommit()))
        )
        [given] = c.handle(data, SOURCE, NOW + 11)
        got = decode(given.payload).first(IaNa)
        assert got is not None and got.addresses and got.addresses[0].address != held
        # The database agrees: one bound row per client, different addresses.
        rows = {
            (x.client_key, x.address) for x in first.leases(str(prefix)) if x.state.value == "bound"
        }
        assert rows == {
            (ia_key(talk.duid(0), 1), held),
            (ia_key(other, 1), got.addresses[0].address),
        }
    finally:
        first.close()
        second.close()
        third.close()


def test_servers_sharing_postgresql_never_advertise_one_address_twice(
    pg_cluster: object,
) -> None:
    """An offer is a row every server sees, as for DHCPv4: a Solicit at a second server
    asking for the address the first just advertised to another client gets another
    one (the previous DHCPv6 bindings kept offers in each server's memory)."""
    uri = pg_cluster.uri(pg_cluster.create_database())  # type: ignore[attr-defined]
    prefix = IPv6Network("fd00:2626::/64")
    cfg = config(prefix)
    first, second = PgStore(PgLink(uri, "server-a")), PgStore(PgLink(uri, "server-b"))
    try:
        a, b = engine(cfg, first), engine(cfg, second)
        talk = Conversation(prefix)
        wanted = prefix.network_address + 3

        def advertised(server: Dhcp6Engine, client: int, xid: int) -> IPv6Address:
            ia = IaNa(1, 0, 0, (IaAddress(wanted, 0, 0),))
            options = (ClientId(talk.duid(client)), ElapsedTime(0), ia)
            [reply] = server.handle(encode(Message(MsgType.SOLICIT, xid, options)), SOURCE, NOW)
            got = decode(reply.payload).first(IaNa)
            assert got is not None and got.addresses, describe(reply.payload)
            return got.addresses[0].address

        assert advertised(a, 0, 1) == wanted
        assert advertised(b, 1, 2) != wanted
        # Once the offer's time has passed, the address is free for anyone again.
        later = NOW + cfg.offer_time + 1
        ia = IaNa(1, 0, 0, (IaAddress(wanted, 0, 0),))
        options = (ClientId(talk.duid(2)), ElapsedTime(0), ia)
        [reply] = b.handle(encode(Message(MsgType.SOLICIT, 3, options)), SOURCE, later)
        got = decode(reply.payload).first(IaNa)
        assert got is not None and [x.address for x in got.addresses] == [wanted]
    finally:
        first.close()
        second.close()
