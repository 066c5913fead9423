"""The SQLite lease file DHCPv4 and DHCPv6 rows are written to (`dhcp.store.LeaseFile`): a
write that fails half-way is rolled back, so nothing of it reaches the file later and
the next write works. Real SQLite files; the failing row breaks a NOT NULL column."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest

from ptftpd.dhcp.lease_store import Lease, LeaseState
from ptftpd.dhcp.store import SqliteStore, StoreError


def lease(last: int, client: Any = b"\x01c") -> Lease:
    return Lease(IPv4Address(f"10.9.0.{last}"), client, "52:54:00:00:00:01", LeaseState.BOUND, 99.0)


def lease6(last: int, client: Any = b"duid\x00\x00\x00\x01") -> Lease[IPv6Address]:
    return Lease(IPv6Address(f"fd00::{last}"), client, "6475696400", LeaseState.BOUND, 99.0)


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
    store = SqliteStore(tmp_path / "leases6.sqlite")
    with pytest.raises(StoreError, match="cannot write lease file"):
        store.save([lease6(5), lease6(6, client=None)])  # client is NOT NULL
    store.save([lease6(7)])
    store.close()
    again = SqliteStore(tmp_path / "leases6.sqlite")
    assert [str(x.address) for x in again.load()] == ["fd00::7"]
    again.close()
