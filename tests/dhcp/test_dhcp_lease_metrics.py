"""dhcpd --metrics and pxed --metrics: DHCPv4 lease events counted by kind
(`ptftpd_dhcp_lease_events_total{kind}`), fed from the engine's typed `LeaseEvent`s
and the expiry timer's, scraped from the real /metrics endpoint with curl (exact
values).

The server serves the lab's bridge in a namespace (5 s leases). Three clients, each in
its own namespace: busybox udhcpc binds and releases its lease when stopped (-R); a
scripted client (dhcpprobe.py decline: what a real client does when its ARP probe
finds the address in use) binds and declines; a second udhcpc binds and is killed
(SIGKILL: no release, no renewal), so its lease expires on the server. Each lease was
offered and bound once: offered 3, bound 3, released 1, declined 1, expired 1."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from dhcp.dhcplab import Lab, Udhcpc, lab, scrape_metrics, wait_for
from support import Process, free_udp_port, script

pytestmark = [
    pytest.mark.netns,
    pytest.mark.timeout(120),
    pytest.mark.side_by_side(bound=110),  # independent labs: run at once
]

EVENT = 'ptftpd_dhcp_lease_events_total{kind="%s"}'
LEASE_TIME = 5


def events(the_lab: Lab, port: int) -> dict[str, float]:
    """The lease event samples, without their `_created` timestamps."""
    counts = scrape_metrics(the_lab, port, "ptftpd_dhcp_lease_events")
    return {k: v for k, v in counts.items() if "_created" not in k}


def expected(**kinds: int) -> dict[str, float]:
    return {EVENT % kind: float(n) for kind, n in kinds.items()}


@pytest.mark.parametrize("tool", ["dhcpd", "pxed"])
def test_dhcp_lease_events_are_counted_by_kind(tmp_path: Path, tool: str) -> None:
    with lab(tmp_path, 3) as the_lab:
        mport = free_udp_port()
        leases = str(tmp_path / "leases.sqlite")
        common = ["-a", "-v", "--lease-time", str(LEASE_TIME), "--leases", leases,
                  "--metrics", f"127.0.0.1:{mport}"]  # fmt: skip
        if tool == "pxed":
            root = tmp_path / "root"
            root.mkdir()
            (root / "pxelinux.0").write_bytes(b"boot")
            argv = [script("pxed"), *common, the_lab.server_if, str(root), "pxelinux.0"]
        else:
            argv = [script("dhcpd"), *common, the_lab.server_if, "pxelinux.0"]
        server = Process(the_lab.server.popen_argv(argv), the_lab.tmp / f"{tool}.log")
        the_lab.procs.append(server)
        wait_for(lambda: "serving" in server.output(), 15, "the start line")
        assert events(the_lab, mport) == {}, "nothing counted before the first lease"

        # Bound, then released on exit (-R).
        released = Udhcpc(the_lab, 0, "-R", name="released")
        released.wait_event("bound", timeout=30)
        released.proc.stop(signal.SIGTERM, timeout=5)
        wait_for(lambda: EVENT % "released" in events(the_lab, mport), 15, "the release")

        # Bound, then declined (the address found in use).
        iface = the_lab.clients[1][1]
        replies = the_lab.probe(1, "decline", "--iface", iface, "--mac", the_lab.client_mac(1))
        assert [r["step"] for r in replies] == ["offer", "ack"], replies
        wait_for(lambda: EVENT % "declined" in events(the_lab, mport), 15, "the decline")

        # Bound, then gone without a word: the lease ends on the server.
        kept = Udhcpc(the_lab, 2, name="kept")
        kept.wait_event("bound", timeout=30)
        kept.proc.stop(signal.SIGKILL, timeout=5)  # before its renewal at half the lease
        assert len([e for e in kept.events() if e["reason"] == "bound"]) == 1
        wait_for(lambda: EVENT % "expired" in events(the_lab, mport), 3 * LEASE_TIME, "expiry")

        assert events(the_lab, mport) == expected(
            offered=3, bound=3, released=1, declined=1, expired=1
        ), server.output()[-3000:]
        assert server.stop() == 0
        assert "Traceback" not in server.output()
