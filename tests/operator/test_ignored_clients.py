"""Issue 24: `-v` names each DHCP client a server ignores, once per MAC per minute, with
why: dhcpd without -a and a non-PXE client, bootpd and a DHCP client, pxed --proxy and a
non-PXE client. Real busybox udhcpc clients in namespaces, which send a DISCOVER every
second; the lines are counted. The memory of who was named is bounded (hostile input)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from dhcp.dhcplab import Lab, Udhcpc, lab, wait_for
from ptftpd.log import OncePerKey
from support import Process, script, wait_udp_bound, world_readable_dir

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

DISCOVERS = 4  # each client is seen asking this often before the lines are counted


def ignored_lines(server: Process, mac: str) -> tuple[list[str], int]:
    """The INFO lines naming `mac` as ignored, and how many DISCOVERs were ignored in
    all (the -D line says each)."""
    out = server.output().splitlines()
    info = [line for line in out if " INFO: ignoring " in line and mac in line]
    every = [line for line in out if re.search(rf"DEBUG: ignore DHCPDISCOVER from {mac}", line)]
    return info, len(every) + len(info)


def count_after_discovers(server: Process, macs: list[str]) -> dict[str, list[str]]:
    for mac in macs:
        wait_for(
            lambda mac=mac: ignored_lines(server, mac)[1] >= DISCOVERS,
            30,
            f"{DISCOVERS} DISCOVERs from {mac}: {server.output()[-2000:]}",
        )
    return {mac: ignored_lines(server, mac)[0] for mac in macs}


def clients(the_lab: Lab, n: int) -> list[str]:
    for i in range(n):
        Udhcpc(the_lab, i, name=f"udhcpc{i}")
    return [the_lab.client_mac(i) for i in range(n)]


def test_dhcpd_without_a_names_each_non_pxe_client_once(tmp_path: Path) -> None:
    with lab(tmp_path, n_clients=2) as the_lab:
        server = the_lab.dhcpd("-v")  # the lab adds -D: every ignored packet is said too
        macs = clients(the_lab, 2)
        lines = count_after_discovers(server, macs)
    for mac in macs:
        assert len(lines[mac]) == 1, lines
        assert "DHCPDISCOVER" in lines[mac][0] and "is not PXE" in lines[mac][0]
        assert "-a answers every client" in lines[mac][0]


def test_bootpd_names_each_dhcp_client_once(tmp_path: Path) -> None:
    with lab(tmp_path, n_clients=1) as the_lab:
        server = the_lab.dhcpd("-v", tool="bootpd", name="bootpd")
        [mac] = clients(the_lab, 1)
        lines = count_after_discovers(server, [mac])
    assert len(lines[mac]) == 1, lines
    assert "DHCPDISCOVER" in lines[mac][0] and "BOOTP only" in lines[mac][0], lines
    assert "dhcpd answers DHCP" in lines[mac][0]


def test_pxed_proxy_names_each_non_pxe_client_once(tmp_path: Path) -> None:
    with lab(tmp_path, n_clients=1) as the_lab, world_readable_dir("ptftpd-ign-") as root:
        (root / "pxelinux.0").write_bytes(b"boot")
        argv = [script("pxed"), "-v", "-D", "--proxy", "--leases", str(tmp_path / "p.sqlite"),
                the_lab.server_if, str(root), "pxelinux.0"]  # fmt: skip
        server = Process(the_lab.server.popen_argv(argv), tmp_path / "pxed.log")
        the_lab.procs.append(server)
        wait_udp_bound(67, timeout=15, proc=server.proc, netns=the_lab.server.name)
        [mac] = clients(the_lab, 1)
        lines = count_after_discovers(server, [mac])
    assert len(lines[mac]) == 1, lines
    assert "is not PXE" in lines[mac][0] and "proxyDHCP" in lines[mac][0], lines


def test_the_memory_of_named_clients_is_bounded_and_expires() -> None:
    """A flood of random MACs (forged DISCOVERs): at most `capacity` are remembered and
    named; the rest become one summary count per interval; a minute later a client is
    named again."""
    seen = OncePerKey(interval=60.0, capacity=100)
    rng = random.Random(24)
    macs = [":".join(f"{rng.randrange(256):02x}" for _ in range(6)) for _ in range(5000)]
    named = [mac for i, mac in enumerate(macs) if seen.admit(mac, i * 0.001)]
    assert len(named) == 100 and len(seen) == 100
    assert seen.unlogged(5.0) == 4900 and seen.unlogged(6.0) == 0  # said once
    assert not seen.admit(macs[0], 30.0)  # named at 0 s: not again within the minute
    assert seen.admit(macs[0], 61.0)  # a minute later: named again (the others expired)
    assert len(seen) == 1
    assert seen.admit("02:00:00:00:00:01", 61.5)  # room again
    for i in range(100_000):  # bounded whatever arrives
        seen.admit(f"x{i}", 62.0)
    assert len(seen) == 100
    assert seen.unlogged(62.0) == 0 and seen.unlogged(65.0 + 60.0) > 0
