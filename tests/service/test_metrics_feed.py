"""What feeds the DHCP lease gauges and the PXE boot metrics, end to end: real servers in
namespaces, real clients (busybox udhcpc, tftp-hpa), /metrics scraped with curl, exact
values (after N leases, N active and size - N free; one boot, one boots_total sample)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from dhcp.dhcplab import SERVER_IP, Lab, Udhcpc, lab, scrape_metrics, wait_for
from ptftpd.dhcp.leases import (
    Ack,
    LeasePolicy,
    LeaseSummary,
    MemoryStore,
    SubnetConfig,
)
from ptftpd.dhcp.pg_store import PgLink, PgStore
from support import Process, free_udp_port, require_tool, script, world_readable_dir
from support.clocked import Clocked
from support.postgres import pg_cluster, pg_database

__all__ = ["pg_cluster", "pg_database"]  # fixtures


@pytest.fixture
def state() -> Iterator[Path]:
    """Files the server reads, outside pytest's root-only tmp_path."""
    with world_readable_dir("ptftpd-metrics-feed-") as folder:
        yield folder


def scrape(the_lab: Lab, port: int) -> dict[str, float]:
    return scrape_metrics(the_lab, port)


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


def tftp_of(counts: dict[str, float]) -> dict[str, float]:
    """The TFTP samples, without prometheus-client's `_created` timestamps."""
    return {k: v for k, v in counts.items() if k.startswith("ptftpd_tftp_") and "_created" not in k}


def transfers(sent: int, failed: str | None = None) -> dict[str, float]:
    """ptftpd's TFTP metrics after one read that completed (`sent` bytes ACKed) or
    failed for reason `failed` (a labelled series exists once it was counted)."""
    read = '{direction="read"}'
    expected = {
        f"ptftpd_tftp_transfers_started_total{read}": 1,
        "ptftpd_tftp_sent_bytes_total": sent,
        "ptftpd_tftp_received_bytes_total": 0,
        "ptftpd_tftp_active_sessions": 0,
        f"ptftpd_tftp_transfer_duration_seconds_count{read}": 1,
        "ptftpd_tftp_requests_dropped_total": 0,  # the source budget dropped none
    }
    if failed is None:
        expected[f"ptftpd_tftp_transfers_completed_total{read}"] = 1
    else:
        expected[f'ptftpd_tftp_transfers_failed_total{{direction="read",reason="{failed}"}}'] = 1
    return expected


def histogram_free(counts: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in counts.items() if "_bucket" not in k and "_sum" not in k}


DHCP = 'ptftpd_dhcp_messages_total{direction="%s",type="%s"}'


def start_pxed(the_lab: Lab, state: Path, mport: int, *flags: str) -> Process:
    root = state / "root"
    root.mkdir(mode=0o755)
    (root / "pxelinux.0").write_bytes(b"boot" * 3000)
    argv = [script("pxed"), "-a", "-v", "--boot-idle", "1", "--metrics",
            f"127.0.0.1:{mport}", "--leases", str(state / "leases.sqlite"), *flags,
            the_lab.server_if, str(root), "pxelinux.0"]  # fmt: skip
    server = Process(the_lab.server.popen_argv(argv), the_lab.tmp / "pxed.log")
    the_lab.procs.append(server)
    return server


def bios_client(the_lab: Lab) -> Udhcpc:
    """A BIOS PXE client (option 93 = 0) with its address configured."""
    client = Udhcpc(the_lab, 0, "-x", "0x5d:0000")
    assert client.wait_event("bound", timeout=30)["boot_file"] == "pxelinux.0"
    ns, _ = the_lab.clients[0]
    wait_for(lambda: "10.77.0." in ns.run("ip", "-4", "addr").stdout, 15, "the address")
    return client


def test_pxed_full_mode_counts_tftp_dhcp_and_the_boot(tmp_path: Path, state: Path) -> None:
    with lab(tmp_path, 1) as the_lab:
        mport = free_udp_port()
        server = start_pxed(the_lab, state, mport)
        size = pool_size(server)
        client = bios_client(the_lab)
        ns, _ = the_lab.clients[0]
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
        # The TFTP server's callbacks feed the boot log and, beside it, ptftpd's metrics.
        assert histogram_free(tftp_of(counts)) == transfers(12000)
        assert (counts[DHCP % ("in", "request")], counts[DHCP % ("out", "ack")]) == (1, 1)
        assert counts[DHCP % ("in", "discover")] == counts[DHCP % ("out", "offer")] >= 1
        client.proc.stop()
        assert server.stop() == 0
        assert "Traceback" not in server.output()


# A TFTP reader that takes the first DATA block and never ACKs it, then waits until the
# server has given up (no retransmission for 4 s), bounded by 30 s.
STALLED_READER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(4)
s.sendto(b"\\0\\1pxelinux.0\\0octet\\0", (sys.argv[1], 69))
blocks = 0
end = time.monotonic() + 30
while time.monotonic() < end:
    try:
        s.recvfrom(1024)
    except TimeoutError:
        break
    blocks += 1
print(blocks)
"""


def test_pxed_counts_a_failed_boot(tmp_path: Path, state: Path) -> None:
    with lab(tmp_path, 1) as the_lab:
        mport = free_udp_port()
        server = start_pxed(the_lab, state, mport, "--timeout", "1", "--retries", "2")
        pool_size(server)
        client = bios_client(the_lab)
        ns, iface = the_lab.clients[0]
        mac = ns.run("cat", f"/sys/class/net/{iface}/address").stdout.strip()
        sent = ns.run(sys.executable, "-c", STALLED_READER, SERVER_IP, timeout=60).stdout
        # Block 1 only: nothing is resent to a client that never answered (issue 19).
        assert int(sent) == 1
        failed = 'ptftpd_pxe_boots_total{arch="bios",outcome="failed"}'
        wait_for(lambda: failed in scrape(the_lab, mport), 20, "the failed boot")
        counts = scrape(the_lab, mport)
        assert [k for k in counts if k.startswith("ptftpd_pxe_boots_total")] == [failed]
        assert counts[failed] == 1
        assert 'ptftpd_pxe_boot_seconds_count{arch="bios"}' not in counts  # no last byte
        assert histogram_free(tftp_of(counts)) == transfers(0, failed="unanswered")  # none ACKed
        client.proc.stop()
        assert server.stop() == 0
        log = server.output()
    line = f"boot {mac} arch=BIOS: failed: pxelinux.0 over tftp: unanswered: "
    assert line in log, log
    assert "Traceback" not in log


def exercise(policy: Clocked) -> None:
    """Two bound leases, one open offer, one declined address."""
    for n in (1, 2):
        key, mac = b"\x01bound%d" % n, f"02:00:00:00:01:0{n}"
        addr = policy.offer(key, mac)
        assert addr is not None
        assert isinstance(policy.request(key, mac, addr, selecting=True), Ack)
    assert policy.offer(b"\x01offered", "02:00:00:00:02:01") is not None
    key, mac = b"\x01decliner", "02:00:00:00:03:01"
    addr = policy.offer(key, mac)
    assert addr is not None
    assert isinstance(policy.request(key, mac, addr, selecting=True), Ack)
    assert policy.decline(key, mac, addr) is not None


def small_pool() -> SubnetConfig:
    net = IPv4Network("10.9.0.0/28")
    return SubnetConfig(net, exclude=(IPv4Address("10.9.0.1"),), lease_time=600)


def test_lease_summary_of_the_local_policy() -> None:
    clock = [1_000_000.0]
    policy = Clocked(LeasePolicy(small_pool(), MemoryStore()), lambda: clock[0])
    size = len(policy.config.addresses)
    assert policy.summary() == LeaseSummary(0, 0, 0, size)
    exercise(policy)
    assert policy.summary() == LeaseSummary(2, 1, 1, size - 4)
    clock[0] += 60  # the offer lapses; leases and the quarantine stay
    assert policy.summary() == LeaseSummary(2, 0, 1, size - 3)


def test_lease_summary_of_the_shared_policy(pg_database: str) -> None:
    clock = [1_000_000.0]
    store = PgStore(PgLink(pg_database, "10.9.0.1"))
    other_store = PgStore(PgLink(pg_database, "10.9.0.2"))
    try:
        policy = Clocked(LeasePolicy(small_pool(), store), lambda: clock[0])
        other = Clocked(LeasePolicy(small_pool(), other_store), lambda: clock[0])
        size = len(policy.config.addresses)
        assert policy.summary() == LeaseSummary(0, 0, 0, size)
        exercise(other)  # another server's leases count: the database is the truth
        assert policy.summary() == LeaseSummary(2, 1, 1, size - 4)
        clock[0] += 60
        assert policy.summary() == LeaseSummary(2, 0, 1, size - 3)
    finally:
        store.close()
        other_store.close()
