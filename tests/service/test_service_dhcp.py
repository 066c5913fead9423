"""dhcpd as a service, as a real process in namespaces: --user nobody on port 67 with a
lease database nobody writes, READY=1, metrics counted from a real udhcpc exchange,
SIGHUP re-reading the static hosts, and never taking port 67 from dnsmasq."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dhcp.dhcplab import SERVER_IP, Lab, Udhcpc, lab, scrape_metrics, wait_for
from service.proc_status import assert_unprivileged
from support import Process, free_udp_port, require_tool, script, wait_udp_bound, world_readable_dir

HERE = Path(__file__).resolve().parent


@pytest.fixture
def state() -> Iterator[Path]:
    """A state directory outside pytest's root-only tmp_path, as /var/lib would be."""
    with world_readable_dir("ptftpd-dhcp-svc-") as folder:
        yield folder


@pytest.fixture
def dhcp_lab(tmp_path: Path) -> Iterator[Lab]:
    with lab(tmp_path, 2) as the_lab:
        yield the_lab


def start(the_lab: Lab, argv: list[str], name: str, env: dict[str, str] | None = None) -> Process:
    """Run `argv` in the lab's server namespace, logging to NAME.log; stopped with the lab."""
    proc = Process(the_lab.server.popen_argv(argv), the_lab.tmp / f"{name}.log", env=env)
    the_lab.procs.append(proc)
    return proc


def start_ready(
    the_lab: Lab, argv: list[str], name: str, notify: tuple[socket.socket, str]
) -> Process:
    """`start` as systemd would (NOTIFY_SOCKET, conftest's `notify_socket`), returning
    once the server says READY=1, which it sends after binding every port."""
    listener, path = notify
    proc = start(the_lab, argv, name, {**os.environ, "NOTIFY_SOCKET": path})
    assert listener.recv(4096) == b"READY=1", proc.output()
    return proc


def dhcpd_argv(the_lab: Lab, *args: str) -> list[str]:
    return [script("dhcpd"), "-a", "-v", *args, the_lab.server_if, "pxelinux.0"]


def scrape(the_lab: Lab, port: int) -> dict[str, float]:
    return scrape_metrics(the_lab, port, "ptftpd_dhcp_")


def test_dhcpd_as_nobody_on_67_leases_and_counts(
    dhcp_lab: Lab, state: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    nobody = pwd.getpwnam("nobody")
    leases = state / "lib" / "leases.sqlite"
    leases.parent.mkdir()  # --leases names a file in a directory that exists
    mport = free_udp_port()
    flags = ("--user", "nobody", "--leases", str(leases), "--metrics", f"127.0.0.1:{mport}")
    server = start_ready(dhcp_lab, dhcpd_argv(dhcp_lab, *flags), "dhcpd", notify_socket)
    wait_udp_bound(67, timeout=0.5, netns=dhcp_lab.server.name)  # bound before READY=1
    fields = assert_unprivileged(server.pid, nobody.pw_uid)
    assert int(fields["CapPrm"], 16) == 0

    client = Udhcpc(dhcp_lab, 0)
    bound = client.wait_event("bound", timeout=30)
    assert bound["ip"].startswith("10.77.0.")
    assert bound["serverid"] == SERVER_IP
    assert leases.stat().st_uid == nobody.pw_uid
    assert leases.parent.stat().st_uid == nobody.pw_uid

    counts = scrape(dhcp_lab, mport)
    key = 'ptftpd_dhcp_messages_total{direction="%s",type="%s"}'
    assert counts[key % ("in", "request")] == 1
    assert counts[key % ("out", "ack")] == 1
    # udhcpc may repeat a DISCOVER on a loaded machine: each one got its OFFER.
    assert counts[key % ("in", "discover")] >= 1
    assert counts[key % ("out", "offer")] == counts[key % ("in", "discover")]
    client.proc.stop()
    assert server.stop() == 0
    log = server.output()
    assert "Traceback" not in log and "withheld" not in log and "ERROR" not in log, log


def test_sighup_rereads_static_hosts(dhcp_lab: Lab, state: Path) -> None:
    config = state / "dhcpd.toml"
    config.write_text('range = ["10.77.0.100", "10.77.0.120"]\n')
    argv = dhcpd_argv(dhcp_lab, "--config", str(config), "--leases", str(state / "l.db"))
    server = start(dhcp_lab, argv, "dhcpd")
    wait_udp_bound(67, timeout=15, proc=server.proc, netns=dhcp_lab.server.name)
    first = Udhcpc(dhcp_lab, 0, name="u1")
    assert first.wait_event("bound", timeout=30)["ip"].startswith("10.77.0.1")

    mac = dhcp_lab.client_mac(1)
    config.write_text(  # port is restart-only: kept and named, the rest applies (issue 17)
        f'range = ["10.77.0.100", "10.77.0.120"]\nhosts = ["{mac}=10.77.0.50,fixed"]\n'
        "port = 1067\ndrain = 3\n"
    )
    server.proc.send_signal(signal.SIGHUP)
    line = "reloaded: 1 static host(s), lease time 3600 s; kept until a restart: port, drain"
    wait_for(lambda: line in server.output(), 15, "the reload log line")
    second = Udhcpc(dhcp_lab, 1, name="u2")
    assert second.wait_event("bound", timeout=30)["ip"] == "10.77.0.50"
    first.proc.stop()
    second.proc.stop()
    assert server.proc.poll() is None  # still the same process, still serving
    assert server.stop() == 0


def test_dhcpd_does_not_take_port_67_from_dnsmasq(dhcp_lab: Lab, state: Path) -> None:
    dnsmasq = require_tool("dnsmasq")
    argv = [
        dnsmasq,
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--port=0",
        f"--interface={dhcp_lab.server_if}",
        "--dhcp-range=10.77.0.100,10.77.0.120,1h",
        f"--dhcp-leasefile={state / 'dnsmasq.leases'}",
        f"--pid-file={state / 'dnsmasq.pid'}",
        "--user=root",
    ]
    other = start(dhcp_lab, argv, "dnsmasq")
    wait_udp_bound(67, timeout=15, proc=other.proc, netns=dhcp_lab.server.name)
    res = dhcp_lab.server.run(
        script("dhcpd"), "-a", "--leases", str(state / "l.db"), dhcp_lab.server_if,
        "pxelinux.0", check=False,
    )  # fmt: skip
    assert res.returncode == 1, res.stderr
    assert res.stderr.count("\n") == 1
    assert f"UDP port 67 on {dhcp_lab.server_if} is already in use" in res.stderr
    assert other.proc.poll() is None
    # dnsmasq still answers: nobody took its port.
    client = Udhcpc(dhcp_lab, 0)
    assert client.wait_event("bound", timeout=30)["ip"].startswith("10.77.0.1")
    client.proc.stop()
    time.sleep(0)


def test_pxed_as_nobody_binds_67_69_4011_and_serves(
    dhcp_lab: Lab, state: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    nobody = pwd.getpwnam("nobody")
    root = state / "root"
    root.mkdir(mode=0o755)
    (root / "pxelinux.0").write_bytes(b"boot" * 3000)
    (root / "pxelinux.0").chmod(0o644)
    leases = state / "pxed" / "leases.sqlite"
    leases.parent.mkdir()
    argv = [script("pxed"), "-a", "-v", "--user", "nobody", "--leases", str(leases),
            dhcp_lab.server_if, str(root), "pxelinux.0"]  # fmt: skip
    server = start_ready(dhcp_lab, argv, "pxed", notify_socket)
    for port in (67, 69, 4011):
        wait_udp_bound(port, timeout=0.5, netns=dhcp_lab.server.name)
    assert_unprivileged(server.pid, nobody.pw_uid)
    client = Udhcpc(dhcp_lab, 0)
    assert client.wait_event("bound", timeout=30)["boot_file"] == "pxelinux.0"
    ns, _ = dhcp_lab.clients[0]
    tftp = require_tool("tftp")
    work = state / "client"
    work.mkdir()
    # udhcpc's hook reports the lease, then configures it: wait for the address.
    wait_for(lambda: "10.77.0." in ns.run("ip", "-4", "addr").stdout, 15, "the address")
    ns.run("sh", "-c", f"cd {work} && {tftp} {SERVER_IP} -m octet -c get pxelinux.0")
    assert (work / "pxelinux.0").read_bytes() == b"boot" * 3000
    assert leases.stat().st_uid == nobody.pw_uid
    client.proc.stop()
    # SIGTERM while a slow reader is at block 5 of 24: the transfer is drained.
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import slow_tftp, os, signal\n"
        f"r = slow_tftp.read({SERVER_IP!r}, 69, 'pxelinux.0', delay=0.1, on_block=lambda n: "
        f"n == 5 and os.kill({server.pid}, signal.SIGTERM))\n"
        "print(len(r.data), r.error)"
    )
    got = ns.run(sys.executable, "-c", code, timeout=60).stdout.strip()
    assert got == "12000 None"
    assert server.proc.wait(30) == 0
    server.stop()
    log = server.output()
    assert "Traceback" not in log and "ERROR" not in log, log


def test_bootpd_as_nobody_keeps_no_root_and_answers_bootp(
    dhcp_lab: Lab, state: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    nobody = pwd.getpwnam("nobody")
    leases = state / "bootp" / "leases.sqlite"
    leases.parent.mkdir()
    argv = [script("bootpd"), "-v", "--user", "nobody", "--leases", str(leases),
            dhcp_lab.server_if, "pxelinux.0"]  # fmt: skip
    server = start_ready(dhcp_lab, argv, "bootpd", notify_socket)
    assert_unprivileged(server.pid, nobody.pw_uid)
    iface = dhcp_lab.clients[0][1]
    replies = dhcp_lab.probe(0, "bootp", "--iface", iface, "--mac", "02:00:00:00:bb:01")
    reply = replies[-1]["reply"]
    assert isinstance(reply, dict) and str(reply["yiaddr"]).startswith("10.77.0."), replies
    assert leases.stat().st_uid == nobody.pw_uid
    assert server.stop() == 0
    log = server.output()
    assert "Traceback" not in log and "ERROR" not in log, log


def test_dhcpd_non_root_with_the_units_capabilities_serves_67(
    dhcp_lab: Lab, state: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    """What dhcpd@.service gives it: DynamicUser= plus AmbientCapabilities=."""
    setpriv = require_tool("setpriv")
    nobody = pwd.getpwnam("nobody")
    leases = state / "dyn"
    leases.mkdir()
    os.chown(leases, nobody.pw_uid, nobody.pw_gid)
    caps = "+net_bind_service,+net_raw"
    lease_file = str(leases / "leases.sqlite")
    argv = [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
            f"--inh-caps={caps}", f"--ambient-caps={caps}", script("dhcpd"), "-a", "-v",
            "--leases", lease_file, dhcp_lab.server_if, "pxelinux.0"]  # fmt: skip
    server = start_ready(dhcp_lab, argv, "dyn", notify_socket)
    fields = assert_unprivileged(server.pid, nobody.pw_uid)
    assert int(fields["CapAmb"], 16) == 0
    client = Udhcpc(dhcp_lab, 0)
    assert client.wait_event("bound", timeout=30)["ip"].startswith("10.77.0.")
    client.proc.stop()
    assert server.stop() == 0
    assert "Traceback" not in server.output()
