"""pxed over real sockets with a scripted client, for what QEMU's firmware cannot show:
every boot file flag (ARM64, 32-bit UEFI), an architecture code nobody registered, and
the 4011 boot server in both modes. Runs in a test namespace; no QEMU, a few seconds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pxe_harness import BootNetwork, boot_network

from support import Netns, Process, require_tool, script, wait_udp_bound

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

PROBE = Path(__file__).with_name("pxe_probe.py")
FILES = {
    "--bios-bootfile": "undionly.kpxe",
    "--efi32-bootfile": "ipxe32.efi",
    "--efi64-bootfile": "ipxe.efi",
    "--arm64-bootfile": "ipxe-arm64.efi",
    "--ipxe-bootfile": "boot.ipxe",
}


def make_root(root: Path) -> None:
    root.mkdir()
    for name in [*FILES.values(), "default.0"]:
        (root / name).write_bytes(b"boot")


def start_pxed(net: BootNetwork, tmp: Path, *extra: str) -> Process:
    flags = [item for pair in FILES.items() for item in pair]
    argv = [
        script("pxed"),
        "-v",
        "--leases",
        str(tmp / "leases.sqlite"),
        *flags,
        *extra,
        net.bridge,
        str(tmp / "root"),
        "default.0",
    ]
    proc = net.start(argv, "pxed")
    wait_udp_bound(4011, timeout=15, proc=proc.proc, netns=net.ns.name)
    return proc


def probe(client: Netns, *args: str, wait: float = 10.0) -> list[dict[str, object]]:
    argv = [sys.executable, str(PROBE), *args, "--iface", "eth0", "--wait", str(wait)]
    done = subprocess.run(
        client.popen_argv(argv), capture_output=True, text=True, timeout=30, check=True
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def offer_file(client: Netns, mac: str, arch: int, *extra: str) -> tuple[str, str]:
    replies = probe(client, "discover", "--mac", mac, "--arch", str(arch), *extra)
    offers = [r for r in replies if r["type"] == "OFFER"]
    assert len(offers) == 1 and offers[0]["from"] == "10.78.0.1", replies
    return str(offers[0]["file"]), str(offers[0]["yiaddr"])


@pytest.mark.parametrize("proxy", [False, True], ids=["dhcp", "proxy"])
def test_every_architecture_flag_over_the_wire(tmp_path: Path, proxy: bool) -> None:
    make_root(tmp_path / "root")
    with boot_network(tmp_path) as net:
        client = net.peer("10.78.0.50")
        pxed = start_pxed(net, tmp_path, *(["--proxy"] if proxy else []))
        cases = [
            (0, [], "undionly.kpxe"),
            (6, [], "ipxe32.efi"),
            (7, [], "ipxe.efi"),
            (9, [], "ipxe.efi"),
            (11, [], "ipxe-arm64.efi"),
            (16, [], "default.0"),  # x64 UEFI HTTP boot: the default
            (0x7777, [], "default.0"),  # unregistered: the default, and a log line
            (7, ["--ipxe"], "boot.ipxe"),
        ]
        for n, (arch, extra, expected) in enumerate(cases):
            mac = f"52:54:00:aa:00:{n:02x}"
            file, yiaddr = offer_file(client, mac, arch, *extra)
            assert file == expected, (arch, extra)
            # proxyDHCP gives no address; the DHCP server does.
            assert (yiaddr == "0.0.0.0") is proxy, yiaddr
        # The boot server on 4011 answers the client that now has an address.
        [ack] = probe(
            client,
            "bootserver",
            "--mac",
            "52:54:00:aa:01:00",
            "--arch",
            "11",
            "--ciaddr",
            "10.78.0.50",
        )
        assert ack["type"] == "ACK" and ack["file"] == "ipxe-arm64.efi"
        assert ack["siaddr"] == "10.78.0.1" and ack["from"] == "10.78.0.1"
        pxed.stop()
        log = pxed.output()
    assert "unknown architecture code 30583, giving the default default.0" in log
    assert "Traceback" not in log


def test_http_port_serves_root_on_ipv4_and_ipv6_and_logs_downloads(tmp_path: Path) -> None:
    """`--http-port`: ROOT over HTTP on IFACE's IPv4 and IPv6 addresses (curl, a real
    client), confined to ROOT, and each complete download in the boot log."""
    curl = require_tool("curl")
    make_root(tmp_path / "root")
    with boot_network(tmp_path) as net:
        client = net.peer("10.78.0.50")
        pxed = start_pxed(net, tmp_path, "--http-port", "8080")

        def get(ns: Netns, url: str, *flags: str) -> subprocess.CompletedProcess[str]:
            argv = [curl, "-s", "--max-time", "10", *flags, url]
            return subprocess.run(ns.popen_argv(argv), capture_output=True, text=True, timeout=30)

        assert get(client, "http://10.78.0.1:8080/ipxe.efi").stdout == "boot"
        assert get(net.ns, "http://[fd78::1]:8080/default.0").stdout == "boot"
        code = get(
            client,
            "http://10.78.0.1:8080/../etc/passwd",
            "--path-as-is",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        )
        assert code.stdout in ("403", "404"), code.stdout
        pxed.stop()
        log = pxed.output()
    line = "boot ip 10.78.0.50 arch=no DHCP seen: completed: served ipxe.efi over http (4 bytes)"
    assert line in log
    assert "Traceback" not in log


def test_http_port_serves_an_ipv4_only_interface(tmp_path: Path) -> None:
    """Issue 21: IPv6 switched off on IFACE (common on provisioning networks): pxed
    --http-port starts and serves on IFACE's IPv4 address; only --ipv6 needs IPv6."""
    curl = require_tool("curl")
    make_root(tmp_path / "root")
    with boot_network(tmp_path) as net:
        net.ns.run("sysctl", "-q", "-w", f"net.ipv6.conf.{net.bridge}.disable_ipv6=1")
        client = net.peer("10.78.0.50")
        pxed = start_pxed(net, tmp_path, "--http-port", "8080")
        argv = [curl, "-s", "--max-time", "10", "http://10.78.0.1:8080/ipxe.efi"]
        got = subprocess.run(client.popen_argv(argv), capture_output=True, timeout=30)
        assert got.stdout == b"boot", got
        pxed.stop()
        log = pxed.output()
    assert "over HTTP on 10.78.0.1 port 8080\n" in log, log[-2000:]
    assert ", HTTP port 8080," in log
    assert "served ipxe.efi over http (4 bytes)" in log
    assert "Traceback" not in log
