"""Raspberry Pi network boot against pxed, with dnsmasq's documented Pi configuration
(`pxe-service=0,"Raspberry Pi Boot"`) as the reference, in namespaces these tests
create. The Pi side is the scripted bootloader of pi_client.py (no emulator boots a Pi
over the network): it ignores offers without the menu string, asks for
`<serial>/start4.elf` first and falls back to the root by itself.

Covers the Pi 4 and Pi 5 EEPROM bootloaders (and the Pi 3B/3B+/2B v1.2 boot ROM, which
needs the same option 43); see the README's Firmware table.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

import pytest
from fwlab import SERVER_IP, Lan, lan, record_boot_time

from support import REPO, VENV_BIN, Netns

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]

PI_CLIENT = Path(__file__).with_name("pi_client.py")
# Two Pi 4s: A has a directory of its own in ROOT, B boots from ROOT itself.
PI_A = ("dc:a6:32:00:00:0a", "9ffefd0a")
PI_B = ("e4:5f:01:00:00:0b", "9ffefd0b")
MENU_HEX = b"Raspberry Pi Boot".hex()
DNSMASQ_FULL = 'dhcp-range=10.81.0.50,10.81.0.150,12h\npxe-service=0,"Raspberry Pi Boot"\n'
DNSMASQ_PROXY = 'dhcp-range=10.81.0.0,proxy\npxe-service=0,"Raspberry Pi Boot"\n'


def run_pi(host: Netns, mac: str, serial: str, *extra: str, wait: float = 8.0) -> dict[str, object]:
    argv = [str(VENV_BIN / "python"), str(PI_CLIENT), "--mac", mac, "--serial", serial]
    argv += ["--wait", str(wait), *extra]
    env_path = f"{REPO / 'src'}:{REPO / 'tests' / 'dhcp'}:{os.environ.get('PYTHONPATH', '')}"
    result = host.run("env", f"PYTHONPATH={env_path}", *argv, timeout=60)
    report: dict[str, object] = json.loads(result.stdout)
    return report


def pi_root(root: Path) -> dict[str, str]:
    """ROOT with the Pi's firmware files (test bytes, not Raspberry Pi's), and Pi A's own
    directory; returns sha256 by path."""
    files = {
        "start4.elf": os.urandom(70_000),
        "fixup4.dat": os.urandom(5_000),
        "config.txt": b"# shared\nenable_uart=1\n",
        f"{PI_A[1]}/start4.elf": os.urandom(40_000),
        f"{PI_A[1]}/fixup4.dat": os.urandom(3_000),
        f"{PI_A[1]}/config.txt": b"# pi A\nenable_uart=1\n",
        "default.0": b"x",
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for folder in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        folder.chmod(0o755)
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def menu_of(report: dict[str, object]) -> bytes:
    offers = report["offers"]
    assert isinstance(offers, list)
    found = [bytes.fromhex(o["43"]) for o in offers if MENU_HEX in o["43"]]
    assert found, f"no offer with the Pi menu: {offers}"
    return found[0]


@pytest.mark.parametrize("mode", ["full", "proxy"])
def test_pi_option_43_is_dnsmasqs_byte_for_byte(tmp_path: Path, mode: str) -> None:
    """The same scripted DISCOVER to dnsmasq with Raspberry Pi's documented config, then
    to pxed: option 43 must be the same bytes, in full and proxy mode."""
    root = tmp_path / "root"
    pi_root(root)
    with lan(tmp_path) as net:
        pi = net.host(PI_A[0])
        dnsmasq = net.dnsmasq(DNSMASQ_FULL if mode == "full" else DNSMASQ_PROXY)
        # dnsmasq pings an address before offering it: its offer comes after ~3 s.
        reference = menu_of(run_pi(pi, *PI_A, "--discover-only", wait=8))
        dnsmasq.stop()
        flags = ["--proxy"] if mode == "proxy" else []
        net.pxed(root, "default.0", *flags)
        ours = menu_of(run_pi(pi, *PI_A, "--discover-only", wait=3))
    assert b"Raspberry Pi Boot" in reference
    assert ours == reference, f"pxed {ours.hex()} != dnsmasq {reference.hex()}"


def boot_two_pis(net: Lan, hosts: list[Netns]) -> list[dict[str, object]]:
    reports = []
    for host, (mac, serial) in zip(hosts, (PI_A, PI_B), strict=True):
        start = time.monotonic()
        report = run_pi(host, mac, serial)
        assert report["booted"], report
        record_boot_time(f"pi-{serial}", time.monotonic() - start, mac=mac)
        reports.append(report)
    return reports


def check_files(reports: list[dict[str, object]], sums: dict[str, str]) -> None:
    a, b = reports
    got_a = {r["name"]: r.get("sha256") for r in a["reads"]}  # type: ignore[union-attr]
    # Pi A: its directory's files (start4.elf found under the serial: no fallback).
    assert got_a == {
        f"{PI_A[1]}/{n}": sums[f"{PI_A[1]}/{n}"] for n in ("start4.elf", "config.txt", "fixup4.dat")
    }
    # Pi B: both serial names refused, then the root's files.
    reads_b = b["reads"]
    assert isinstance(reads_b, list)
    assert [r["name"] for r in reads_b[:2]] == [f"{PI_B[1]}/start4.elf", f"{PI_B[1]}/start.elf"]
    assert all(r.get("error") == 1 for r in reads_b[:2]), reads_b[:2]
    assert {r["name"]: r.get("sha256") for r in reads_b[2:]} == {
        n: sums[n] for n in ("config.txt", "start4.elf", "fixup4.dat")
    }


def check_log(log: str) -> None:
    """One boot line per Pi, completed; no warning, error or traceback; the refused
    serial names are two lines (one per name), no storm."""
    # pxed runs as root here without --user: its one start-up warning says so (issue 24)
    log = "\n".join(line for line in log.splitlines() if "--user USER" not in line)
    assert "Traceback" not in log and " WARNING" not in log and " ERROR" not in log, log
    for mac, _ in (PI_A, PI_B):
        lines = [line for line in log.splitlines() if f"boot {mac} " in line]
        assert len(lines) == 1, lines
        assert "arch=Raspberry Pi BIOS: completed: served" in lines[0], lines[0]
    # requests refused (the drain's "new requests refused" line is not one)
    refused = [line for line in log.splitlines() if " RRQ " in line and "refused" in line]
    assert len(refused) == 2, refused


def test_pi_full_mode_boot(tmp_path: Path) -> None:
    root = tmp_path / "root"
    sums = pi_root(root)
    with lan(tmp_path) as net:
        hosts = [net.host(PI_A[0]), net.host(PI_B[0])]
        pxed = net.pxed(root, "default.0")
        reports = boot_two_pis(net, hosts)
        for report in reports:
            assert report["tftp_server"] == SERVER_IP
        pxed.stop()
        log = pxed.output()
    check_files(reports, sums)
    check_log(log)


def test_pi_proxy_mode_boot_beside_dnsmasq(tmp_path: Path) -> None:
    """The network's DHCP server (dnsmasq, no PXE config) gives the address, pxed --proxy
    the Pi menu and TFTP: the bootloader takes one from each."""
    root = tmp_path / "root"
    sums = pi_root(root)
    with lan(tmp_path) as net:
        hosts = [net.host(PI_A[0]), net.host(PI_B[0])]
        site = net.host(address="10.81.0.2")
        net.dnsmasq("dhcp-range=10.81.0.50,10.81.0.150,12h\n", name="site", ns=site)
        pxed = net.pxed(root, "default.0", "--proxy")
        reports = boot_two_pis(net, hosts)
        for report in reports:
            offers = report["offers"]
            assert isinstance(offers, list)
            servers = {o["server"]: o for o in offers}
            assert servers["10.81.0.2"]["43"] == ""  # the site's plain offer
            assert (
                MENU_HEX in servers[SERVER_IP]["43"] and servers[SERVER_IP]["yiaddr"] == "0.0.0.0"
            )
            assert re.fullmatch(r"10\.81\.0\.\d+", str(report["address"]))
        pxed.stop()
        log = pxed.output()
    check_files(reports, sums)
    check_log(log)


def test_reply_delay_for_the_pi_retry_race(tmp_path: Path) -> None:
    """The bootloader can loop when DHCP and TFTP both answer within about two seconds
    (Raspberry Pi firmware issue 934): --reply-delay holds every DHCP reply back."""
    root = tmp_path / "root"
    pi_root(root)
    with lan(tmp_path) as net:
        pi = net.host(PI_A[0])
        quick = net.pxed(root, "default.0", name="quick")
        fast = run_pi(pi, *PI_A, "--discover-only", wait=4)
        quick.stop()
        net.pxed(root, "default.0", "--reply-delay", "3", name="delayed")
        slow = run_pi(pi, *PI_A, "--discover-only", wait=8)
    assert float(fast["boot_offer_after"]) < 2.0  # type: ignore[arg-type]
    assert 3.0 <= float(slow["boot_offer_after"]) < 6.0  # type: ignore[arg-type]
