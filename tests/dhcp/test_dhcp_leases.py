"""Lease policy with a fake clock, and the SQLite store."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptftpd.dhcp.leases import (
    Ack,
    LeasePolicy,
    LeaseState,
    MemoryStore,
    Nak,
    StaticHost,
    SubnetConfig,
    build_pool,
)
from ptftpd.dhcp.local_leases import LocalLeases
from ptftpd.dhcp.store import SqliteStore, StoreError
from support.clocked import Clocked

NET = IPv4Network("10.9.0.0/29")  # .1 .. .6 usable
SERVER = IPv4Address("10.9.0.1")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def policy(
    store: MemoryStore | SqliteStore | None = None,
    static: tuple[StaticHost, ...] = (),
    clock: Clock | None = None,
    lease_time: int = 100,
    authoritative: bool = False,
) -> tuple[LeasePolicy, Clock]:
    clock = clock or Clock()
    exclude = [SERVER, *(h.address for h in static)]
    pool = SubnetConfig(
        NET,
        exclude=tuple(exclude),
        lease_time=lease_time,
        offer_time=10,
        decline_time=50,
        static_hosts=static,
        authoritative=authoritative,
    )
    chosen = store if store is not None else MemoryStore()
    return Clocked(LeasePolicy(pool, chosen), clock), clock  # type: ignore[return-value]


def key(n: int) -> bytes:
    return b"hw:\x01" + bytes([2, 0, 0, 0, 0, n])


def mac(n: int) -> str:
    return f"02:00:00:00:00:{n:02x}"


def bind(p: LeasePolicy, n: int) -> IPv4Address:
    addr = p.offer(key(n), mac(n))
    assert addr is not None
    result = p.request(key(n), mac(n), addr)
    assert isinstance(result, Ack)
    return addr


def test_pool_excludes_network_broadcast_server_gateway() -> None:
    pool = build_pool(NET, [SERVER, IPv4Address("10.9.0.6")])
    assert [str(a) for a in pool] == ["10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5"]
    narrowed = build_pool(NET, [SERVER], IPv4Address("10.9.0.0"), IPv4Address("10.9.0.3"))
    assert [str(a) for a in narrowed] == ["10.9.0.2", "10.9.0.3"]


def test_offer_is_held_then_expires() -> None:
    p, clock = policy(authoritative=True)
    a = p.offer(key(1), mac(1))
    b = p.offer(key(2), mac(2))
    assert a is not None and b is not None and a != b
    assert p.offer(key(1), mac(1)) == a  # same client, same offer
    # Another client cannot take a held offer ...
    assert isinstance(p.request(key(3), mac(3), a), Nak)
    # ... until it runs out.
    clock.now += 11
    assert isinstance(p.request(key(3), mac(3), a), Ack)


def test_requested_address_honoured_when_free() -> None:
    p, _ = policy()
    assert p.offer(key(1), mac(1), IPv4Address("10.9.0.5")) == IPv4Address("10.9.0.5")
    bind(p, 1)
    # Taken: the next client gets something else.
    assert p.offer(key(2), mac(2), IPv4Address("10.9.0.5")) != IPv4Address("10.9.0.5")


def test_same_client_gets_previous_address_and_pool_full_gives_none() -> None:
    p, clock = policy()
    addrs = [bind(p, n) for n in range(1, 6)]
    assert len(set(addrs)) == 5
    assert p.offer(key(9), mac(9)) is None  # full: no loop, no network address
    assert p.offer(key(3), mac(3)) == addrs[2]
    clock.now += 101  # every lease expired
    assert p.offer(key(1), mac(1)) == addrs[0]  # a returning client first
    newcomer = p.offer(key(9), mac(9))
    assert newcomer in addrs and newcomer != addrs[0]


def test_lease_expires_and_address_is_reused_longest_free_first() -> None:
    p, clock = policy()
    addrs = [bind(p, n) for n in range(1, 6)]
    clock.now += 50
    p.release(key(4), addrs[3])
    clock.now += 10
    p.release(key(2), addrs[1])
    # Released ones are free; the one released first is reused first.
    assert p.offer(key(7), mac(7)) == addrs[3]
    assert p.offer(key(8), mac(8)) == addrs[1]
    assert p.lease_for(key(1)) is not None
    assert p.lease_for(key(1)).effective_state(clock.now) is LeaseState.BOUND  # type: ignore[union-attr]
    clock.now += 100
    assert p.lease_for(key(1)).effective_state(clock.now) is LeaseState.EXPIRED  # type: ignore[union-attr]


def test_declined_address_is_quarantined() -> None:
    p, clock = policy()
    a = bind(p, 1)
    assert p.decline(key(1), mac(1), a) is not None
    for n in range(2, 6):
        assert bind(p, n) != a
    assert p.offer(key(6), mac(6)) is None  # the declined one is not offered
    assert p.offer(key(1), mac(1)) is None  # not even to the decliner
    clock.now += 51
    assert p.offer(key(6), mac(6)) == a
    # Somebody else's address cannot be declined.
    assert p.decline(key(9), mac(9), bind(p, 2)) is None


def test_nak_cases() -> None:
    static = (StaticHost(mac(5), IPv4Address("10.9.0.6"), "five"),)
    quiet, _ = policy(static=static)
    a = bind(quiet, 1)
    # Not authoritative: a stranger's wrong request gets silence, a known client a NAK.
    for wrong in (a, IPv4Address("10.8.0.2"), SERVER, IPv4Address("10.9.0.6")):
        assert quiet.request(key(2), mac(2), wrong) is None
        assert isinstance(quiet.request(key(1), mac(1), wrong), Nak) or wrong == a
    # SELECTING names us: a NAK even to a stranger.
    assert isinstance(quiet.request(key(2), mac(2), a, selecting=True), Nak)
    p, _ = policy(static=static, authoritative=True)
    a = bind(p, 1)
    assert isinstance(p.request(key(2), mac(2), a), Nak)  # someone else's
    assert isinstance(p.request(key(2), mac(2), IPv4Address("10.8.0.2")), Nak)  # wrong net
    assert isinstance(p.request(key(2), mac(2), SERVER), Nak)  # not in pool
    assert isinstance(p.request(key(2), mac(2), IPv4Address("10.9.0.6")), Nak)  # static
    # INIT-REBOOT for an address we know nothing about: stay silent.
    assert p.request(key(3), mac(3), IPv4Address("10.9.0.4"), known_only=True) is None
    assert isinstance(p.request(key(1), mac(1), a, known_only=True), Ack)


def test_static_host_always_gets_its_address() -> None:
    host = StaticHost(mac(5), IPv4Address("10.9.0.6"), "five")
    p, _ = policy(static=(host,))
    assert p.offer(key(5), mac(5)) == host.address
    result = p.request(key(5), mac(5), host.address)
    assert isinstance(result, Ack) and result.lease.hostname == "five"
    assert isinstance(p.request(key(5), mac(5), IPv4Address("10.9.0.2")), Nak)
    assert host.address not in {bind(p, n) for n in range(1, 5)}


def test_withdraw_frees_offer() -> None:
    p, _ = policy(authoritative=True)
    a = p.offer(key(1), mac(1))
    assert a is not None
    assert isinstance(p.request(key(2), mac(2), a), Nak)
    p.withdraw(key(1))
    assert isinstance(p.request(key(2), mac(2), a), Ack)


def test_bootp_lease_is_permanent() -> None:
    p, clock = policy()
    lease = p.bind_permanent(key(1), mac(1))
    assert lease is not None
    clock.now += 10**9
    assert p.bind_permanent(key(1), mac(1)) == lease
    assert lease.effective_state(clock.now) is LeaseState.BOUND


def test_grant_is_saved_before_ack_and_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "leases.sqlite"
    store = SqliteStore(path)
    p, clock = policy(store)
    a = bind(p, 1)
    b = bind(p, 2)
    permanent = p.bind_permanent(key(3), mac(3))
    assert permanent is not None
    p.decline(key(2), mac(2), b)
    # No close(): a crash right after the ACK.
    again, _ = policy(SqliteStore(path), clock=clock)
    assert again.offer(key(1), mac(1)) == a
    assert again.offer(key(4), mac(4)) not in (a, b, permanent.address)
    assert again.bind_permanent(key(3), mac(3)) == permanent
    store.close()


def test_changing_address_releases_the_old_one() -> None:
    store = MemoryStore()
    p, _ = policy(store)
    a = bind(p, 1)
    other = IPv4Address("10.9.0.5") if a != IPv4Address("10.9.0.5") else IPv4Address("10.9.0.4")
    assert isinstance(p.request(key(1), mac(1), other), Ack)
    assert store.rows[a].state is LeaseState.RELEASED
    assert p.offer(key(2), mac(2)) is not None


def test_store_errors_are_store_errors(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(StoreError):
        SqliteStore(tmp_path / "dir.sqlite")


# -- property: whatever clients do, no address is bound to two clients ---------------


events = st.lists(
    st.tuples(
        st.sampled_from(["discover", "request", "request_any", "release", "decline", "tick"]),
        st.integers(1, 8),  # client
        st.integers(0, 7),  # address index / seconds
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(events)
def test_no_address_bound_to_two_clients(ops: list[tuple[str, int, int]]) -> None:
    store = MemoryStore()
    p, clock = policy(store)
    addrs = [IPv4Address("10.9.0.0") + i for i in range(8)]
    for op, n, x in ops:
        if op == "discover":
            got = p.offer(key(n), mac(n))
            assert got is None or (
                got in NET and got not in (SERVER, NET.network_address, NET.broadcast_address)
            )
        elif op == "request":
            offered = p.offer(key(n), mac(n))
            if offered is not None:
                p.request(key(n), mac(n), offered)
        elif op == "request_any":
            p.request(key(n), mac(n), addrs[x])
        elif op == "release":
            p.release(key(n), addrs[x])
        elif op == "decline":
            p.decline(key(n), mac(n), addrs[x])
        else:
            clock.now += x * 20
        now = clock.now
        bound = [le for le in p.leases() if le.effective_state(now) is LeaseState.BOUND]
        assert len({le.address for le in bound}) == len(bound)
        assert len({le.client_key for le in bound}) == len(bound)
        for le in bound:
            assert le.address in NET and le.address != SERVER
    # A restart from the store sees the same bound leases.
    again, _ = policy(store, clock=clock)
    now = clock.now
    before = {
        (le.address, le.client_key)
        for le in p.leases()
        if le.effective_state(now) is LeaseState.BOUND
    }
    after = {
        (le.address, le.client_key)
        for le in again.leases()
        if le.effective_state(now) is LeaseState.BOUND
    }
    assert before == after


class NoScan(dict[int, Any]):
    """The lease rows, refusing to be walked: a DISCOVER in a full pool must find a
    free address through the index, never by looking at every lease."""

    def values(self) -> Any:
        raise AssertionError("every lease scanned")

    def items(self) -> Any:
        raise AssertionError("every lease scanned")

    def __iter__(self) -> Any:
        raise AssertionError("every lease scanned")


def test_full_large_pool_finds_a_free_address_without_scanning() -> None:
    net = IPv4Network("10.0.0.0/16")
    pool = SubnetConfig(net, exclude=(IPv4Address("10.0.0.1"),), lease_time=100)
    clock = Clock()
    inner = LeasePolicy(pool, MemoryStore())
    p = Clocked(inner, clock)
    size = len(pool.addresses)
    addrs = []
    for n in range(size):
        k = b"hw:" + n.to_bytes(6, "big")
        addr = p.offer(k, "")
        assert addr is not None
        assert isinstance(p.request(k, "", addr), Ack)
        addrs.append((k, addr))
        clock.now += 0.001
    rows = inner.store
    assert isinstance(rows, LocalLeases)
    rows._rows = NoScan(rows._rows)
    assert p.offer(b"newcomer", "") is None  # full
    clock.now += 1
    # Two leases released, one after the other: the first released comes back first.
    p.release(*addrs[500])
    clock.now += 1
    p.release(*addrs[70])
    assert p.offer(b"newcomer", "") == addrs[500][1]
    assert p.offer(b"second", "") == addrs[70][1]
    assert p.offer(b"third", "") is None
    # Every lease and offer runs out: the two offers (never taken up) lapsed before
    # the first lease ended, then the leases come back oldest first.
    clock.now += 1000
    lapsed = {p.offer(b"fourth", ""), p.offer(b"fifth", "")}
    assert lapsed == {addrs[500][1], addrs[70][1]}
    assert p.offer(b"sixth", "") == addrs[0][1]
    assert p.offer(b"seventh", "") == addrs[1][1]
