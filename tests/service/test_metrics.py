"""Metrics: call the facade a known number of times, scrape /metrics with curl, check exact
values; then the same across real worker processes in prometheus-client's multiprocess mode.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ptftpd.service import metrics
from ptftpd.service.metrics import LeaseCounts, TransferRecord
from support import require_tool


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    curl = require_tool("curl")
    done = subprocess.run(
        [curl, "-sS", "--fail", "--max-time", "20", f"http://127.0.0.1:{port}/metrics"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    samples = {}
    for family in text_string_to_metric_families(done.stdout):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@pytest.fixture
def fresh() -> Iterator[None]:
    metrics.disable()
    yield
    metrics.disable()


def test_facade_counts_are_scraped_exactly(fresh: None) -> None:
    # Before --metrics is enabled the facade records nothing and costs nothing.
    metrics.tftp_started("read")
    port = free_tcp_port()
    metrics.serve("127.0.0.1", port)

    for _ in range(4):
        metrics.tftp_started("read")
    metrics.tftp_started("write")
    for size in (1000, 2000, 512):
        metrics.tftp_finished(TransferRecord("read", "completed", size, 0, 0.2))
    metrics.tftp_finished(TransferRecord("read", "timeout", 100, 0, 7.0))
    metrics.tftp_finished(TransferRecord("write", "disk_full", 0, 4096, 1.0))
    metrics.tftp_started("read")  # still running at the scrape
    metrics.dhcp_message("in", "DISCOVER")
    metrics.dhcp_message("in", "discover")
    metrics.dhcp_message("out", "offer")
    metrics.dhcp_message("in", "weird-type")
    metrics.dhcp_leases(LeaseCounts(active=3, offered=1, declined=2, free=94))
    metrics.pxe_boot(7, "completed", 4.5)
    metrics.pxe_boot(0, "completed", 12.0)
    metrics.pxe_boot(7, "failed", None)
    metrics.pxe_boot(4242, "completed", 1.0)

    s = scrape(port)
    assert s[("ptftpd_tftp_transfers_started_total", (("direction", "read"),))] == 5
    assert s[("ptftpd_tftp_transfers_started_total", (("direction", "write"),))] == 1
    assert s[("ptftpd_tftp_transfers_completed_total", (("direction", "read"),))] == 3
    failed = "ptftpd_tftp_transfers_failed_total"
    assert s[(failed, (("direction", "read"), ("reason", "timeout")))] == 1
    assert s[(failed, (("direction", "write"), ("reason", "disk_full")))] == 1
    assert s[("ptftpd_tftp_sent_bytes_total", ())] == 3612
    assert s[("ptftpd_tftp_received_bytes_total", ())] == 4096
    assert s[("ptftpd_tftp_active_sessions", ())] == 1
    duration = "ptftpd_tftp_transfer_duration_seconds"
    assert s[(duration + "_count", (("direction", "read"),))] == 4
    assert s[(duration + "_sum", (("direction", "read"),))] == pytest.approx(7.6)
    assert s[(duration + "_bucket", (("direction", "read"), ("le", "0.25")))] == 3
    dhcp = "ptftpd_dhcp_messages_total"
    assert s[(dhcp, (("direction", "in"), ("type", "discover")))] == 2
    assert s[(dhcp, (("direction", "out"), ("type", "offer")))] == 1
    assert s[(dhcp, (("direction", "in"), ("type", "other")))] == 1
    assert s[("ptftpd_dhcp_leases", (("state", "active"),))] == 3
    assert s[("ptftpd_dhcp_leases", (("state", "offered"),))] == 1
    assert s[("ptftpd_dhcp_leases", (("state", "declined"),))] == 2
    assert s[("ptftpd_dhcp_pool_free", ())] == 94
    boots = "ptftpd_pxe_boots_total"
    assert s[(boots, (("arch", "efi-x64"), ("outcome", "completed")))] == 1
    assert s[(boots, (("arch", "efi-x64"), ("outcome", "failed")))] == 1
    assert s[(boots, (("arch", "bios"), ("outcome", "completed")))] == 1
    assert s[(boots, (("arch", "other"), ("outcome", "completed")))] == 1
    assert s[("ptftpd_pxe_boot_seconds_count", (("arch", "efi-x64"),))] == 1
    assert s[("ptftpd_pxe_boot_seconds_sum", (("arch", "bios"),))] == 12.0


def test_serve_on_a_busy_port_raises_oserror(fresh: None) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(OSError):
            metrics.serve("127.0.0.1", busy.getsockname()[1])


WORKER = """
import sys
from ptftpd.service import metrics
from ptftpd.service.metrics import TransferRecord
metrics.enable()
n = int(sys.argv[1])
for _ in range(n):
    metrics.tftp_started("read")
    metrics.tftp_finished(TransferRecord("read", "completed", 100, 0, 0.1))
metrics.tftp_started("read")  # left running: counts while this worker lives
sys.stdout.write("done\\n"); sys.stdout.flush()
sys.stdin.read()
"""

PARENT = """
import sys, time
from ptftpd.service import metrics
metrics.serve("127.0.0.1", int(sys.argv[1]))
print("serving", flush=True)
for line in sys.stdin:
    metrics.worker_exited(int(line))
    print("marked", flush=True)
"""


def test_workers_are_summed_in_multiprocess_mode(tmp_path: Path) -> None:
    directory = tmp_path / "prom"
    directory.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    workers = []
    for count in (3, 5):
        proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WORKER), str(count)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline() == "done\n"
        workers.append(proc)
    port = free_tcp_port()
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(port)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None and parent.stdin is not None
        assert parent.stdout.readline() == "serving\n"
        # A worker caught between creating its file and sizing it (prometheus-client
        # opens, then extends): the scrape still answers, with what the others hold.
        (directory / "counter_4194303.db").touch()
        s = scrape(port)
        assert s[("ptftpd_tftp_transfers_completed_total", (("direction", "read"),))] == 8
        assert s[("ptftpd_tftp_sent_bytes_total", ())] == 800
        assert s[("ptftpd_tftp_active_sessions", ())] == 2
        # One worker ends: its counters stay, its running session no longer counts.
        first = workers.pop(0)
        first.communicate("", timeout=30)
        parent.stdin.write(f"{first.pid}\n")
        parent.stdin.flush()
        assert parent.stdout.readline() == "marked\n"
        s = scrape(port)
        assert s[("ptftpd_tftp_transfers_completed_total", (("direction", "read"),))] == 8
        assert s[("ptftpd_tftp_active_sessions", ())] == 1
    finally:
        for proc in [*workers, parent]:
            proc.kill()
            proc.wait(10)
