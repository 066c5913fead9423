"""What feeds the DHCP lease gauges and the PXE boot metrics, end to end: real servers in
namespaces, real clients (busybox udhcpc, tftp-hpa), /metrics scraped with curl, exact
values (after N leases, N active and size - N free; one boot, one boots_total sample)."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dhcp.dhcplab import SERVER_IP, Lab, Udhcpc, lab, wait_for
from support import Process, free_udp_port, require_tool, script


@pytest.fixture
def state() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="ptftpd-metrics-feed-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def scrape(the_lab: Lab, port: int) -> dict[str, float]:
    curl = require_tool("curl")
    out = the_lab.server.run(curl, "-sf", f"http://127.0.0.1:{port}/metrics").stdout
    return {k: float(v) for k, v in re.findall(r"^(ptftpd_\S+) (\S+)$", out, re.M)}


def leases_of(counts: dict[str, float]) -> tuple[float, ...]:
    states = ("active", "offered", "declined")
    gauges = [counts.get(f'ptftpd_dhcp_leases{{state="{state}"}}', -1.0) for state in states]
    return (*gauges, counts.get("ptftpd_dhcp_pool_free", -1.0))


def pool_size(server: Process) -> int:
    found = wait_for(
        lambda: re.search(r"pool of (\d+) addresses", server.output()), 15, "the start line"
    )
    assert isinstance(found, re.Match)
    return int(found.group(1))


def test_dhcpd_lease_gauges_follow_real_leases(tmp_path: Path, state: Path) -> None:
    n = 2
    with lab(tmp_path, n) as the_lab:
        mport = free_udp_port()
        argv = [script("dhcpd"), "-a", "-v", "--leases", str(state / "leases.sqlite"),
                "--metrics", f"127.0.0.1:{mport}", the_lab.server_if, "pxelinux.0"]  # fmt: skip
        server = Process(the_lab.server.popen_argv(argv), the_lab.tmp / "dhcpd.log")
        the_lab.procs.append(server)
        size = pool_size(server)
        assert size > n
        # Before any client: the whole pool is free.
        wait_for(lambda: leases_of(scrape(the_lab, mport)) == (0, 0, 0, size), 15, "gauges")
        clients = [Udhcpc(the_lab, i, name=f"udhcpc{i}") for i in range(n)]
        for client in clients:
            assert client.wait_event("bound", timeout=30)["ip"].startswith("10.77.0.")
        # Refreshed after each burst, at most once a second: wait for the last one.
        expected = (n, 0, 0, size - n)
        wait_for(lambda: leases_of(scrape(the_lab, mport)) == expected, 15, "lease gauges")
        assert leases_of(scrape(the_lab, mport)) == expected
        for client in clients:
            client.proc.stop()
        assert server.stop() == 0
        assert "Traceback" not in server.output()


def test_pxed_boot_is_counted_by_arch_and_outcome(tmp_path: Path, state: Path) -> None:
    with lab(tmp_path, 1) as the_lab:
        root = state / "root"
        root.mkdir(mode=0o755)
        (root / "pxelinux.0").write_bytes(b"boot" * 3000)
        mport = free_udp_port()
        argv = [script("pxed"), "-a", "-v", "--boot-idle", "1", "--metrics",
                f"127.0.0.1:{mport}", "--leases", str(state / "leases.sqlite"),
                the_lab.server_if, str(root), "pxelinux.0"]  # fmt: skip
        server = Process(the_lab.server.popen_argv(argv), the_lab.tmp / "pxed.log")
        the_lab.procs.append(server)
        size = pool_size(server)
        # A BIOS PXE client: option 93 (client architecture) = 0.
        client = Udhcpc(the_lab, 0, "-x", "0x5d:0000")
        assert client.wait_event("bound", timeout=30)["boot_file"] == "pxelinux.0"
        ns, _ = the_lab.clients[0]
        wait_for(lambda: "10.77.0." in ns.run("ip", "-4", "addr").stdout, 15, "the address")
        tftp = require_tool("tftp")
        work = state / "client"
        work.mkdir()
        ns.run("sh", "-c", f"cd {work} && {tftp} {SERVER_IP} -m octet -c get pxelinux.0")
        assert (work / "pxelinux.0").read_bytes() == b"boot" * 3000
        boots = 'ptftpd_pxe_boots_total{arch="bios",outcome="completed"}'
        # The boot's line (and its metrics) comes once the client is quiet for 1 s.
        wait_for(lambda: boots in scrape(the_lab, mport), 20, "the boot to be counted")
        counts = scrape(the_lab, mport)
        assert counts[boots] == 1
        assert counts['ptftpd_pxe_boot_seconds_count{arch="bios"}'] == 1
        assert [k for k in counts if k.startswith("ptftpd_pxe_boots_total")] == [boots]
        assert leases_of(counts) == (1, 0, 0, size - 1)
        client.proc.stop()
        assert server.stop() == 0
        assert "Traceback" not in server.output()
