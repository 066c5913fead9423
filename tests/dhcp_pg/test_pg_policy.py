"""The lease policy on PostgreSQL rows: two servers' policies, one truth, no cache."""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest
from pgtest import NOW, Stores, bound_rows, ip

from ptftpd.dhcp.leases import Ack, Nak, StaticHost, SubnetConfig
from ptftpd.dhcp.leases import LeasePolicy as SharedLeasePolicy
from ptftpd.dhcp.store import StoreUnavailable
from support.clocked import Clocked
from support.postgres import PgCluster

NET = IPv4Network("10.9.0.0/24")
STATIC = StaticHost("52:54:00:00:00:99", ip("10.9.0.20"), "fixed")


def config(authoritative: bool = False) -> SubnetConfig:
    return SubnetConfig(
        NET,
        exclude=(ip("10.9.0.1"), ip("10.9.0.2")),
        lease_time=600,
        static_hosts=(STATIC,),
        authoritative=authoritative,
    )


def policies(stores: Stores) -> tuple[Clocked, Clocked]:
    clock = [NOW]
    a = Clocked(SharedLeasePolicy(config(), stores("10.9.0.1")), lambda: clock[0])
    b = Clocked(SharedLeasePolicy(config(), stores("10.9.0.2")), lambda: clock[0])
    return a, b


def test_pool_is_named_by_its_subnet_and_checked(stores: Stores) -> None:
    a, _ = policies(stores)
    assert a.pool == "10.9.0.0/24"
    other = SubnetConfig(NET, exclude=(ip("10.9.0.1"),))  # forgets server b, the static host
    only_there = r"excluded only in the database: 10\.9\.0\.2, 10\.9\.0\.20 "
    with pytest.raises(Exception, match=only_there):
        SharedLeasePolicy(other, stores("10.9.0.3"))


def test_the_other_server_sees_every_lease(stores: Stores) -> None:
    a, b = policies(stores)
    key = b"\x01client"
    offered = a.offer(key, "02:00:00:00:00:01")
    assert offered is not None
    # b offers the same client nothing new: the database holds a's reservation.
    assert b.offer(key, "02:00:00:00:00:01") == offered
    ack = a.request(key, "02:00:00:00:00:01", offered, selecting=True)
    assert isinstance(ack, Ack)
    # REBINDING at b (a is dead): same address, ACKed from the shared row.
    again = b.request(key, "02:00:00:00:00:01", offered)
    assert isinstance(again, Ack) and again.lease.address == offered
    # Another client asking b for it is refused (silently: b never heard of it).
    assert b.request(b"\x01other", "02:00:00:00:00:02", offered) is None
    nak = b.request(b"\x01other", "02:00:00:00:00:02", offered, selecting=True)
    # SELECTING for what b never offered it: NAKed, as a local server does.
    assert isinstance(nak, Nak) and "was not offered to this client" in nak.reason
    # RELEASE at a is seen by b: the address may go to the other client now.
    assert a.release(key, offered) is not None
    assert isinstance(b.request(b"\x01other", "02:00:00:00:00:02", offered), Ack)


def test_unknown_init_reboot_is_silent_and_static_hosts_stay_in_config(stores: Stores) -> None:
    a, _ = policies(stores)
    assert a.request(b"\x01new", "02:00:00:00:00:03", ip("10.9.0.50"), known_only=True) is None
    assert a.offer(b"\x01fixed", STATIC.mac) == STATIC.address
    ack = a.request(b"\x01fixed", STATIC.mac, STATIC.address, selecting=True)
    assert isinstance(ack, Ack) and ack.lease.hostname == "fixed"
    wrong = a.request(b"\x01x", "02:00:00:00:00:04", STATIC.address, selecting=True)
    assert isinstance(wrong, Nak) and "reserved" in wrong.reason
    assert bound_rows(stores) == []  # nothing of the static host in the database


def test_a_lost_database_raises_instead_of_guessing(stores: Stores, pg_cluster: PgCluster) -> None:
    a, _ = policies(stores)
    pg_cluster.stop()
    try:
        with pytest.raises(StoreUnavailable):
            a.offer(b"\x01late", "02:00:00:00:00:05")
    finally:
        pg_cluster.start()
