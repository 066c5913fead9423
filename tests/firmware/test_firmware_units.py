"""pxed's firmware decisions without sockets: the whole IANA architecture table, the
vendor-class fallback when option 93 is missing or unreadable, Secure Boot's shim for x64
UEFI (PXE and HTTP), ARM64 over PXE and HTTP, and the Raspberry Pi's option 43 in full
and proxy mode (the bytes checked against dnsmasq's in test_pi_boot.py)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptftpd.dhcp import DhcpConfig, DhcpServer, Message, MessageType, Opt, decode, encode
from ptftpd.dhcp.leases import MemoryStore
from ptftpd.dhcp6.boot import BootRequest6
from ptftpd.dhcp6.codec import VendorClass
from ptftpd.pxe import ARCHITECTURES, BootClass, BootFiles, ProxyResponder, PxeConfig, PxeService
from ptftpd.pxe.firmware import (
    ARCH_TABLE,
    GRUB_NAME,
    SHIM_NAME,
    arch_class,
    choose_boot_file,
    client_arch,
    is_raspberry_pi,
    missing_boot_files,
    rpi_vendor_options,
    vendor_class_arch,
)
from ptftpd.pxe.ipv6 import Pxe6Policy
from ptftpd.tftp.server import ServerConfig

NOW = 1_700_000_000.0  # the time each message arrives (handle takes it)
SERVER = IPv4Address("10.78.0.1")
QEMU_MAC = bytes.fromhex("525400123456")
PI4_MAC = bytes.fromhex("dca632123456")
FILES = BootFiles(
    default="default.0",
    bios="undionly.kpxe",
    efi32="ipxe32.efi",
    efi64="ipxe.efi",
    arm64="grubaa64.efi",
    ipxe="boot.ipxe",
)
SECURE = BootFiles(
    default="default.0", bios="undionly.kpxe", arm64="grubaa64.efi", secure_boot=True
)
BASE = ("10.78.0.1", 8080)
# What dnsmasq 2.90 sends for pxe-service=0,"Raspberry Pi Boot" (captured from its reply;
# test_pi_boot.py compares against a running dnsmasq every time).
DNSMASQ_PI_43 = bytes.fromhex("0601030a0400505845091400001152617370626572727920506920426f6f74ff")


def pi4_guid(serial: int = 0x9FFEFDEF, mac: bytes = PI4_MAC) -> bytes:
    """Option 97 as the Pi 4 EEPROM sends it by default (DHCP_OPTION97): type 0, the
    fourcc `RPi4` (0x34695052 little-endian), board revision, MAC low 4 bytes, serial."""
    return b"\x00RPi4" + (0x00C03111).to_bytes(4, "little") + mac[2:] + serial.to_bytes(4, "little")


def dhcp_request(
    arch: int | None = 0,
    vendor: str | None = None,
    mac: bytes = QEMU_MAC,
    mtype: MessageType = MessageType.DISCOVER,
    extra: dict[int, bytes] | None = None,
) -> Message:
    msg = Message(xid=0x4242, chaddr=mac + b"\x00" * 10)
    msg.options[Opt.MESSAGE_TYPE] = bytes([mtype])
    if arch is not None:
        msg.options[Opt.CLIENT_ARCH] = arch.to_bytes(2, "big")
    if vendor is None and arch is not None:
        vendor = f"PXEClient:Arch:{arch:05d}:UNDI:003000"
    if vendor is not None:
        msg.options[Opt.VENDOR_CLASS] = vendor.encode()
    msg.options.update(extra or {})
    return msg


def pi_discover(mac: bytes = PI4_MAC, guid: bytes | None = None) -> Message:
    return dhcp_request(
        0,
        "PXEClient:Arch:00000:UNDI:002001",
        mac,
        extra={97: pi4_guid(mac=mac) if guid is None else guid, 94: b"\x01\x02\x01"},
    )


# -- the architecture table ---------------------------------------------------------------


def test_table_covers_every_registry_code() -> None:
    assert set(ARCH_TABLE) == set(ARCHITECTURES) == set(range(42))
    # The registry's names past 20 (the old table was one off from 23 on).
    assert ARCHITECTURES[25] == "RISC-V 32 UEFI"
    assert ARCHITECTURES[27] == "RISC-V 64 UEFI"
    assert ARCHITECTURES[28] == "RISC-V 64 UEFI HTTP"
    assert ARCHITECTURES[39] == "LoongArch 64 UEFI"
    assert ARCHITECTURES[41] == "ARM rpiboot"
    http_codes = {code for code, info in ARCH_TABLE.items() if info.http}
    assert http_codes == {15, 16, 17, 18, 19, 20, 23, 24, 26, 28, 30, 38, 40}
    assert all("HTTP" in ARCHITECTURES[code] for code in http_codes)


@pytest.mark.parametrize(
    ("arch", "http", "cls"),
    [
        (0, False, BootClass.BIOS),
        (6, False, BootClass.EFI32),
        (7, False, BootClass.EFI64),
        (9, False, BootClass.EFI64),
        (10, False, None),
        (11, False, BootClass.ARM64),
        (15, True, BootClass.EFI32),
        (16, True, BootClass.EFI64),
        (18, True, None),
        (19, True, BootClass.ARM64),
        (19, False, None),  # an HTTP code from a PXE client: BOOTFILE
        (20, True, BootClass.BIOS),
        (25, False, None),
        (27, False, None),
        (41, False, None),
        (0x7777, True, None),
    ],
)
def test_arch_families(arch: int, http: bool, cls: BootClass | None) -> None:
    assert arch_class(arch, http) is cls


# -- option 93 missing or unreadable: the vendor class's Arch -------------------------------


@pytest.mark.parametrize(
    ("vendor", "code"),
    [
        ("PXEClient:Arch:00011:UNDI:003000", 11),
        ("HTTPClient:Arch:00019:UNDI:003000", 19),
        ("PXEClient:Arch:00000", 0),
        ("PXEClient:Arch:99999:UNDI:003000", None),  # not a 16-bit code
        ("PXEClient:Arch:0011:UNDI:003000", None),
        ("PXEClient", None),
        ("MSFT 5.0", None),
        (None, None),
    ],
)
def test_vendor_class_arch(vendor: str | None, code: int | None) -> None:
    assert vendor_class_arch(vendor) == code


@pytest.mark.parametrize("raw", [None, b"", b"\x00", b"\x00\x0b\x00"])
def test_unreadable_option_93_falls_back_to_the_vendor_class(raw: bytes | None) -> None:
    """The Pi 4's UEFI firmware (EDK2) sends no readable 93 but says Arch:00011."""
    msg = dhcp_request(None, "PXEClient:Arch:00011:UNDI:003000")
    if raw is not None:
        msg.options[Opt.CLIENT_ARCH] = raw
    assert client_arch(msg) == 11
    choice = choose_boot_file(FILES, msg)
    assert (choice.file, choice.reason, choice.arch) == ("grubaa64.efi", "arm64", 11)


def test_readable_option_93_wins_over_the_vendor_class() -> None:
    msg = dhcp_request(7, "PXEClient:Arch:00011:UNDI:003000")
    assert choose_boot_file(FILES, msg).file == "ipxe.efi"


@given(st.binary(max_size=8), st.integers(0, 0xFFFF))
def test_any_option_93_and_vendor_arch_gets_a_file(raw: bytes, code: int) -> None:
    msg = dhcp_request(None, f"PXEClient:Arch:{code:05d}:UNDI:003000")
    msg.options[Opt.CLIENT_ARCH] = raw
    assert choose_boot_file(FILES, msg).file in {
        "default.0",
        "undionly.kpxe",
        "ipxe32.efi",
        "ipxe.efi",
        "grubaa64.efi",
    }


def test_dhcpv6_without_option_61_takes_the_vendor_class_arch() -> None:
    policy = Pxe6Policy(FILES, IPv6Address("fd00::1"), 8080)
    vendor = VendorClass(343, (b"HTTPClient:Arch:00019:UNDI:003000",))
    choice = policy(BootRequest6(arches=(), vendor_class=vendor))
    assert choice is not None and choice.url == "http://[fd00::1]:8080/grubaa64.efi"


# -- ARM64 ----------------------------------------------------------------------------------


def test_arm64_pxe_and_http() -> None:
    pxe = choose_boot_file(FILES, dhcp_request(11), BASE)
    assert (pxe.file, pxe.http) == ("grubaa64.efi", False)
    http = choose_boot_file(FILES, dhcp_request(19, "HTTPClient:Arch:00019:UNDI:003000"), BASE)
    assert (http.file, http.http) == ("http://10.78.0.1:8080/grubaa64.efi", True)


# -- Secure Boot ------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", [7, 9])
def test_secure_boot_gives_x64_uefi_the_shim(arch: int) -> None:
    assert choose_boot_file(SECURE, dhcp_request(arch)).file == SHIM_NAME


def test_secure_boot_over_http_and_for_other_families() -> None:
    http = choose_boot_file(SECURE, dhcp_request(16, "HTTPClient:Arch:00016:UNDI:003000"), BASE)
    assert http.file == "http://10.78.0.1:8080/shimx64.efi" and http.http
    assert choose_boot_file(SECURE, dhcp_request(0)).file == "undionly.kpxe"
    assert choose_boot_file(SECURE, dhcp_request(11)).file == "grubaa64.efi"
    assert choose_boot_file(SECURE, dhcp_request(6)).file == "default.0"


def test_secure_boot_needs_shim_and_grub_in_root(tmp_path: Path) -> None:
    for name in ("default.0", "undionly.kpxe", "grubaa64.efi", SHIM_NAME):
        (tmp_path / name).write_bytes(b"x")
    assert missing_boot_files(tmp_path, SECURE) == [f"--secure-boot {GRUB_NAME}"]
    (tmp_path / GRUB_NAME).write_bytes(b"x")
    assert missing_boot_files(tmp_path, SECURE) == []


# -- Raspberry Pi -------------------------------------------------------------------------------


def test_pi_menu_bytes_are_dnsmasqs() -> None:
    assert rpi_vendor_options() == DNSMASQ_PI_43


@pytest.mark.parametrize(
    ("msg", "pi"),
    [
        (pi_discover(), True),  # Pi 4 EEPROM: RPi4 GUID and a Pi MAC
        (pi_discover(QEMU_MAC), True),  # the GUID alone
        (pi_discover(PI4_MAC, guid=bytes(17)), True),  # DHCP_OPTION97=0: the MAC alone
        (pi_discover(bytes.fromhex("b827eb000001"), guid=b""), True),  # Pi 3 ROM
        (pi_discover(QEMU_MAC, guid=bytes(17)), False),  # a PC's BIOS ROM
        (dhcp_request(11, mac=PI4_MAC), False),  # UEFI on a Pi: ARM64, not the bootloader
        (dhcp_request(0, "PXEClient:Arch:00000:UNDI:002001", PI4_MAC, extra={77: b"iPXE"}), False),
        (dhcp_request(0, "MSFT 5.0", PI4_MAC), False),
    ],
)
def test_raspberry_pi_detection(msg: Message, pi: bool) -> None:
    assert is_raspberry_pi(msg) is pi


def test_pi_proxy_offer_and_boot_server_ack_carry_the_menu() -> None:
    proxy = ProxyResponder(SERVER, FILES)
    [out] = proxy.handle(encode(pi_discover()), ("0.0.0.0", 68), boot_server=False, now=NOW)
    offer = decode(out.payload)
    assert offer.message_type is MessageType.OFFER and offer.yiaddr == IPv4Address(0)
    assert offer.options[Opt.VENDOR_SPECIFIC] == DNSMASQ_PI_43
    assert offer.options[Opt.VENDOR_CLASS] == b"PXEClient"
    assert offer.options[Opt.CLIENT_UUID] == pi4_guid()
    assert offer.siaddr == SERVER
    request = pi_discover()
    request.options[Opt.MESSAGE_TYPE] = bytes([MessageType.REQUEST])
    request.ciaddr = IPv4Address("10.78.0.140")
    [out] = proxy.handle(encode(request), ("10.78.0.140", 68), boot_server=True, now=NOW)
    assert decode(out.payload).options[Opt.VENDOR_SPECIFIC] == DNSMASQ_PI_43
    # A PC's BIOS ROM beside it keeps the plain "download the named file" 43.
    [out] = proxy.handle(encode(dhcp_request(0)), ("0.0.0.0", 68), boot_server=False, now=NOW)
    assert decode(out.payload).options[Opt.VENDOR_SPECIFIC] == b"\x06\x01\x08\xff"


def test_pi_full_mode_offer_carries_the_menu(tmp_path: Path) -> None:
    dhcp = DhcpConfig(server_ip=SERVER, network=IPv4Network("10.78.0.0/24"), bootfile="default.0")
    config = PxeConfig(dhcp=dhcp, tftp=ServerConfig(root=tmp_path), files=FILES)
    svc = PxeService(config)
    engine = DhcpServer(dhcp, boot_policy=svc.boot_policy, store=MemoryStore()).build_engine()
    [out] = engine.handle(encode(pi_discover()), ("0.0.0.0", 68), NOW)
    offer = decode(out.payload)
    assert offer.message_type is MessageType.OFFER and offer.yiaddr != IPv4Address(0)
    assert offer.options[Opt.VENDOR_SPECIFIC] == DNSMASQ_PI_43
    assert offer.options[Opt.CLIENT_UUID] == pi4_guid()
    assert svc.boot_log.sessions["dc:a6:32:12:34:56"].stages == ["Raspberry Pi BIOS"]
    [out] = engine.handle(encode(dhcp_request(0)), ("0.0.0.0", 68), NOW)
    assert decode(out.payload).options[Opt.VENDOR_SPECIFIC] == b"\x06\x01\x08\xff"
