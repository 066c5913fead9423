"""pxed SIGHUP, as a real process in namespaces: the --config file and its static hosts
are read again while a TFTP transfer runs (it completes byte-identical), a new static
host gets its address, a setting that cannot change live is named and kept, and a bad
file is one error line while the old settings keep serving. Real clients: busybox
udhcpc and a TFTP reader that ACKs slowly; /metrics scraped with curl."""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dhcp.dhcplab import SERVER_IP, Lab, Udhcpc, lab, scrape_metrics, wait_for
from support import Process, free_udp_port, script, wait_udp_bound, world_readable_dir

pytestmark = [pytest.mark.netns, pytest.mark.timeout(180)]

SERVICE_TESTS = Path(__file__).resolve().parent.parent / "service"  # slow_tftp.py
BOOT = bytes(range(256)) * 60  # 15360 bytes: 31 blocks of 512
RANGE = 'range = ["10.77.0.100", "10.77.0.120"]\n'


@pytest.fixture
def state() -> Iterator[Path]:
    """Files the server reads, outside pytest's root-only tmp_path."""
    with world_readable_dir("ptftpd-pxed-reload-") as folder:
        yield folder


def scrape(the_lab: Lab, port: int) -> dict[str, float]:
    return scrape_metrics(the_lab, port)


def test_sighup_mid_transfer_rereads_hosts_and_keeps_serving(tmp_path: Path, state: Path) -> None:
    with lab(tmp_path, 2) as the_lab:
        root = state / "root"
        root.mkdir(mode=0o755)
        (root / "pxelinux.0").write_bytes(BOOT)
        config = state / "pxed.toml"
        config.write_text(RANGE)
        mport = free_udp_port()
        argv = [script("pxed"), "-a", "-v", "--config", str(config), "--metrics",
                f"127.0.0.1:{mport}", "--leases", str(state / "leases.sqlite"),
                the_lab.server_if, str(root), "pxelinux.0"]  # fmt: skip
        server = Process(the_lab.server.popen_argv(argv), the_lab.tmp / "pxed.log")
        the_lab.procs.append(server)
        wait_udp_bound(67, timeout=15, proc=server.proc, netns=the_lab.server.name)
        first = Udhcpc(the_lab, 0, name="u1")
        assert first.wait_event("bound", timeout=30)["ip"].startswith("10.77.0.1")
        ns, _ = the_lab.clients[0]
        wait_for(lambda: "10.77.0." in ns.run("ip", "-4", "addr").stdout, 15, "the address")

        # The next file: a static host for the second client, a TFTP limit (pxed's own
        # key: applies to new transfers) and a port that a running pxed cannot move to
        # (it is named in the reload line and kept).
        mac = the_lab.client_mac(1)
        config.write_text(
            f'{RANGE}hosts = ["{mac}=10.77.0.50,fixed"]\nmax-sessions = 7\ntftp-port = 1069\n'
        )
        # SIGHUP at block 5 of 31 of a reader that ACKs every 0.1 s.
        code = (
            f"import sys; sys.path.insert(0, {str(SERVICE_TESTS)!r}); import slow_tftp, os\n"
            f"r = slow_tftp.read({SERVER_IP!r}, 69, 'pxelinux.0', delay=0.1, on_block=lambda n: "
            f"n == 5 and os.kill({server.pid}, {int(signal.SIGHUP)}))\n"
            f"open({str(state / 'got')!r}, 'wb').write(r.data); print(r.error)"
        )
        assert ns.run(sys.executable, "-c", code, timeout=60).stdout.strip() == "None"
        assert (state / "got").read_bytes() == BOOT
        log = server.output()
        reloaded = (
            "reloaded: 1 static host(s), lease time 3600 s; boot files BOOTFILE=pxelinux.0; "
            "TFTP max sessions 7; kept until a restart: tftp-port"
        )
        assert reloaded in log, log
        done = re.search(r"RRQ 'pxelinux.0' octet: sent 15360 bytes", log)
        assert done is not None and log.index(reloaded) < done.start(), log

        second = Udhcpc(the_lab, 1, name="u2")
        assert second.wait_event("bound", timeout=30)["ip"] == "10.77.0.50"
        counts = scrape(the_lab, mport)
        # The rebuilt engine is counted once: the first client's REQUEST and this one.
        key = 'ptftpd_dhcp_messages_total{direction="%s",type="%s"}'
        assert (counts[key % ("in", "request")], counts[key % ("out", "ack")]) == (2, 2)
        assert counts['ptftpd_tftp_transfers_completed_total{direction="read"}'] == 1
        second.proc.stop()

        # A file that does not parse: one error line, the old settings keep serving.
        config.write_text(f'{RANGE}hosts = ["{mac}=10.77.0.50,fixed"\n')
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload failed" in server.output(), 15, "the reload error")
        again = Udhcpc(the_lab, 1, name="u3")
        assert again.wait_event("bound", timeout=30)["ip"] == "10.77.0.50"
        again.proc.stop()
        first.proc.stop()
        assert server.proc.poll() is None  # the same process served all along
        assert server.stop() == 0
        log = server.output()
    errors = [line for line in log.splitlines() if "reload failed" in line]
    assert len(errors) == 1 and "keeping the running settings" in errors[0], log
    assert str(config) in errors[0], errors
    assert "Traceback" not in log
