"""pxed's decisions without sockets: architecture table, boot file choice, iPXE
detection, proxyDHCP and boot server replies, the boot log, the start-up file check,
and the DHCP hook wired into the real DHCP engine."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pxe_requests import FILES, MAC, SERVER, request

from ptftpd.dhcp import DhcpConfig, DhcpServer, Message, MessageType, Opt, decode, encode
from ptftpd.dhcp.leases import MemoryStore
from ptftpd.pxe import (
    ARCHITECTURES,
    BootClass,
    BootFiles,
    BootLog,
    ProxyResponder,
    PxeConfig,
    PxeService,
    arch_class,
    choose_boot_file,
    is_ipxe,
    missing_boot_files,
)
from ptftpd.tftp.server import ServerConfig
from support import script

# -- architecture table and choice -----------------------------------------------------


NOW = 1_700_000_000.0  # the time each message arrives (handle takes it)


@pytest.mark.parametrize(
    ("arch", "cls"),
    [
        (0, BootClass.BIOS),
        (6, BootClass.EFI32),
        (7, BootClass.EFI64),
        (9, BootClass.EFI64),
        (11, BootClass.ARM64),
        (16, None),  # x64 UEFI HTTP boot wants a URL: the default file
        (10, None),
        (None, None),
        (0x7777, None),
    ],
)
def test_arch_class(arch: int | None, cls: BootClass | None) -> None:
    assert arch_class(arch) is cls


def test_table_is_the_iana_registry() -> None:
    for code, name in [(0, "BIOS"), (6, "EFI IA32"), (7, "EFI x64"), (11, "EFI ARM64")]:
        assert ARCHITECTURES[code] == name
    assert len(ARCHITECTURES) >= 40


@pytest.mark.parametrize(
    ("arch", "expected", "reason"),
    [
        (0, "undionly.kpxe", "bios"),
        (6, "ipxe32.efi", "efi32"),
        (7, "ipxe.efi", "efi64"),
        (9, "ipxe.efi", "efi64"),
        (11, "ipxe-arm64.efi", "arm64"),
        (16, "default.0", "default"),
        (None, "default.0", "default"),
        (4242, "default.0", "unknown arch"),
    ],
)
def test_choice_by_architecture(arch: int | None, expected: str, reason: str) -> None:
    # Vendor class without Arch: no fallback to its code when option 93 is missing.
    choice = choose_boot_file(FILES, request(arch=arch, vendor="PXEClient"))
    assert (choice.file, choice.reason, choice.ipxe) == (expected, reason, False)


def test_unset_family_gets_bootfile() -> None:
    files = BootFiles(default="pxelinux.0", efi64="ipxe.efi")
    assert choose_boot_file(files, request(arch=0)).file == "pxelinux.0"
    assert choose_boot_file(files, request(arch=11)).file == "pxelinux.0"
    assert choose_boot_file(files, request(arch=7)).file == "ipxe.efi"


@pytest.mark.parametrize(
    "msg",
    [
        request(arch=7, user_class=b"iPXE"),  # what iPXE sends: the bare string
        request(arch=0, user_class=b"\x04iPXE"),  # RFC 3004 list form
        request(arch=7, ipxe_175=True),  # iPXE's own option, no user class
    ],
)
def test_ipxe_gets_its_script_not_the_binary_again(msg: Message) -> None:
    assert is_ipxe(msg)
    choice = choose_boot_file(FILES, msg)
    assert choice.file == "boot.ipxe" and choice.ipxe and choice.reason == "ipxe"
    assert choice.arch_label.startswith("iPXE")


def test_ipxe_without_ipxe_bootfile_gets_the_firmware_file() -> None:
    files = BootFiles(default="pxelinux.0")
    choice = choose_boot_file(files, request(arch=0, user_class=b"iPXE"))
    assert choice.file == "pxelinux.0" and choice.ipxe


def test_other_user_class_is_not_ipxe() -> None:
    assert not is_ipxe(request(user_class=b"gPXE"))
    assert not is_ipxe(request(user_class=b"\x04iPXF"))


@given(st.integers(min_value=0, max_value=0xFFFF))
def test_any_architecture_code_gets_a_file(code: int) -> None:
    choice = choose_boot_file(FILES, request(arch=code))
    assert choice.file in {
        "default.0",
        "undionly.kpxe",
        "ipxe32.efi",
        "ipxe.efi",
        "ipxe-arm64.efi",
    }


@given(st.binary(max_size=12))
def test_garbage_option_93_never_raises(raw: bytes) -> None:
    msg = request(arch=None)
    msg.options[Opt.CLIENT_ARCH] = raw
    assert choose_boot_file(FILES, msg).file


# -- proxyDHCP and boot server ----------------------------------------------------------


def responder(boot_log: BootLog | None = None, answer_discover: bool = True) -> ProxyResponder:
    return ProxyResponder(SERVER, FILES, boot_log=boot_log, answer_discover=answer_discover)


def test_proxy_offer_carries_boot_information_only() -> None:
    uuid = b"\x00" + bytes(range(16))
    msg = request(arch=7, vendor="PXEClient:Arch:00007:UNDI:003000", extra={97: uuid})
    out = responder().handle(encode(msg), ("0.0.0.0", 68), boot_server=False, now=NOW)
    assert len(out) == 1
    assert out[0].address == ("255.255.255.255", 68)
    reply = decode(out[0].payload)
    assert reply.message_type is MessageType.OFFER
    assert reply.xid == msg.xid and reply.mac == MAC
    assert reply.yiaddr == IPv4Address("0.0.0.0")  # no address: not our job
    assert reply.siaddr == SERVER
    assert reply.file_str == "ipxe.efi"
    assert reply.options[Opt.BOOTFILE_NAME] == b"ipxe.efi"
    assert reply.options[Opt.TFTP_SERVER_NAME] == b"10.78.0.1"
    assert reply.options[Opt.VENDOR_CLASS] == b"PXEClient"
    assert reply.options[Opt.SERVER_ID] == SERVER.packed
    # WDS ("BINL") style: no option 43, so UEFI firmware asks the boot server on 4011.
    assert Opt.VENDOR_SPECIFIC not in reply.options
    assert reply.options[Opt.CLIENT_UUID] == uuid
    assert Opt.LEASE_TIME not in reply.options and Opt.SUBNET_MASK not in reply.options


def test_proxy_ignores_non_pxe_clients_and_non_discovers() -> None:
    r = responder()
    assert r.handle(encode(request(vendor="MSFT 5.0")), ("0.0.0.0", 68), False, now=NOW) == []
    assert r.handle(encode(request(vendor=None)), ("0.0.0.0", 68), False, now=NOW) == []
    assert r.handle(encode(request(MessageType.RELEASE)), ("0.0.0.0", 68), False, now=NOW) == []
    assert r.handle(b"\x01\x01\x06", ("0.0.0.0", 68), False, now=NOW) == []


def test_full_mode_leaves_port_67_to_the_dhcp_server() -> None:
    assert (
        responder(answer_discover=False).handle(encode(request()), ("0.0.0.0", 68), False, now=NOW)
        == []
    )


def test_request_to_the_real_dhcp_server_teaches_the_address() -> None:
    log = BootLog()
    msg = request(MessageType.REQUEST, extra={Opt.REQUESTED_IP: bytes([10, 78, 0, 133])})
    assert responder(log).handle(encode(msg), ("0.0.0.0", 68), False, now=NOW) == []
    assert log.mac_of_ip["10.78.0.133"] == "52:54:00:12:34:56"


def test_boot_server_ack_on_4011() -> None:
    log = BootLog()
    # A PXE 2.1 client naming boot item type 0, layer 0 in 43.71: echoed back.
    vendor = b"\x47\x04\x00\x00\x00\x00\xff"
    msg = request(
        MessageType.REQUEST,
        arch=0,
        ciaddr="10.78.0.133",
        extra={Opt.VENDOR_SPECIFIC: vendor},
    )
    out = responder(log).handle(encode(msg), ("10.78.0.133", 68), boot_server=True, now=NOW)
    assert len(out) == 1 and out[0].address == ("10.78.0.133", 68)
    reply = decode(out[0].payload)
    assert reply.message_type is MessageType.ACK
    assert reply.ciaddr == IPv4Address("10.78.0.133") and reply.siaddr == SERVER
    assert reply.file_str == "undionly.kpxe"
    assert reply.yiaddr == IPv4Address("0.0.0.0")
    assert reply.options[Opt.VENDOR_SPECIFIC] == b"\x47\x04\x00\x00\x00\x00\xff"
    assert log.mac_of_ip["10.78.0.133"] == "52:54:00:12:34:56"


def test_boot_server_gives_ipxe_its_script() -> None:
    msg = request(MessageType.REQUEST, arch=7, user_class=b"iPXE", ciaddr="10.78.0.9")
    out = responder().handle(encode(msg), ("10.78.0.9", 68), boot_server=True, now=NOW)
    reply = decode(out[0].payload)
    assert reply.file_str == "boot.ipxe"
    assert Opt.VENDOR_SPECIFIC not in reply.options  # no boot item asked, none echoed


def test_boot_server_answers_the_source_port() -> None:
    # EDK2 sends its 4011 request from port 4011 and listens there.
    msg = request(MessageType.REQUEST, arch=7, ciaddr="10.78.0.9")
    out = responder().handle(encode(msg), ("10.78.0.9", 4011), boot_server=True, now=NOW)
    assert out[0].address == ("10.78.0.9", 4011)


def test_boot_server_ignores_discover_and_non_pxe() -> None:
    r = responder()
    assert r.handle(encode(request(MessageType.DISCOVER)), ("10.0.0.9", 68), True, now=NOW) == []
    msg = request(MessageType.REQUEST, vendor="udhcp 1.36")
    assert r.handle(encode(msg), ("10.0.0.9", 68), True, now=NOW) == []


# -- a legacy BIOS PXE ROM against the proxy (PXE 2.1, as dnsmasq's proxy mode answers) --

LEGACY_VENDOR = "PXEClient:Arch:00000:UNDI:002001"
BOOT_ITEM = b"\x47\x04\x00\x00\x00\x00"  # 43.71: boot server type 0, layer 0


def test_legacy_bios_rom_proxy_exchange() -> None:
    """The ROM's side, scripted: DISCOVER (port 67) -> proxy OFFER that says "download
    the named file"; a ROM that does boot server discovery anyway broadcasts a REQUEST
    naming a boot item to port 67 (PXE 2.1) and gets its ACK there, as from 4011."""
    log = BootLog()
    r = responder(log)
    uuid = b"\x00" + bytes(range(16))
    discover = request(arch=0, vendor=LEGACY_VENDOR, extra={97: uuid, 94: b"\x01\x02\x01"})
    discover.flags = 0x8000
    [out] = r.handle(encode(discover), ("0.0.0.0", 68), boot_server=False, now=NOW)
    assert out.address == ("255.255.255.255", 68)
    offer = decode(out.payload)
    assert offer.message_type is MessageType.OFFER and offer.yiaddr == IPv4Address(0)
    assert offer.options[Opt.VENDOR_CLASS] == b"PXEClient"
    # PXE_DISCOVERY_CONTROL (6) with bit 3: a boot file is named, download it.
    vendor = offer.options[Opt.VENDOR_SPECIFIC]
    assert vendor[:2] == b"\x06\x01" and vendor[2] & 0x08 and vendor.endswith(b"\xff")
    assert offer.file_str == "undionly.kpxe" and offer.siaddr == SERVER
    assert offer.options[Opt.CLIENT_UUID] == uuid
    # The site's DHCP server ACKs 10.78.0.140; the ROM then discovers the boot server
    # by broadcast to port 67, from its new address.
    disc = request(
        MessageType.REQUEST,
        arch=0,
        vendor=LEGACY_VENDOR,
        ciaddr="10.78.0.140",
        extra={Opt.VENDOR_SPECIFIC: BOOT_ITEM + b"\xff", 97: uuid},
    )
    disc.flags = 0x8000
    [out] = r.handle(encode(disc), ("10.78.0.140", 68), boot_server=False, now=NOW)
    assert out.address == ("10.78.0.140", 68)
    ack = decode(out.payload)
    assert ack.message_type is MessageType.ACK and ack.xid == disc.xid
    assert ack.file_str == "undionly.kpxe" and ack.siaddr == SERVER
    assert ack.options[Opt.VENDOR_SPECIFIC] == BOOT_ITEM + b"\xff"
    assert ack.options[Opt.SERVER_ID] == SERVER.packed
    assert log.mac_of_ip["10.78.0.140"] == "52:54:00:12:34:56"
    # The same discovery unicast to 4011 gets the same answer.
    [again] = r.handle(encode(disc), ("10.78.0.140", 68), boot_server=True, now=NOW)
    assert decode(again.payload).file_str == "undionly.kpxe"
    # A plain REQUEST to the site's server (no boot item) is still not ours to answer.
    plain = request(MessageType.REQUEST, arch=0, vendor=LEGACY_VENDOR, ciaddr="10.78.0.140")
    assert r.handle(encode(plain), ("10.78.0.140", 68), boot_server=False, now=NOW) == []


def test_uefi_proxy_offer_still_sends_firmware_to_4011() -> None:
    for arch in (6, 7, 9, 11):
        msg = request(arch=arch, vendor=f"PXEClient:Arch:{arch:05d}:UNDI:003000")
        [out] = responder().handle(encode(msg), ("0.0.0.0", 68), boot_server=False, now=NOW)
        assert Opt.VENDOR_SPECIFIC not in decode(out.payload).options


def test_full_mode_leaves_boot_item_requests_on_67_to_the_dhcp_server() -> None:
    disc = request(MessageType.REQUEST, ciaddr="10.78.0.140", extra={43: BOOT_ITEM + b"\xff"})
    r = responder(answer_discover=False)
    assert r.handle(encode(disc), ("10.78.0.140", 68), boot_server=False, now=NOW) == []


PXE_OPTION_CODES = st.sampled_from([43, 50, 54, 55, 57, 61, 77, 93, 94, 97, 175])


@st.composite
def pxe_requests(draw: st.DrawFn) -> Message:
    """A valid header with random fields and a random mix of the options PXE clients
    send, with values that are sometimes right and sometimes not."""
    msg = Message(
        op=draw(st.sampled_from([1, 1, 1, 1, 1, 2])),
        htype=draw(st.integers(0, 255)),
        hlen=draw(st.integers(0, 16)),
        xid=draw(st.integers(0, 2**32 - 1)),
        flags=draw(st.sampled_from([0, 0x8000])),
        ciaddr=draw(st.sampled_from([IPv4Address(0), IPv4Address("10.78.0.140")])),
        giaddr=draw(st.sampled_from([IPv4Address(0), IPv4Address("10.78.0.254")])),
        chaddr=draw(st.binary(min_size=16, max_size=16)),
    )
    kinds = [MessageType.DISCOVER, MessageType.REQUEST, MessageType.INFORM, *MessageType]
    msg.options[Opt.MESSAGE_TYPE] = bytes([draw(st.sampled_from(kinds))])
    values = st.one_of(
        st.binary(max_size=24),
        st.sampled_from(
            [
                b"\x00\x00",
                b"\x00\x07",
                BOOT_ITEM + b"\xff",
                b"iPXE",
            ]
        ),
    )
    msg.options.update(draw(st.dictionaries(PXE_OPTION_CODES, values, max_size=8)))
    vendor = draw(st.sampled_from([LEGACY_VENDOR, "PXEClient:Arch:00007:UNDI:003000", "x"]))
    msg.options[Opt.VENDOR_CLASS] = vendor.encode()
    return msg


@settings(max_examples=500, deadline=None)
@given(pxe_requests(), st.booleans())
def test_responder_answers_only_pxe_requests_and_answers_them_right(
    msg: Message, boot_server: bool
) -> None:
    r = responder(BootLog())
    source = (str(msg.ciaddr), 68)
    out = r.handle(encode(msg), source, boot_server=boot_server, now=NOW)
    assert len(out) <= 1
    if not out:
        return
    reply = decode(out[0].payload)
    assert msg.op == 1 and r.is_pxe(msg)
    assert reply.op == 2 and reply.xid == msg.xid and reply.chaddr == msg.chaddr
    assert reply.yiaddr == IPv4Address(0)  # never an address: not our job
    assert reply.options[Opt.VENDOR_CLASS] == b"PXEClient"
    assert reply.options[Opt.SERVER_ID] == SERVER.packed
    assert reply.file_str == choose_boot_file(FILES, msg).file and reply.siaddr == SERVER
    if Opt.CLIENT_ID in msg.options:
        assert reply.options[Opt.CLIENT_ID] == msg.options[Opt.CLIENT_ID]
    if msg.message_type is MessageType.DISCOVER:
        assert not boot_server and reply.message_type is MessageType.OFFER
    else:
        assert msg.message_type in (MessageType.REQUEST, MessageType.INFORM)
        assert reply.message_type is MessageType.ACK
    if msg.giaddr != IPv4Address(0):
        assert out[0].address == (str(msg.giaddr), 67)


# -- boot log ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_boot_log_one_line_per_boot() -> None:
    clock, lines = Clock(), []
    log = BootLog(idle=30, emit=lines.append)
    mac = "52:54:00:12:34:56"
    log.discover(mac, "EFI x64", now=clock.now)
    clock.now += 4
    log.address(mac, IPv4Address("10.78.0.2"), now=clock.now)
    log.served("10.78.0.2", "ipxe.efi", 850528, now=clock.now)
    clock.now += 15
    log.discover(mac, "iPXE EFI x64", now=clock.now)
    log.address(mac, "10.78.0.3", now=clock.now)
    clock.now += 3.5
    log.served("10.78.0.3", "boot.ipxe", 45, now=clock.now)
    # The log says when to look again: idle seconds after the last event.
    assert log.next_deadline() == clock.now + 30
    clock.now += 29
    log.expire(clock.now)
    assert lines == []
    clock.now += 1
    log.expire(clock.now)
    assert lines == [
        "boot 52:54:00:12:34:56 arch=EFI x64 -> iPXE EFI x64: completed: served ipxe.efi over tftp "
        "(850528 bytes), boot.ipxe over tftp (45 bytes); 22.5 s from DISCOVER to the last byte"
    ]
    assert log.sessions == {}
    assert log.next_deadline() is None


def test_boot_log_waits_for_running_downloads_and_flushes() -> None:
    clock, lines = Clock(), []
    log = BootLog(idle=5, emit=lines.append)
    log.discover("aa:bb:cc:dd:ee:ff", "BIOS", now=clock.now)
    log.address("aa:bb:cc:dd:ee:ff", "10.0.0.7", now=clock.now)
    clock.now += 60
    log.expire(clock.now, busy_ips=["10.0.0.7"])  # still downloading a big file
    assert lines == []
    assert log.next_deadline() == clock.now + 5  # busy: its quiet starts again
    log.discover("11:22:33:44:55:66", "EFI ARM64", now=clock.now)
    log.flush()
    assert lines == [
        "boot aa:bb:cc:dd:ee:ff arch=BIOS: abandoned: no file served",
        "boot 11:22:33:44:55:66 arch=EFI ARM64: abandoned: no file served",
    ]


def test_boot_log_unknown_address() -> None:
    lines: list[str] = []
    log = BootLog(emit=lines.append)
    log.served("10.9.9.9", "x", 1, now=NOW)
    log.flush()
    line = "boot ip 10.9.9.9 arch=no DHCP seen: completed: served x over tftp (1 bytes)"
    assert lines[0].startswith(line)


# -- start-up check -------------------------------------------------------------------


def test_missing_boot_files(tmp_path: Path) -> None:
    (tmp_path / "pxelinux.0").write_bytes(b"x")
    (tmp_path / "efi").mkdir()
    (tmp_path / "efi" / "ipxe.efi").write_bytes(b"x")
    files = BootFiles(
        default="/pxelinux.0",
        efi64="efi\\ipxe.efi",
        bios="efi",
        arm64="../escape",
        ipxe="http://10.0.0.1/boot.ipxe",
    )
    assert missing_boot_files(tmp_path, files) == [
        "--bios-bootfile efi",
        "--arm64-bootfile ../escape (path leaves the served root)",
    ]
    assert missing_boot_files(tmp_path, BootFiles("pxelinux.0")) == []


def test_cli_names_the_missing_boot_file(tmp_path: Path) -> None:
    (tmp_path / "pxelinux.0").write_bytes(b"x")
    argv = [script("pxed"), "--efi64-bootfile", "ipxe.efi", "lo", str(tmp_path), "pxelinux.0"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        f"pxed: error: ROOT {tmp_path} does not hold the boot file(s): --efi64-bootfile ipxe.efi\n"
    )


def test_cli_proxy_warns_about_address_flags(tmp_path: Path) -> None:
    argv = [script("pxed"), "--proxy", "--range", "10.0.0.5", "10.0.0.9", "-n", "10.0.0.53"]
    argv += ["lo", str(tmp_path), "missing.0"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "pxed: warning: -n, --range have no effect with --proxy (the network's DHCP server "
        "gives addresses and their settings)",
        f"pxed: error: ROOT {tmp_path} does not hold the boot file(s): BOOTFILE missing.0",
    ]


def test_python_m_ptftpd_lists_pxed() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ptftpd"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0 and "pxed" in done.stdout


def test_cli_root_must_be_a_directory(tmp_path: Path) -> None:
    argv = [script("pxed"), "lo", str(tmp_path / "nope"), "pxelinux.0"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr.strip() == f"pxed: error: ROOT {tmp_path / 'nope'} is not a directory"
    assert "Traceback" not in done.stderr


# -- the DHCP hook inside the real engine (no sockets) ----------------------------------


def service(tmp_path: Path) -> PxeService:
    dhcp = DhcpConfig(server_ip=SERVER, network=IPv4Network("10.78.0.0/24"), bootfile="default.0")
    return PxeService(PxeConfig(dhcp=dhcp, tftp=ServerConfig(root=tmp_path), files=FILES))


def test_dhcp_engine_uses_the_pxe_hook(tmp_path: Path) -> None:
    svc = service(tmp_path)
    server = DhcpServer(svc.config.dhcp, boot_policy=svc.boot_policy, store=MemoryStore())
    engine = server.build_engine()
    discover = request(arch=7, vendor="PXEClient:Arch:00007:UNDI:003000")
    [offer_out] = engine.handle(encode(discover), ("0.0.0.0", 68), NOW)
    offer = decode(offer_out.payload)
    assert offer.message_type is MessageType.OFFER
    assert offer.yiaddr != IPv4Address("0.0.0.0")
    assert offer.file_str == "ipxe.efi" and offer.siaddr == SERVER
    assert offer.options[Opt.VENDOR_CLASS] == b"PXEClient"
    assert Opt.VENDOR_SPECIFIC in offer.options
    req = request(
        MessageType.REQUEST,
        arch=7,
        user_class=b"iPXE",
        extra={Opt.SERVER_ID: SERVER.packed, Opt.REQUESTED_IP: offer.yiaddr.packed},
    )
    [ack_out] = engine.handle(encode(req), ("0.0.0.0", 68), NOW)
    ack = decode(ack_out.payload)
    assert ack.message_type is MessageType.ACK and ack.file_str == "boot.ipxe"
    assert svc.boot_log.mac_of_ip[str(offer.yiaddr)] == "52:54:00:12:34:56"
    assert svc.boot_log.sessions["52:54:00:12:34:56"].stages == ["EFI x64"]


def test_the_boot_log_wakes_pxed_at_its_deadline_and_never_polls(tmp_path: Path) -> None:
    """No ticker: pxed arms one timer at `BootLog.next_deadline()`, writes the line
    when it fires, and has no timer at all while no boot is open."""
    svc = service(tmp_path)
    svc.boot_log.idle = 0.2
    lines: list[str] = []
    svc.boot_log.emit = lines.append

    async def run() -> None:
        assert svc._boot_timer is None
        svc.boot_policy(request(arch=7, vendor="PXEClient:Arch:00007:UNDI:003000"))
        timer = svc._boot_timer
        assert timer is not None
        deadline = svc.boot_log.next_deadline()
        assert deadline is not None
        assert abs(timer.when() - deadline) < 0.05
        await asyncio.sleep(0.1)
        assert lines == []
        await asyncio.sleep(0.3)
        assert lines == [f"boot {MAC.hex(':')} arch=EFI x64: abandoned: no file served"]
        assert svc._boot_timer is None  # nothing open: nothing scheduled

    asyncio.run(run())
