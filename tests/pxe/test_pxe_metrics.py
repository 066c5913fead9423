"""pxed --proxy --metrics over real sockets: the proxyDHCP (67) and boot server (4011)
messages counted by type in and out, the TFTP transfer counted beside the boot log, and
the boot counted once; /metrics scraped with curl, exact values. Scripted PXE client
(pxe_probe.py) and tftp-hpa in a peer namespace; no QEMU."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from pxe_harness import boot_network
from test_pxe_sockets import PROBE, probe

from dhcp.dhcplab import wait_for
from support import free_udp_port, require_tool, script, wait_udp_bound

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

MAC = "52:54:00:aa:02:01"
BOOT = b"ipxe" * 2500  # 10000 bytes


def scrape(text: str) -> dict[str, float]:
    """The samples, without timestamps (`_created`) and histogram buckets and sums."""
    pairs = re.findall(r"^(ptftpd_\S+) (\S+)$", text, re.M)
    return {k: float(v) for k, v in pairs if not re.search(r"_(created|bucket|sum)\b", k)}


def test_proxy_mode_counts_67_4011_tftp_and_the_boot(tmp_path: Path) -> None:
    curl, tftp = require_tool("curl"), require_tool("tftp")
    assert PROBE.is_file()
    root = tmp_path / "root"
    root.mkdir()
    (root / "default.0").write_bytes(b"boot")
    (root / "ipxe.efi").write_bytes(BOOT)
    with boot_network(tmp_path) as net:
        client = net.peer("10.78.0.50")
        mport = free_udp_port()
        argv = [script("pxed"), "-v", "--proxy", "--boot-idle", "1", "--metrics",
                f"127.0.0.1:{mport}", "--efi64-bootfile", "ipxe.efi", "--leases",
                str(tmp_path / "leases.sqlite"), net.bridge, str(root), "default.0"]  # fmt: skip
        pxed = net.start(argv, "pxed")
        wait_udp_bound(4011, timeout=15, proc=pxed.proc, netns=net.ns.name)

        def metrics() -> dict[str, float]:
            return scrape(net.ns.run(curl, "-sf", f"http://127.0.0.1:{mport}/metrics").stdout)

        # x64 UEFI firmware: proxy OFFER on 67, then the boot server ACK on 4011 once the
        # (other) DHCP server gave it 10.78.0.50; then the file over TFTP.
        [offer] = probe(client, "discover", "--mac", MAC, "--arch", "7")
        assert offer["type"] == "OFFER" and offer["file"] == "ipxe.efi"
        [ack] = probe(client, "bootserver", "--mac", MAC, "--arch", "7", "--ciaddr", "10.78.0.50")
        assert ack["type"] == "ACK" and ack["file"] == "ipxe.efi"
        work = tmp_path / "client"
        work.mkdir()
        get = f"cd {work} && {tftp} 10.78.0.1 -m octet -c get ipxe.efi"
        subprocess.run(client.popen_argv(["sh", "-c", get]), check=True, timeout=30)
        assert (work / "ipxe.efi").read_bytes() == BOOT

        boot = 'ptftpd_pxe_boots_total{arch="efi-x64",outcome="completed"}'
        # The boot's line (and its metrics) comes once the client is quiet for 1 s.
        wait_for(lambda: boot in metrics(), 20, "the boot to be counted")
        counts = metrics()
        dhcp = {k: v for k, v in counts.items() if k.startswith("ptftpd_dhcp_messages")}
        key = 'ptftpd_dhcp_messages_total{direction="%s",type="%s"}'
        assert dhcp == {
            key % ("in", "discover"): 1,
            key % ("out", "offer"): 1,
            key % ("in", "request"): 1,
            key % ("out", "ack"): 1,
        }
        tftp_counts = {k: v for k, v in counts.items() if k.startswith("ptftpd_tftp_")}
        read = '{direction="read"}'
        assert tftp_counts == {
            f"ptftpd_tftp_transfers_started_total{read}": 1,
            f"ptftpd_tftp_transfers_completed_total{read}": 1,
            "ptftpd_tftp_sent_bytes_total": len(BOOT),
            "ptftpd_tftp_received_bytes_total": 0,
            "ptftpd_tftp_active_sessions": 0,
            f"ptftpd_tftp_transfer_duration_seconds_count{read}": 1,
            "ptftpd_tftp_requests_dropped_total": 0,
        }
        assert [k for k in counts if k.startswith("ptftpd_pxe_boots_total")] == [boot]
        assert counts[boot] == 1
        pxed.stop()
        log = pxed.output()
    line = f"boot {MAC} arch=EFI x64: completed: served ipxe.efi over tftp (10000 bytes)"
    assert line in log, log
    assert "Traceback" not in log


def test_http_requests_bytes_and_connections_are_counted(tmp_path: Path) -> None:
    """Issue 21 item 5: pxed --http-port --metrics counts HTTP requests by status, the
    bytes sent and the open and refused connections; curl scrapes exact values."""
    curl = require_tool("curl")
    root = tmp_path / "root"
    root.mkdir()
    (root / "default.0").write_bytes(b"boot")
    (root / "ipxe.efi").write_bytes(BOOT)
    with boot_network(tmp_path) as net:
        client = net.peer("10.78.0.50")
        mport = free_udp_port()
        argv = [script("pxed"), "-v", "--proxy", "--metrics", f"127.0.0.1:{mport}",
                "--http-port", "8080", "--leases", str(tmp_path / "leases.sqlite"),
                net.bridge, str(root), "default.0"]  # fmt: skip
        pxed = net.start(argv, "pxed")
        wait_udp_bound(4011, timeout=15, proc=pxed.proc, netns=net.ns.name)

        def metrics() -> dict[str, float]:
            text = net.ns.run(curl, "-sf", f"http://127.0.0.1:{mport}/metrics").stdout
            return {k: v for k, v in scrape(text).items() if k.startswith("ptftpd_http_")}

        def get(*flags: str) -> None:
            argv = [curl, "-s", "-o", "/dev/null", "--max-time", "10", *flags]
            subprocess.run(client.popen_argv(argv), check=True, timeout=30)

        url = "http://10.78.0.1:8080"
        get(f"{url}/ipxe.efi")
        get("-I", f"{url}/ipxe.efi")
        get("-r", "0-99", f"{url}/ipxe.efi")
        get(f"{url}/missing.efi")
        # One machine holds a connection open: counted as open until it goes.
        hold = ["python3", "-c", "import socket, time; "
                "s = socket.create_connection(('10.78.0.1', 8080)); time.sleep(60)"]  # fmt: skip
        holder = subprocess.Popen(client.popen_argv(hold))
        try:
            active = "ptftpd_http_active_connections"
            wait_for(lambda: metrics().get(active) == 1, 20, "the held connection")
        finally:
            holder.kill()
            holder.wait()
        wait_for(lambda: metrics().get(active) == 0, 20, "the connection to close")
        status = 'ptftpd_http_requests_total{status="%s"}'
        assert metrics() == {
            status % "200": 2,  # GET and HEAD
            status % "206": 1,
            status % "404": 1,
            "ptftpd_http_sent_bytes_total": len(BOOT) + 100,
            "ptftpd_http_active_connections": 0,
            "ptftpd_http_refused_connections_total": 0,
        }
        pxed.stop()
        log = pxed.output()
    # One log line per request.
    assert len(re.findall(r"10\.78\.0\.50 (GET|HEAD) /", log)) == 4, log
    assert "Traceback" not in log
