"""UEFI HTTP boot and IPv6 decisions without sockets: the HTTP architecture table, the
URL form, option 60 `HTTPClient` in full and proxy replies, iPXE's script as a URL,
the DHCPv6 boot-file-url policy, and the boot log's "over http" files."""

from __future__ import annotations

import dataclasses
import subprocess
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from pathlib import Path

import pytest
from pxe_requests import FILES, MAC, SERVER, request

from ptftpd.dhcp import DhcpConfig, DhcpServer, Message, MessageType, Opt, decode, encode
from ptftpd.dhcp.leases import MemoryStore
from ptftpd.dhcp6.boot import BootRequest6
from ptftpd.dhcp6.codec import VendorClass
from ptftpd.http import Served
from ptftpd.pxe import (
    BootClass,
    BootLog,
    BootTracker,
    ProxyResponder,
    Pxe6Policy,
    PxeConfig,
    PxeService,
    arch_class,
    choose_boot_file,
    client_label,
    http_url,
)
from ptftpd.pxe.settings import pxe_config
from ptftpd.tftp.server import ServerConfig
from support import script

NOW = 1_700_000_000.0  # the time each message arrives (handle takes it)
BASE = ("10.78.0.1", 8080)


def http_request(arch: int | None = 16, mtype: MessageType = MessageType.DISCOVER) -> Message:
    """A UEFI HTTP boot client's message (option 60 `HTTPClient`)."""
    vendor = f"HTTPClient:Arch:{arch or 0:05d}:UNDI:003001"
    return request(mtype, arch, vendor, xid=0x4242)


@pytest.mark.parametrize(
    ("arch", "cls", "url"),
    [
        (16, BootClass.EFI64, "http://10.78.0.1:8080/ipxe.efi"),
        (15, BootClass.EFI32, "http://10.78.0.1:8080/ipxe32.efi"),
        (19, BootClass.ARM64, "http://10.78.0.1:8080/ipxe-arm64.efi"),
        (18, None, "http://10.78.0.1:8080/default.0"),  # ARM32 HTTP: no flag of its own
        (17, None, "http://10.78.0.1:8080/default.0"),  # EBC
        (0x7777, None, "http://10.78.0.1:8080/default.0"),
    ],
)
def test_http_architecture_table_and_url(arch: int, cls: BootClass | None, url: str) -> None:
    assert arch_class(arch, http=True) is cls
    choice = choose_boot_file(FILES, http_request(arch), BASE)
    assert choice.http and choice.file == url


def test_http_codes_are_not_pxe_families() -> None:
    """Without the HTTP flag (a PXEClient naming code 16 is odd, not HTTP boot)."""
    for code in (15, 16, 19):
        assert arch_class(code) is None


def test_http_client_without_http_port_gets_no_url() -> None:
    choice = choose_boot_file(FILES, http_request(16), None)
    assert not choice.http and "://" not in choice.file


def test_pxe_client_stays_on_tftp_when_http_is_on() -> None:
    msg = http_request(7)
    msg.options[Opt.VENDOR_CLASS] = b"PXEClient:Arch:00007:UNDI:003000"
    choice = choose_boot_file(FILES, msg, BASE)
    assert choice.file == "ipxe.efi" and not choice.http


def test_ipxe_script_goes_out_as_http_url_with_http_port() -> None:
    msg = http_request(7)
    msg.options[Opt.VENDOR_CLASS] = b"PXEClient:Arch:00007:UNDI:003000"
    msg.options[Opt.USER_CLASS] = b"iPXE"
    assert choose_boot_file(FILES, msg, BASE).file == "http://10.78.0.1:8080/boot.ipxe"
    assert choose_boot_file(FILES, msg, None).file == "boot.ipxe"
    url_files = dataclasses.replace(FILES, ipxe="http://elsewhere/x.ipxe")
    assert choose_boot_file(url_files, msg, BASE).file == "http://elsewhere/x.ipxe"


def test_http_url_form() -> None:
    assert http_url("10.0.0.1", 80, "/a/b.efi") == "http://10.0.0.1:80/a/b.efi"
    assert http_url(IPv6Address("fd00::1"), 8080, "x") == "http://[fd00::1]:8080/x"


def test_full_dhcp_offer_to_http_client_says_httpclient_and_url(tmp_path: Path) -> None:
    dhcp = DhcpConfig(
        server_ip=SERVER,
        network=IPv4Network("10.78.0.0/24"),
        bootfile="default.0",
        pxe_vendor_prefixes=("PXEClient", "HTTPClient"),
    )
    config = PxeConfig(dhcp=dhcp, tftp=ServerConfig(root=tmp_path), files=FILES, http_port=8080)
    svc = PxeService(config)
    engine = DhcpServer(dhcp, boot_policy=svc.boot_policy, store=MemoryStore()).build_engine()
    [out] = engine.handle(encode(http_request(16)), ("0.0.0.0", 68), NOW)
    offer = decode(out.payload)
    assert offer.message_type is MessageType.OFFER
    assert offer.options[Opt.VENDOR_CLASS] == b"HTTPClient"
    assert offer.file_str == "http://10.78.0.1:8080/ipxe.efi"
    assert offer.options[Opt.BOOTFILE_NAME] == b"http://10.78.0.1:8080/ipxe.efi"
    assert svc.boot_log.sessions["52:54:00:12:34:56"].stages == ["x64 UEFI HTTP"]


def test_proxy_offer_to_http_client() -> None:
    proxy = ProxyResponder(SERVER, FILES, http_base=BASE)
    [out] = proxy.handle(encode(http_request(16)), ("0.0.0.0", 68), boot_server=False, now=NOW)
    offer = decode(out.payload)
    assert offer.message_type is MessageType.OFFER
    assert offer.yiaddr == IPv4Address("0.0.0.0")
    assert offer.options[Opt.VENDOR_CLASS] == b"HTTPClient"
    assert offer.file_str == "http://10.78.0.1:8080/ipxe.efi"
    assert offer.options[Opt.BOOTFILE_NAME] == b"http://10.78.0.1:8080/ipxe.efi"
    assert Opt.VENDOR_SPECIFIC not in offer.options  # no PXE 43: no 4011 exchange


def test_proxy_ignores_http_clients_without_http_port() -> None:
    proxy = ProxyResponder(SERVER, FILES)
    assert proxy.handle(encode(http_request(16)), ("0.0.0.0", 68), boot_server=False, now=NOW) == []


# -- IPv6 ---------------------------------------------------------------------------------

V6 = IPv6Address("fd00:77::1")


def req6(arches: tuple[int, ...], vendor: bytes | None = None, ipxe: bool = False) -> BootRequest6:
    return BootRequest6(
        arches=arches,
        vendor_class=VendorClass(343, (vendor,)) if vendor else None,
        user_classes=(b"iPXE",) if ipxe else (),
        duid=bytes.fromhex("00030001") + MAC,
    )


def test_dhcp6_policy_tftp_and_http_urls() -> None:
    log = BootLog()
    policy = Pxe6Policy(FILES, V6, 8080, lambda *asked: log.discover(*asked, now=NOW))
    pxe = policy(req6((7,), b"PXEClient:Arch:00007:UNDI:003000"))
    assert pxe is not None and pxe.url == "tftp://[fd00:77::1]/ipxe.efi"
    http = policy(req6((16,), b"HTTPClient:Arch:00016:UNDI:003000"))
    assert http is not None and http.url == "http://[fd00:77::1]:8080/ipxe.efi"
    ipxe = policy(req6((7,), ipxe=True))
    assert ipxe is not None and ipxe.url == "http://[fd00:77::1]:8080/boot.ipxe"
    assert log.sessions["52:54:00:12:34:56"].stages[0] == "EFI x64 (DHCPv6)"


def test_dhcp6_policy_without_http() -> None:
    policy = Pxe6Policy(FILES, V6)
    assert policy(req6((16,), b"HTTPClient:Arch:00016")) is None
    ipxe = policy(req6((7,), ipxe=True))
    assert ipxe is not None and ipxe.url == "tftp://[fd00:77::1]/boot.ipxe"
    other = policy(req6((0x7777,)))
    assert other is not None and other.url == "tftp://[fd00:77::1]/default.0"


def test_client_label_reads_mac_from_duid_ll_and_llt() -> None:
    assert client_label(bytes.fromhex("00030001") + MAC) == "52:54:00:12:34:56"
    assert client_label(bytes.fromhex("0001000100000001") + MAC) == "52:54:00:12:34:56"
    assert client_label(bytes.fromhex("0004") + bytes(16)).startswith("duid 00:04")


def test_boot_log_records_http_downloads() -> None:
    lines: list[str] = []
    log = BootLog(emit=lines.append)
    log.discover("52:54:00:12:34:56", "x64 UEFI HTTP", now=NOW)
    log.address("52:54:00:12:34:56", "10.78.0.50", now=NOW)
    tracker = BootTracker(log, lambda: NOW)
    tracker.http_served(Served("10.78.0.50", "GET", "/ipxe.efi", 200, 1000, 0.1, True))
    tracker.http_served(Served("10.78.0.50", "HEAD", "/ipxe.efi", 200, 0, 0.1, True))
    tracker.http_served(Served("10.78.0.50", "GET", "/gone", 404, 0, 0.1, True))
    tracker.http_served(Served("10.78.0.50", "GET", "/cut.img", 200, 10, 0.1, False))
    log.flush()
    assert len(lines) == 1
    assert "served ipxe.efi over http (1000 bytes);" in lines[0], lines[0]


def test_boot_log_learns_ipv6_addresses_from_dhcpv6() -> None:
    from ptftpd.events import Dhcp6Message

    lines: list[str] = []
    log = BootLog(emit=lines.append)
    tracker = BootTracker(log, lambda: 5.0)
    duid = bytes.fromhex("00030001") + MAC
    ours = bytes.fromhex("00030001525400aabbcc")
    link = IPv6Address("fe80::1")
    given = (IPv6Address("fd00:77::1234"),)
    tracker.dhcp6(Dhcp6Message("out", "reply", duid, given, True, link, ours))
    assert log.mac_of_ip["fd00:77::1234"] == "52:54:00:12:34:56"
    # A client's Request to us (our server id) names its address.
    named = (IPv6Address("fd00:77::99"),)
    tracker.dhcp6(Dhcp6Message("in", "request", duid, named, True, link, ours))
    assert log.mac_of_ip["fd00:77::99"] == "52:54:00:12:34:56"
    # A Solicit's hints are not taken.
    hint = (IPv6Address("fd00:77::5"),)
    tracker.dhcp6(Dhcp6Message("in", "solicit", duid, hint, False, link, None))
    assert "fd00:77::5" not in log.mac_of_ip
    log.discover("52:54:00:12:34:56", "EFI x64 (DHCPv6)", now=5.0)
    log.served("fd00:77::99", "ipxe.efi", 5, now=5.0)
    log.flush()
    assert lines == [
        "boot 52:54:00:12:34:56 arch=EFI x64 (DHCPv6): completed: served ipxe.efi over tftp "
        "(5 bytes); 0.0 s from DISCOVER to the last byte"
    ]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--no-ra"], "--no-ra needs --ipv6"),
        (["--http-port", "0x"], "--http-port"),
        (["--http-port", "70000"], "--http-port"),
    ],
)
def test_cli_http_and_ipv6_usage_errors(tmp_path: Path, flags: list[str], message: str) -> None:
    argv = [script("pxed"), *flags, "lo", str(tmp_path), "pxelinux.0"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr.splitlines()[-1] and "Traceback" not in done.stderr


def test_http_limits_are_flags_and_toml_keys(tmp_path: Path) -> None:
    """Issue 21: http-max-connections, http-rate-limit and http-total-rate-limit are
    pxed flags and keys of its --config file (flags win), and reach PxeConfig."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "boot.0").write_bytes(b"boot")
    toml = tmp_path / "pxed.toml"
    toml.write_text("http-port = 8080\nhttp-max-connections = 100\nhttp-rate-limit = 1000\n")
    argv = [script("pxed"), "--config", str(toml), "--http-rate-limit", "2000",
            "--http-total-rate-limit", "9000", "lo", str(root), "boot.0",
            "--print-config"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "http-max-connections = 100" in lines
    assert "http-rate-limit = 2000" in lines  # the flag wins over the file
    assert "http-total-rate-limit = 9000" in lines
    bad = tmp_path / "bad.toml"
    bad.write_text('http-rate-limit = "fast"\n')
    argv = [script("pxed"), "--config", str(bad), "lo", str(root), "boot.0", "--print-config"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "http-rate-limit" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    dhcp = DhcpConfig(
        server_ip=IPv4Address("10.0.0.1"), network=IPv4Network("10.0.0.0/24"), interface="x"
    )
    settings = {"http-port": 8080, "http-max-connections": 100, "http-rate-limit": 2000}
    config = pxe_config(settings, dhcp, root, "boot.0")
    assert (config.http_max_connections, config.http_rate_limit) == (100, 2000)
    assert config.http_total_rate_limit is None
    assert pxe_config({}, dhcp, root, "boot.0").http_max_connections == 4096
