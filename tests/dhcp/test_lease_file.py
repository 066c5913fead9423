"""The SQLite lease file both DHCP stores write through (`dhcp.store.LeaseFile`): a
write that fails half-way is rolled back, so nothing of it reaches the file later and
the next write works. Real SQLite files; the failing row breaks a NOT NULL column."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest

from ptftpd.dhcp.lease_store import Lease, LeaseState
from ptftpd.dhcp.store import SqliteStore, StoreError
from ptftpd.dhcp6.leases import Lease6, LeaseState6
from ptftpd.dhcp6.store import Lease6StoreError, SqliteStore6


def lease(last: int, client: Any = b"\x01c") -> Lease:
    return Lease(IPv4Address(f"10.9.0.{last}"), client, "52:54:00:00:00:01", LeaseState.BOUND, 99.0)


def lease6(last: int, expires: Any = 99.0) -> Lease6:
    return Lease6(IPv6Address(f"fd00::{last}"), b"duid", 1, LeaseState6.BOUND, expires, 1.0)


def test_a_failed_ipv4_write_leaves_nothing_behind(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "leases.sqlite")
    with pytest.raises(StoreError, match="cannot write lease file"):
        store.save([lease(5), lease(6, client=None)])  # client is NOT NULL
    store.save([lease(7)])
    store.close()
    again = SqliteStore(tmp_path / "leases.sqlite")
    assert [str(x.address) for x in again.load()] == ["10.9.0.7"]
    again.close()


def test_a_failed_ipv6_write_leaves_nothing_behind(tmp_path: Path) -> None:
    store = SqliteStore6(tmp_path / "leases6.sqlite")
    with pytest.raises(Lease6StoreError, match="cannot write lease file"):
        store.save([lease6(5), lease6(6, expires=None)])  # expires is NOT NULL
    store.save([lease6(7)])
    store.close()
    again = SqliteStore6(tmp_path / "leases6.sqlite")
    assert [str(x.address) for x in again.load()] == ["fd00::7"]
    again.close()
