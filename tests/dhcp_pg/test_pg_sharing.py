"""What one server does, the other sees: renew, rebind, release, decline, expiry, holds."""

from __future__ import annotations

import math

import pytest
from pgtest import HOLD, NOW, POOL, Stores, ip

from ptftpd.dhcp.lease_store import Claim
from ptftpd.dhcp.leases import LeaseState
from ptftpd.dhcp.pg_store import PgStore


@pytest.fixture
def pair(stores: Stores) -> tuple[PgStore, PgStore]:
    return stores("10.40.0.1"), stores("10.40.0.2")


def small_pool(store: PgStore, size: int) -> list[str]:
    addrs = [f"10.40.0.{10 + n}" for n in range(size)]
    assert store.ensure_pool(POOL, ip(addrs[0]), ip(addrs[-1])) == size
    return addrs


def test_a_lease_bound_at_one_server_is_renewed_at_the_other(pair: tuple[PgStore, PgStore]) -> None:
    s1, s2 = pair
    small_pool(s1, 4)
    offer = s1.offer(Claim(b"c", "aa", NOW, NOW + HOLD), POOL, None)
    assert offer is not None and offer.state is LeaseState.OFFERED
    assert s1.bind(Claim(b"c", "aa", NOW + 1, NOW + 100), offer.address, "pc1") is not None
    # s1 is down; the client REBINDs by broadcast and s2 answers from the shared store.
    seen = s2.lookup(b"c", POOL, NOW + 90)
    assert seen is not None and seen.address == offer.address and seen.state is LeaseState.BOUND
    renewed = s2.bind(Claim(b"c", "aa", NOW + 90, NOW + 190), offer.address)
    assert renewed is not None and renewed.expires == NOW + 190 and renewed.hostname == "pc1"
    holder = s1.get(offer.address, NOW + 150)
    assert holder is not None and holder.client_key == b"c" and holder.expires == NOW + 190
    assert s1.get(ip("10.99.0.1"), NOW) is None  # in no pool
    back = s1.lookup(b"c", POOL, NOW + 150)
    assert back is not None and back.state is LeaseState.BOUND and back.expires == NOW + 190
    # A DISCOVER at either server gives the client its bound lease, not a new address.
    again = s1.offer(Claim(b"c", "aa", NOW + 150, NOW + 150 + HOLD), POOL, None)
    assert again is not None and again.address == offer.address
    assert again.state is LeaseState.BOUND


def test_release_at_one_server_frees_the_address_for_the_other(
    pair: tuple[PgStore, PgStore],
) -> None:
    s1, s2 = pair
    (only,) = small_pool(s1, 1)
    assert s1.bind(Claim(b"c", "aa", NOW, NOW + 100), ip(only)) is not None
    assert s2.offer(Claim(b"d", "bb", NOW + 1, NOW + 1 + HOLD), POOL, None) is None  # full
    assert s2.release(b"d", ip(only), NOW + 2) is None  # not d's to release
    released = s2.release(b"c", ip(only), NOW + 2)
    assert released is not None and released.state is LeaseState.RELEASED
    seen = s1.lookup(b"c", POOL, NOW + 3)
    assert seen is not None and seen.state is LeaseState.RELEASED
    taken = s1.offer(Claim(b"d", "bb", NOW + 3, NOW + 3 + HOLD), POOL, None)
    assert taken is not None and taken.address == ip(only)


def test_decline_at_one_server_quarantines_the_address_at_the_other(
    pair: tuple[PgStore, PgStore],
) -> None:
    s1, s2 = pair
    first, second = small_pool(s1, 2)
    offer = s1.offer(Claim(b"c", "aa", NOW, NOW + HOLD), POOL, ip(first))
    assert offer is not None and offer.address == ip(first)
    declined = s2.decline(Claim(b"c", "aa", NOW + 1, NOW + 600), ip(first))
    assert declined is not None and declined.state is LeaseState.DECLINED
    assert s1.decline(Claim(b"x", "ee", NOW + 1, NOW + 600), ip(second)) is None  # not x's
    for n in range(3):  # nobody gets the declined address while quarantined
        got = s1.offer(Claim(b"d%d" % n, "bb", NOW + 2, NOW + 2 + HOLD), POOL, ip(first))
        assert got is None or got.address == ip(second)
    assert s2.bind(Claim(b"d9", "bb", NOW + 3, NOW + 100), ip(first)) is None
    after = s2.offer(Claim(b"e", "cc", NOW + 601, NOW + 601 + HOLD), POOL, ip(first))
    assert after is not None and after.address == ip(first)


def test_expiry_is_seen_by_every_server_without_a_sweeper(pair: tuple[PgStore, PgStore]) -> None:
    s1, s2 = pair
    (only,) = small_pool(s1, 1)
    assert s1.bind(Claim(b"c", "aa", NOW, NOW + 10), ip(only)) is not None
    assert s2.offer(Claim(b"d", "bb", NOW + 9, NOW + 9 + HOLD), POOL, None) is None
    gone = s2.lookup(b"c", POOL, NOW + 10)
    assert gone is not None and gone.state is LeaseState.EXPIRED
    taken = s2.offer(Claim(b"d", "bb", NOW + 11, NOW + 11 + HOLD), POOL, None)
    assert taken is not None and taken.address == ip(only)
    assert s1.bind(Claim(b"c", "aa", NOW + 12, NOW + 100), ip(only)) is None  # d's offer now
    assert s1.lookup(b"c", POOL, NOW + 12) is None


def test_an_offer_of_one_server_is_not_offered_by_the_other_during_the_hold(
    pair: tuple[PgStore, PgStore],
) -> None:
    s1, s2 = pair
    addrs = small_pool(s1, 3)
    held = s1.offer(Claim(b"c", "aa", NOW, NOW + HOLD), POOL, None)
    assert held is not None
    others = [
        s2.offer(Claim(b"o%d" % n, "bb", NOW + n, NOW + n + HOLD), POOL, held.address)
        for n in range(4)
    ]
    given = [o.address for o in others if o is not None]
    assert held.address not in given
    assert sorted(map(str, given)) == sorted(a for a in addrs if ip(a) != held.address)
    assert s2.bind(Claim(b"o9", "bb", NOW + 5, NOW + 100), held.address) is None
    # The same client asking the other server during the hold gets the same address.
    same = s2.offer(Claim(b"c", "aa", NOW + 5, NOW + 5 + HOLD), POOL, None)
    assert same is not None and same.address == held.address
    # After the hold the address is free for the others again.
    late = s2.offer(
        Claim(b"o9", "bb", NOW + 5 + HOLD + 1, NOW + 5 + HOLD + 1 + HOLD), POOL, held.address
    )
    assert late is not None and late.address == held.address


def test_a_client_has_one_lease_whichever_server_binds_it(pair: tuple[PgStore, PgStore]) -> None:
    s1, s2 = pair
    first, second, _ = small_pool(s1, 3)
    assert s1.bind(Claim(b"c", "aa", NOW, NOW + 100), ip(first)) is not None
    moved = s2.bind(Claim(b"c", "aa", NOW + 1, NOW + 100), ip(second))  # INIT-REBOOT elsewhere
    assert moved is not None and moved.address == ip(second)
    states = {lease.address: lease.state for lease in s1.leases(POOL)}
    assert states == {ip(first): LeaseState.RELEASED, ip(second): LeaseState.BOUND}
    assert s1.bind(Claim(b"d", "bb", NOW + 2, NOW + 100), ip(second)) is None  # in use
    assert s1.bind(Claim(b"d", "bb", NOW + 2, NOW + 100), ip("10.99.0.1")) is None  # in no pool
    assert s1.bind(Claim(b"d", "bb", NOW + 2, math.inf), ip(first)) is not None  # BOOTP: for ever


def test_withdraw_frees_only_this_servers_offer(pair: tuple[PgStore, PgStore]) -> None:
    s1, s2 = pair
    (only,) = small_pool(s1, 1)
    assert s1.offer(Claim(b"c", "aa", NOW, NOW + HOLD), POOL, None) is not None
    s2.withdraw(b"c", POOL, NOW + 1)  # not s2's offer: nothing changes
    assert s2.offer(Claim(b"d", "bb", NOW + 1, NOW + 1 + HOLD), POOL, None) is None
    s1.withdraw(b"c", POOL, NOW + 1)  # the client chose another server
    taken = s2.offer(Claim(b"d", "bb", NOW + 2, NOW + 2 + HOLD), POOL, None)
    assert taken is not None and taken.address == ip(only)


def test_a_burst_is_one_commit_seen_by_the_other_server_only_at_its_end(
    stores: Stores, pair: tuple[PgStore, PgStore]
) -> None:
    s1, s2 = pair
    small_pool(s1, 8)
    with s1.batch():
        addrs = [ip(f"10.40.0.{10 + n}") for n in range(4)]
        bound = [s1.bind(Claim(b"c%d" % n, "aa", NOW, NOW + 99), a) for n, a in enumerate(addrs)]
        assert all(b is not None for b in bound)
        assert s2.lookup(b"c0", POOL, NOW) is None  # not committed yet
        # The other server skips the rows the burst holds instead of waiting for them.
        other = s2.offer(Claim(b"d", "bb", NOW, NOW + HOLD), POOL, None)
        assert other is not None and other.address == ip("10.40.0.14")
    assert s2.lookup(b"c3", POOL, NOW) is not None
    assert stores.sql("SELECT count(*) FROM leases WHERE state = 'bound'") == [(4,)]
