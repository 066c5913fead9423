"""`PxeService.reload` without sockets: what a SIGHUP changes live (static hosts in a new
engine on the same lease store, boot files, TFTP limits, the boot idle time), what it
names and keeps (ports, mode, interface, ROOT...), and that a missing boot file changes
nothing. tests/pxe/test_pxe_reload.py does the same to a real pxed mid-transfer."""

from __future__ import annotations

import asyncio
import dataclasses
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from ptftpd.dhcp import DhcpConfig, DhcpServer, Message, MessageType, Opt, decode, encode
from ptftpd.dhcp.leases import MemoryStore, StaticHost
from ptftpd.pxe import BootFiles, PxeConfig, PxeService
from ptftpd.tftp.server import ServerConfig, TftpServer

NOW = 1_700_000_000.0  # the time each message arrives (handle takes it)
SERVER = IPv4Address("10.78.0.1")
MAC = "52:54:00:12:34:56"


def discover() -> bytes:
    msg = Message(xid=7, chaddr=bytes.fromhex(MAC.replace(":", "")) + b"\x00" * 10)
    msg.options[Opt.MESSAGE_TYPE] = bytes([MessageType.DISCOVER])
    msg.options[Opt.VENDOR_CLASS] = b"PXEClient:Arch:00000:UNDI:002001"
    msg.options[Opt.CLIENT_ARCH] = b"\x00\x00"
    return encode(msg)


def first_config(root: Path) -> PxeConfig:
    for name in ("pxelinux.0", "undionly.kpxe", "ipxe.efi"):
        (root / name).write_bytes(b"boot")
    dhcp = DhcpConfig(
        server_ip=SERVER,
        network=IPv4Network("10.78.0.0/24"),
        bootfile="pxelinux.0",
        interface="br0",
        range_start=IPv4Address("10.78.0.100"),
        range_end=IPv4Address("10.78.0.120"),
    )
    return PxeConfig(
        dhcp=dhcp, tftp=ServerConfig(root=root, read_only=True), files=BootFiles("pxelinux.0")
    )


async def started(config: PxeConfig) -> PxeService:
    """The pieces `start()` would make, without binding anything."""
    service = PxeService(config)
    service.tftp_server = TftpServer(config.tftp)
    server = DhcpServer(config.dhcp, boot_policy=service.boot_policy, store=MemoryStore())
    server.engine = server.build_engine()
    service.dhcp_server = server
    return service


def offered(service: PxeService) -> tuple[IPv4Address, str]:
    assert service.dhcp_server is not None and service.dhcp_server.engine is not None
    [out] = service.dhcp_server.engine.handle(discover(), ("0.0.0.0", 68), NOW)
    offer = decode(out.payload)
    return offer.yiaddr, offer.file_str


def test_reload_applies_what_can_change_live(tmp_path: Path) -> None:
    async def run() -> None:
        old = first_config(tmp_path)
        service = await started(old)
        assert offered(service) == (IPv4Address("10.78.0.100"), "pxelinux.0")
        engine = service.dhcp_server.engine if service.dhcp_server else None
        tftp = dataclasses.replace(old.tftp, max_sessions=2, timeout=3.0, blksize_max=1024)
        dhcp = dataclasses.replace(
            old.dhcp, static_hosts=(StaticHost(MAC, IPv4Address("10.78.0.50")),)
        )
        new = dataclasses.replace(
            old,
            dhcp=dhcp,
            tftp=tftp,
            files=BootFiles("pxelinux.0", bios="undionly.kpxe"),
            boot_idle=5.0,
        )
        summary = service.reload(new)
        assert summary == (
            "1 static host(s), lease time 3600 s; boot files BOOTFILE=pxelinux.0, "
            "--bios-bootfile=undionly.kpxe; TFTP max sessions 2"
        )
        assert service.dhcp_server is not None
        assert service.dhcp_server.engine is not engine  # rebuilt, on the same store
        assert offered(service) == (IPv4Address("10.78.0.50"), "undionly.kpxe")
        assert service.responder.files.bios == "undionly.kpxe"
        assert service.boot_log.idle == 5.0
        assert service.tftp_server is not None
        assert service.tftp_server.config == tftp
        assert service.tftp_server.rules.max_sessions == 2

    asyncio.run(run())


def test_reload_names_and_keeps_what_is_bound(tmp_path: Path) -> None:
    async def run() -> None:
        old = first_config(tmp_path)
        service = await started(old)
        other_root = tmp_path / "other"
        other_root.mkdir()
        dhcp = dataclasses.replace(
            old.dhcp, interface="eth9", port=1067, client_port=1068, leases_path=tmp_path / "l.db"
        )
        new = dataclasses.replace(
            old,
            dhcp=dhcp,
            tftp=ServerConfig(root=other_root),
            proxy=True,
            tftp_port=6969,
            http_port=8080,
            ipv6=True,
            files=BootFiles("ipxe.efi"),
        )
        summary = service.reload(new)
        assert summary.endswith(
            "; kept until a restart: proxy, tftp-port, http-port, ipv6, interface, port, "
            "leases, root"
        )
        expected = dataclasses.replace(old, files=BootFiles("ipxe.efi"))
        assert service.config == expected
        assert offered(service) == (IPv4Address("10.78.0.100"), "ipxe.efi")

    asyncio.run(run())


def test_a_missing_boot_file_changes_nothing(tmp_path: Path) -> None:
    async def run() -> None:
        old = first_config(tmp_path)
        service = await started(old)
        engine = service.dhcp_server.engine if service.dhcp_server else None
        new = dataclasses.replace(old, files=BootFiles("pxelinux.0", efi64="gone.efi"), boot_idle=1)
        with pytest.raises(
            ValueError, match=r"does not hold the boot file\(s\): --efi64-bootfile gone.efi"
        ):
            service.reload(new)
        assert service.config == old
        assert service.dhcp_server is not None and service.dhcp_server.engine is engine
        assert service.boot_log.idle == old.boot_idle

    asyncio.run(run())
