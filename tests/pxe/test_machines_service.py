"""Issue 22 item 4 in pxed's service, without firmware: what a machine's decision makes
of the DHCP answer (full mode through the real engine, proxy mode through the
responder), its script served by the real TFTP server (tftp-hpa's client) and HTTP
server (curl), a SIGHUP's new inventory, and the decision counters."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from ptftpd.dhcp import DhcpConfig, DhcpServer, Message, MessageType, Opt, decode, encode
from ptftpd.dhcp.leases import MemoryStore
from ptftpd.http import HttpConfig, HttpServer
from ptftpd.pxe import BootFiles, PxeConfig, PxeService
from ptftpd.pxe.decision import Source
from ptftpd.pxe.inventory import Inventory, inventory_from
from ptftpd.pxe.machines import script_name
from ptftpd.tftp.server import ServerConfig, TftpServer
from support import free_udp_port, require_tool, script

NOW = 1_700_000_000.0
SERVER = IPv4Address("10.78.0.1")
MAC_A, MAC_LOCAL, MAC_OFF, MAC_OTHER = (f"52:54:00:22:01:0{i}" for i in range(1, 5))


def request(mac: str, ipxe: bool, mtype: MessageType = MessageType.DISCOVER) -> bytes:
    msg = Message(xid=7, chaddr=bytes.fromhex(mac.replace(":", "")) + b"\x00" * 10)
    msg.options[Opt.MESSAGE_TYPE] = bytes([mtype])
    msg.options[Opt.VENDOR_CLASS] = b"PXEClient:Arch:00000:UNDI:002001"
    msg.options[Opt.CLIENT_ARCH] = b"\x00\x00"
    if ipxe:
        msg.options[Opt.USER_CLASS] = b"iPXE"
    return encode(msg)


def the_inventory(marker: str = "A") -> Inventory:
    return inventory_from(
        {
            "machine": [
                {"mac": MAC_A, "profile": "a"},
                {"mac": MAC_LOCAL, "profile": "disk"},
                {"mac": MAC_OFF, "profile": "off"},
            ],
            "profile": {
                "a": {"ipxe-script": f"#!ipxe\necho {marker} {{{{ mac }}}}\n"},
                "disk": {"local": True},
                "off": {"ignore": True},
                "chain": {"bootfile": {"bios": "undionly.kpxe"}},
            },
        }
    )


def config(root: Path, inventory: Inventory, answer_all: bool = False) -> PxeConfig:
    for name in ("pxelinux.0", "undionly.kpxe"):
        (root / name).write_bytes(b"boot")
    dhcp = DhcpConfig(
        server_ip=SERVER,
        network=IPv4Network("10.78.0.0/24"),
        bootfile="pxelinux.0",
        interface="br0",
        range_start=IPv4Address("10.78.0.100"),
        range_end=IPv4Address("10.78.0.120"),
        answer_all=answer_all,
    )
    return PxeConfig(
        dhcp=dhcp,
        tftp=ServerConfig(root=root, read_only=True),
        files=BootFiles("pxelinux.0"),
        inventory=inventory,
    )


def engine_answer(service: PxeService, data: bytes) -> Message | None:
    assert service.dhcp_server is not None and service.dhcp_server.engine is not None
    out = service.dhcp_server.engine.handle(data, ("0.0.0.0", 68), NOW)
    return decode(out[0].payload) if out else None


def full_mode(cfg: PxeConfig) -> PxeService:
    service = PxeService(cfg)
    server = DhcpServer(cfg.dhcp, boot_policy=service.boot_policy, store=MemoryStore())
    server.engine = server.build_engine()
    service.dhcp_server = server
    return service


def test_full_mode_answers_per_machine_and_reloads(tmp_path: Path) -> None:
    service = full_mode(config(tmp_path, the_inventory()))
    offer = engine_answer(service, request(MAC_A, ipxe=True))
    assert offer is not None and offer.file_str == script_name(MAC_A)
    assert service.machines.script(offer.file_str, 0.0) == f"#!ipxe\necho A {MAC_A}\n".encode()
    # firmware that is not iPXE yet gets its first stage as before
    first = engine_answer(service, request(MAC_A, ipxe=False))
    assert first is not None and first.file_str == "pxelinux.0"
    # local: iPXE gets exit, a PXE ROM an address and no boot file
    local = engine_answer(service, request(MAC_LOCAL, ipxe=True))
    assert local is not None
    assert service.machines.script(local.file_str, 0.0) is not None
    assert b"\nexit\n" in (service.machines.script(local.file_str, 0.0) or b"")
    rom = engine_answer(service, request(MAC_LOCAL, ipxe=False))
    assert rom is not None and rom.yiaddr != IPv4Address(0) and rom.file_str == ""
    assert Opt.BOOTFILE_NAME not in rom.options
    # ignore: answered only because it is PXE -> no reply at all
    assert engine_answer(service, request(MAC_OFF, ipxe=True)) is None
    # unknown machine, no default profile: pxed's table (builtin)
    other = engine_answer(service, request(MAC_OTHER, ipxe=False))
    assert other is not None and other.file_str == "pxelinux.0"
    counts = service.machines.counts
    assert counts[Source.INVENTORY] == 5 and counts[Source.BUILTIN] == 1
    # SIGHUP: a new inventory decides the next requests
    new = dataclasses.replace(service.config, inventory=the_inventory("B"))
    service.reload(new)
    again = engine_answer(service, request(MAC_A, ipxe=True))
    assert again is not None
    assert service.machines.script(again.file_str, 0.0) == f"#!ipxe\necho B {MAC_A}\n".encode()


def test_an_ignored_machine_still_gets_an_address_from_a_server_that_answers_all(
    tmp_path: Path,
) -> None:
    service = full_mode(config(tmp_path, the_inventory(), answer_all=True))
    offer = engine_answer(service, request(MAC_OFF, ipxe=True))
    assert offer is not None and offer.yiaddr != IPv4Address(0)
    assert offer.file_str == "" and Opt.BOOTFILE_NAME not in offer.options


def test_proxy_mode_gives_local_and_ignored_machines_no_boot_answer(tmp_path: Path) -> None:
    cfg = dataclasses.replace(config(tmp_path, the_inventory()), proxy=True)
    service = PxeService(cfg)

    def answer(mac: str, ipxe: bool) -> Message | None:
        out = service.responder.handle(request(mac, ipxe), ("0.0.0.0", 68), False, now=NOW)
        return decode(out[0].payload) if out else None

    proxied = answer(MAC_A, ipxe=True)
    assert proxied is not None and proxied.file_str == script_name(MAC_A)
    assert answer(MAC_LOCAL, ipxe=False) is None
    assert answer(MAC_OFF, ipxe=True) is None
    local = answer(MAC_LOCAL, ipxe=True)
    assert local is not None and local.file_str == script_name(MAC_LOCAL)


def test_scripts_over_real_tftp_and_http_clients(tmp_path: Path) -> None:
    tftp_client = require_tool("tftp")
    curl = require_tool("curl")
    root = tmp_path / "root"
    root.mkdir()
    cfg = config(root, the_inventory())
    service = full_mode(cfg)
    offer = engine_answer(service, request(MAC_A, ipxe=True))
    assert offer is not None
    expected = f"#!ipxe\necho A {MAC_A}\n"

    async def run() -> tuple[str, str, str]:
        tftp = TftpServer(cfg.tftp)
        tftp.generated = service._generated
        port = free_udp_port()
        await tftp.start(["127.0.0.1"], port)
        http = HttpServer(HttpConfig(root=root, bind=(("127.0.0.1", 0),)))
        http.generated = service._generated
        await http.start()
        hport = http.bound[0][1]
        got = tmp_path / "got.ipxe"

        def fetch() -> tuple[str, str, str]:
            subprocess.run(
                [tftp_client, "127.0.0.1", str(port), "-m", "binary", "-c", "get",
                 script_name(MAC_A), str(got)],
                check=True, timeout=20, cwd=tmp_path,
            )  # fmt: skip
            over_http = subprocess.run(
                [curl, "-sf", f"http://127.0.0.1:{hport}/{script_name(MAC_A)}"],
                capture_output=True, text=True, check=True, timeout=20,
            ).stdout  # fmt: skip
            unknown = subprocess.run(
                [curl, "-s", "-o", "/dev/null", "-w", "%{http_code}",
                 f"http://127.0.0.1:{hport}/{script_name(MAC_OTHER)}"],
                capture_output=True, text=True, check=True, timeout=20,
            ).stdout  # fmt: skip
            return got.read_text(), over_http, unknown

        try:
            return await asyncio.get_running_loop().run_in_executor(None, fetch)
        finally:
            tftp.close()
            http.close()

    over_tftp, over_http, unknown = asyncio.run(run())
    assert over_tftp == expected and over_http == expected
    assert unknown == "404"  # nothing decided for that machine: no script


def test_a_bad_inventory_entry_is_one_line_naming_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "pxelinux.0").write_bytes(b"boot")
    settings = tmp_path / "pxed.toml"
    good = (
        '[pxed]\n\n[[pxed.machine]]\nmac = "52:54:00:00:00:01"\nprofile = "a"\n\n'
        "[pxed.profile.a]\nlocal = true\n"
    )
    cases = [
        (good.replace('"52:54:00:00:00:01"', '["52:54:00:00:00:01", "52:54:zz"]'), 4,
         "machine.mac: not a MAC address: '52:54:zz'"),
        (good.replace("local = true", "local = true\nkernal = 'x'"), 9,
         "profile.a.kernal: unknown key (did you mean kernel?)"),
        (good.replace('profile = "a"', 'profile = "b"'), 5,
         "machine.profile: no [profile.b] table (profiles: a)"),
    ]  # fmt: skip
    argv = [script("pxed"), "--config", str(settings), "--print-config"]
    argv += ["127.0.0.1", str(tmp_path), "pxelinux.0"]
    for text, line, message in cases:
        settings.write_text(text)
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert out.returncode == 2, out.stderr
        assert out.stderr == f"pxed: {settings}:{line}: {message} (try --help)\n"
    settings.write_text(good)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert 'machine = [{mac = "52:54:00:00:00:01", profile = "a"}]' in out.stdout


def test_decisions_are_counted_by_source_and_kind(tmp_path: Path) -> None:
    from ptftpd.service import metrics
    from ptftpd.service.pxe_running import PxeRunning

    service = full_mode(config(tmp_path, the_inventory()))
    counted = metrics.enable(metrics.Metrics())
    try:
        PxeRunning(service, lambda: service.config, count=True)
        for mac, ipxe in ((MAC_A, True), (MAC_A, False), (MAC_LOCAL, True), (MAC_OFF, True)):
            engine_answer(service, request(mac, ipxe))
        engine_answer(service, request(MAC_OTHER, ipxe=True))
    finally:
        metrics.disable()

    def value(source: str, kind: str) -> float | None:
        labels = {"source": source, "kind": kind}
        return counted.registry.get_sample_value("ptftpd_pxe_decisions_total", labels)

    assert value("inventory", "boot") == 2
    assert value("inventory", "local") == 1
    assert value("inventory", "ignore") == 1
    assert value("builtin", "boot") == 1


def test_dhcpv6_clients_are_matched_by_their_duid(tmp_path: Path) -> None:
    from ipaddress import IPv6Address

    from ptftpd.dhcp6.boot import BootRequest6
    from ptftpd.pxe.ipv6 import Pxe6Policy
    from ptftpd.pxe.machines import Machines

    uuid = "8a3c9e6b1f2d4c5e9a7b0123456789ab"
    inventory = inventory_from(
        {
            "machine": [
                {"mac": MAC_A, "profile": "a"},
                {"uuid": uuid, "profile": "off"},
                {"mac": MAC_LOCAL, "profile": "disk"},
            ],
            "profile": {
                "a": {"ipxe-script": "#!ipxe\necho v6 {{ mac }}\n"},
                "off": {"ignore": True},
                "disk": {"local": True},
            },
        }
    )
    machines = Machines(inventory, SERVER)
    machines.serve_ipv6("fd78::1", 8080)
    policy = Pxe6Policy(BootFiles("ipxe.efi"), IPv6Address("fd78::1"), 8080, None, machines)
    told: list[tuple[str, str]] = []
    policy.on_decided = lambda client, what: told.append((client, what))

    def ll(mac: str) -> bytes:  # DUID-LL, Ethernet
        return b"\x00\x03\x00\x01" + bytes.fromhex(mac.replace(":", ""))

    def llt(mac: str) -> bytes:  # DUID-LLT, Ethernet, some time
        return b"\x00\x01\x00\x01\x2a\x2b\x2c\x2d" + bytes.fromhex(mac.replace(":", ""))

    ipxe = policy(BootRequest6(arches=(7,), user_classes=(b"iPXE",), duid=ll(MAC_A)))
    assert ipxe is not None and ipxe.url == f"http://[fd78::1]:8080/{script_name(MAC_A)}"
    assert machines.script(script_name(MAC_A), 0.0) == f"#!ipxe\necho v6 {MAC_A}\n".encode()
    firmware = policy(BootRequest6(arches=(7,), duid=llt(MAC_A)))
    assert firmware is not None and firmware.url == "tftp://[fd78::1]/ipxe.efi"
    by_uuid = BootRequest6(arches=(7,), duid=b"\x00\x04" + bytes.fromhex(uuid))
    assert policy(by_uuid) is None  # ignore
    assert policy(BootRequest6(arches=(7,), duid=ll(MAC_LOCAL))) is None  # local, not iPXE
    unknown = policy(BootRequest6(arches=(7,), duid=ll(MAC_OTHER)))
    assert unknown is not None and unknown.url == "tftp://[fd78::1]/ipxe.efi"
    assert told[0] == (MAC_A, "boot a (inventory machine #1)")  # for the boot log
    assert told[2][1] == "ignore off (inventory machine #2)"


def test_a_static_host_entry_names_the_machine_for_hostname_selectors(tmp_path: Path) -> None:
    from ptftpd.dhcp.leases import StaticHost

    inventory = inventory_from(
        {
            "machine": [{"hostname": "web-*", "profile": "web"}],
            "profile": {"web": {"ipxe-script": "#!ipxe\necho {{ hostname }} {{ ip }}\n"}},
        }
    )
    cfg = config(tmp_path, inventory)
    host = StaticHost(MAC_OTHER, IPv4Address("10.78.0.42"), "web-7")
    cfg = dataclasses.replace(cfg, dhcp=dataclasses.replace(cfg.dhcp, static_hosts=(host,)))
    service = full_mode(cfg)
    offer = engine_answer(service, request(MAC_OTHER, ipxe=True))
    assert offer is not None and offer.file_str == script_name(MAC_OTHER)
    assert service.machines.script(offer.file_str, 0.0) == b"#!ipxe\necho web-7 10.78.0.42\n"
    plain = engine_answer(service, request(MAC_A, ipxe=True))  # no name: no match
    assert plain is not None and plain.file_str == "pxelinux.0"


def test_recipes_over_tftp_keep_tftp_in_pxeds_own_process(tmp_path: Path) -> None:
    import contextlib
    import io
    from unittest import mock

    from ptftpd.cli import pxed as pxed_cli

    for name in ("pxelinux.0", "shimx64.efi", "grubx64.efi"):
        (tmp_path / name).write_bytes(b"boot")
    settings = tmp_path / "pxed.toml"
    settings.write_text('[[machine]]\nmac = "52:54:00:00:00:01"\nprofile = "a"\n\n'
                        '[profile.a]\nlocal = true\n')  # fmt: skip

    def served_by(*flags: str) -> tuple[str, str]:
        err = io.StringIO()
        single, pool = mock.Mock(return_value=0), mock.Mock(return_value=0)
        argv = ["--config", str(settings), "--workers", "2", *flags]
        with (
            mock.patch.object(pxed_cli.runtime, "run", single),
            mock.patch.object(pxed_cli.pxe_pool, "run", pool),
            contextlib.redirect_stderr(err),
        ):
            assert pxed_cli.main([*argv, "127.0.0.1", str(tmp_path), "pxelinux.0"]) == 0
        return ("main" if single.called else "workers"), err.getvalue()

    where, note = served_by()
    assert where == "main" and "TFTP without --http-port" in note
    where, note = served_by("--http-port", "8080")
    assert where == "workers" and "note" not in note
    where, note = served_by("--http-port", "8080", "--secure-boot")
    assert where == "main" and "for grub (--secure-boot)" in note
