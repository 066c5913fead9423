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


def test_the_database_lane_keys_packets_by_client() -> None:
    """With PostgreSQL bindings each client's packets are answered in order
    (`client_key`: source and DUID, through relays); garbage is keyed by source."""
    from ptftpd.dhcp6.codec import (
        ClientId,
        ElapsedTime,
        InterfaceId,
        Message,
        MsgType,
        RelayMessage,
        RelayMsg,
        encode,
    )
    from ptftpd.dhcp6.service import client_key

    duid = bytes.fromhex("00030001525400123456")
    msg = Message(MsgType.SOLICIT, 5, (ElapsedTime(0), ClientId(duid)))
    assert client_key(encode(msg), "fe80::1") == f"fe80::1 {duid.hex()}"
    inner = RelayMessage(
        MsgType.RELAY_FORW,
        0,
        IPv6Address("fd00:77::1"),
        IPv6Address("fe80::3"),
        (InterfaceId(b"eth1"), RelayMsg(msg)),
    )
    outer = RelayMessage(
        MsgType.RELAY_FORW, 1, IPv6Address("fd00:78::1"), IPv6Address("fe80::4"), (RelayMsg(inner),)
    )
    assert client_key(encode(outer), "fd00:88::2") == f"fd00:88::2 {duid.hex()}"
    other = Message(MsgType.SOLICIT, 5, (ClientId(duid[:-1] + b"\x57"),))
    assert client_key(encode(other), "fe80::1") != client_key(encode(msg), "fe80::1")
    for garbage in (b"", b"\x01", b"\x0c" + bytes(40), b"\x0c" * 34 + b"\x00\x09\xff\xff"):
        assert client_key(garbage, "fe80::9") == "fe80::9"
