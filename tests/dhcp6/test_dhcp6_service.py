"""Dhcp6Service life cycle errors the lead's pxed wiring relies on: one typed error
with a one-line message, nothing left open."""

from __future__ import annotations

import asyncio
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest

from ptftpd.dhcp6 import Dhcp6Config, Dhcp6Service, config_for_interface
from ptftpd.errors import StartError

PREFIX = IPv6Network("fd00:77::/64")


def test_unknown_interface_is_one_start_error(tmp_path: Path) -> None:
    service = Dhcp6Service(
        Dhcp6Config(interface="nosuchif0", prefix=PREFIX, leases_path=tmp_path / "l.sqlite")
    )
    with pytest.raises(StartError, match=r"^no such interface: nosuchif0$"):
        asyncio.run(service.start())
    assert service.closed
    service.close()  # idempotent


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"preferred_lifetime": 8000, "valid_lifetime": 7200}, "preferred lifetime"),
        ({"t1": 3000, "t2": 2000}, "T1 <= T2"),
        ({"range_start": IPv6Address("2001:db8::1")}, "outside fd00:77::/64"),
        ({"prefix": IPv6Network("fd00:77::/124")}, "too small"),
        ({"lease_sync": "sometimes"}, "lease sync"),
    ],
)
def test_bad_config_is_a_start_error(overrides: dict[str, object], message: str) -> None:
    settings: dict[str, object] = {"interface": "lo", "prefix": PREFIX, **overrides}
    with pytest.raises(StartError, match=message):
        Dhcp6Config(**settings)  # type: ignore[arg-type]


def test_interface_without_mac_needs_a_configured_duid() -> None:
    service = Dhcp6Service(Dhcp6Config(interface="lo", prefix=PREFIX))
    with pytest.raises(StartError, match="no hardware address"):
        asyncio.run(service.start())


def test_unwritable_lease_file_is_a_start_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    service = Dhcp6Service(
        Dhcp6Config(
            interface="lo",
            prefix=PREFIX,
            leases_path=blocker / "sub" / "l.sqlite",
            server_duid=bytes.fromhex("00030001525400aabbcc"),  # lo has no MAC
        )
    )
    with pytest.raises(StartError, match="cannot open lease file"):
        asyncio.run(service.start())


def test_config_for_interface_errors_are_start_errors() -> None:
    with pytest.raises(StartError, match="no such interface or address: nosuchif0"):
        config_for_interface("nosuchif0")
    with pytest.raises(StartError, match="too small"):
        config_for_interface("::1")  # a literal address without a usable prefix
