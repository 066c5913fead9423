"""Real clients (busybox udhcpc, ISC dhclient) against `dhcpd`/`bootpd` on veth pairs
inside namespaces these tests create. No DHCP packet leaves those namespaces."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from dhcplab import SERVER_IP, Dhclient, Udhcpc, lab, wait_for

from ptftpd.dhcp.options import pxe_vendor_options
from support import Netns, Process, add_veth, missing, require_tool, script, wait_udp_bound

pytestmark = pytest.mark.netns

PXE_VENDOR = "PXEClient:Arch:00000:UNDI:002001"


def test_pxe_only_without_all_then_pxe_client_served(tmp_path: Path) -> None:
    with lab(tmp_path, 1) as lb:
        server = lb.dhcpd()
        plain = Udhcpc(lb, 0, "-q", "-n", "-t", "2", name="plain")
        assert plain.proc.proc.wait(15) != 0, "a non-PXE client must get no answer without -a"
        assert not [e for e in plain.events() if e["reason"] == "bound"]
        assert "not PXE" in server.output()

        pxe = Udhcpc(lb, 0, "-q", "-V", PXE_VENDOR, name="pxe")
        got = pxe.wait_event("bound")
        assert IPv4Address(got["ip"]) in {IPv4Address(f"10.77.0.{i}") for i in range(2, 255)}
        assert got["subnet"] == "255.255.255.0"
        assert got["router"] == SERVER_IP
        assert got["boot_file"] == "pxelinux.0"
        assert got["siaddr"] == SERVER_IP
        assert got["serverid"] == SERVER_IP
        assert pxe.proc.proc.wait(10) == 0
        out = server.output()
        assert f"DHCPACK {got['ip']}" in out and "file=pxelinux.0" in out


def test_all_two_clients_renew_release_rediscover(tmp_path: Path) -> None:
    with lab(tmp_path, 2) as lb:
        server = lb.dhcpd("-a", "-n", "10.77.0.53")
        c0 = Udhcpc(lb, 0, name="c0")
        c1 = Udhcpc(lb, 1, name="c1")
        a0 = c0.wait_event("bound")
        a1 = c1.wait_event("bound")
        assert a0["ip"] != a1["ip"], "two clients must get different addresses"
        assert a0["dns"].strip() == "10.77.0.53"
        assert a0["boot_file"] == "pxelinux.0"

        c0.signal(signal.SIGUSR1)  # renew now
        renewed = c0.wait_event("renew")
        assert renewed["ip"] == a0["ip"]

        c0.signal(signal.SIGUSR2)  # release
        wait_for(lambda: f"DHCPRELEASE {a0['ip']}" in server.output(), 10, "release logged")
        c0.signal(signal.SIGUSR1)  # and discover again
        again = c0.wait_event("bound", count=2)
        assert again["ip"] == a0["ip"], "a returning client gets its previous address"
        assert again["ip"] != a1["ip"]


def test_dhclient_gets_boot_options_and_renews(tmp_path: Path) -> None:
    with lab(tmp_path, 1) as lb:
        server = lb.dhcpd(
            "-a",
            "--lease-time",
            "6",
            "-g",
            "10.77.0.254",
            "-t",
            "10.77.0.9",
            "-n",
            "10.77.0.53",
            "-n",
            "10.77.0.54",
        )
        client = Dhclient(lb, 0, vendor=PXE_VENDOR)
        client.start()
        bound = client.wait_event(("BOUND",))
        assert bound["new_subnet_mask"] == "255.255.255.0"
        assert bound["new_routers"] == "10.77.0.254"
        assert bound["new_domain_name_servers"] == "10.77.0.53 10.77.0.54"
        assert bound["new_filename"] == "pxelinux.0"
        assert bound["new_bootfile_name"] == "pxelinux.0"
        assert bound["new_tftp_server_name"] == "10.77.0.9"
        assert bound["new_next_server"] == "10.77.0.9"  # siaddr
        assert bound["new_vendor_encapsulated_options"] == "6:1:8:ff"  # download directly
        assert bound["new_vendor_class_identifier"] == "PXEClient"
        # T1 is 3 s: dhclient renews by unicast from its new address.
        renewed = client.wait_event(("RENEW",), timeout=20)
        assert renewed["new_ip_address"] == bound["new_ip_address"]
        client.stop()
        client.release()
        wait_for(
            lambda: f"DHCPRELEASE {bound['new_ip_address']}" in server.output(),
            10,
            "release logged",
        )


def test_kill9_and_restart_keeps_every_lease(tmp_path: Path) -> None:
    leases = tmp_path / "persist.sqlite"
    with lab(tmp_path, 3) as lb:
        server = lb.dhcpd("-a", leases=leases)
        first = [Udhcpc(lb, i, "-q", name=f"first{i}").wait_event("bound")["ip"] for i in (0, 1)]
        assert first[0] != first[1]
        server.stop(signal.SIGKILL)
        rows = (
            sqlite3.connect(leases)
            .execute("SELECT address FROM leases WHERE state = 'bound'")
            .fetchall()
        )
        assert sorted(r[0] for r in rows) == sorted(first)

        lb.dhcpd("-a", leases=leases, name="dhcpd2")
        newcomer = Udhcpc(lb, 2, "-q", name="newcomer").wait_event("bound")["ip"]
        assert newcomer not in first, "a persisted lease was handed to another client"
        again = [Udhcpc(lb, i, "-q", name=f"again{i}").wait_event("bound")["ip"] for i in (0, 1)]
        assert again == first


def test_relayed_request_is_answered_to_the_relay(tmp_path: Path) -> None:
    with lab(tmp_path, 1) as lb:
        ns, iface = lb.clients[0]
        ns.run("ip", "addr", "add", "10.77.0.250/24", "dev", iface)
        server = lb.dhcpd()  # PXE only: the relayed client says PXEClient
        replies = lb.probe(
            0,
            "relay",
            "--giaddr",
            "10.77.0.250",
            "--server",
            SERVER_IP,
            "--mac",
            "02:00:00:00:aa:01",
            "--vendor",
            PXE_VENDOR,
            "--arch",
            "7",
            "--hostname",
            "node7",
        )
        assert [r["step"] for r in replies] == ["offer", "ack"], server.output()
        offer, ack = replies[0]["reply"], replies[1]["reply"]
        assert isinstance(offer, dict) and isinstance(ack, dict)
        assert offer["type"] == "OFFER" and ack["type"] == "ACK"
        assert ack["giaddr"] == "10.77.0.250"
        assert ack["yiaddr"] == offer["yiaddr"]
        assert ack["file"] == "pxelinux.0"
        options = ack["options"]
        assert isinstance(options, dict)
        assert options["82"] == ("0106" + b"port-7".hex() + "0204" + b"sw01".hex())
        assert options["60"] == b"PXEClient".hex()
        assert options["43"] == pxe_vendor_options().hex()
        # One line per event with type, address, MAC, host name, architecture, boot file.
        assert (
            f"DHCPACK {ack['yiaddr']} mac=02:00:00:00:aa:01 host=node7 arch=EFI x64 "
            "file=pxelinux.0" in server.output()
        )


def test_bootpd_answers_bootp_request(tmp_path: Path) -> None:
    root = tmp_path / "tftp"
    root.mkdir()
    (root / "boot.img").write_bytes(b"x" * 1500)
    with lab(tmp_path, 1) as lb:
        iface = lb.clients[0][1]
        mac = lb.client_mac(0)
        server = lb.dhcpd(
            "-t",
            "10.77.0.9",
            "-g",
            "10.77.0.254",
            "-n",
            "10.77.0.53",
            "--root",
            str(root),
            "--host",
            f"{mac}=10.77.0.20,node20",
            tool="bootpd",
            bootfile="boot.img",
            name="bootpd",
        )
        replies = lb.probe(0, "bootp", "--iface", iface, "--mac", mac)
        assert replies and replies[0]["reply"], server.output()
        reply = replies[0]["reply"]
        assert isinstance(reply, dict)
        assert reply["type"] is None  # BOOTP, not DHCP
        assert reply["yiaddr"] == "10.77.0.20"
        assert reply["siaddr"] == "10.77.0.9"
        assert reply["sname"] == "10.77.0.9"
        assert reply["file"] == "boot.img"
        options = reply["options"]
        assert isinstance(options, dict)
        assert options["1"] == "ffffff00"
        assert options["3"] == IPv4Address("10.77.0.254").packed.hex()
        assert options["6"] == IPv4Address("10.77.0.53").packed.hex()
        assert options["12"] == b"node20".hex()
        assert options["13"] == "0003"  # 1500 bytes in 512-byte blocks
        assert "53" not in options and "51" not in options

        other = lb.probe(0, "bootp", "--iface", iface, "--mac", "02:00:00:00:bb:02", "--no-cookie")
        assert other and other[0]["reply"], server.output()
        reply2 = other[0]["reply"]
        assert isinstance(reply2, dict)
        assert reply2["yiaddr"] not in ("0.0.0.0", "10.77.0.20", SERVER_IP)
        assert "BOOTREPLY" in server.output()


def test_malformed_packets_do_not_stop_serving(tmp_path: Path) -> None:
    with lab(tmp_path, 1) as lb:
        ns, iface = lb.clients[0]
        ns.run("ip", "addr", "add", "10.77.0.251/24", "dev", iface)
        server = lb.dhcpd("-a")
        sent = lb.probe(0, "garbage", "--server", SERVER_IP, "--count", "200")
        assert sent and int(str(sent[0]["sent"])) > 200
        ns.run("ip", "addr", "flush", "dev", iface)
        got = Udhcpc(lb, 0, "-q", name="after").wait_event("bound")
        assert got["ip"]
        assert server.proc.poll() is None
        out = server.output()
        assert "drop" in out and "Traceback" not in out


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    dhcpd = script("dhcpd")
    cases = [
        [dhcpd, "no-such-if0", "pxelinux.0"],
        [dhcpd, "--host", "nonsense", "lo", "pxelinux.0"],
        [dhcpd, "--range", "10.0.0.1", "10.0.0.9", "lo", "pxelinux.0"],
        [dhcpd, "--config", str(tmp_path / "missing.toml"), "lo", "pxelinux.0"],
    ]
    cases.append([dhcpd, "-g", "1.2.3", "lo", "pxelinux.0"])
    cases.append([dhcpd])
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("range = [1,\n")
    cases.append([dhcpd, "--config", str(bad_toml), "lo", "pxelinux.0"])
    for argv in cases:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        # Usage errors (flags, settings) exit 2; a missing interface is not one.
        assert res.returncode == (1 if "no-such-if0" in argv else 2), (argv, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dhcpd: "), res.stderr
        if res.returncode == 2:  # a bad setting: where, what, and where to look
            assert lines[0].endswith(" (try --help)") and "error:" not in lines[0], res.stderr
        else:
            assert lines[0].startswith("dhcpd: error: "), res.stderr


def test_without_root_one_clear_line(tmp_path: Path) -> None:
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = require_tool("setpriv")
        prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
        probe = subprocess.run(
            [*prefix, sys.executable, "-c", "import ptftpd.cli.dhcpd"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if probe.returncode != 0:
            missing("this checkout is not readable by user nobody: cannot drop root")
    for tool in ("dhcpd", "bootpd"):
        argv = [*prefix, script(tool), "--leases", str(tmp_path / "l.sqlite"), "lo", "x"]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert res.returncode == 1, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "needs root" in lines[0], res.stderr


def test_instances_on_two_interfaces_each_serve_their_own(tmp_path: Path) -> None:
    with lab(tmp_path, 1) as lb:
        lb.server.run("ip", "link", "add", "dmy0", "type", "veth", "peer", "name", "dmy1")
        lb.server.run("ip", "link", "set", "dmy1", "up")
        lb.server.run("ip", "addr", "add", "10.78.0.1/24", "dev", "dmy0")
        lb.server.run("ip", "link", "set", "dmy0", "up")
        other = lb.dhcpd("-a", iface="dmy0", name="other")
        main = lb.dhcpd("-a")
        got = Udhcpc(lb, 0, "-q", name="one").wait_event("bound")
        assert got["ip"].startswith("10.77.0."), got
        assert got["serverid"] == SERVER_IP
        wait_for(lambda: "DHCPACK" in main.output(), 10, "ACK logged by the bridge's server")
        assert other.proc.poll() is None and main.proc.poll() is None
        assert "DHCPOFFER" not in other.output() and "serving DHCP on dmy0" in other.output()


def test_real_bootp_client_bootpc(tmp_path: Path) -> None:
    """Debian's bootpc (an RFC 951 client with a 64-byte vendor area) against bootpd
    with more settings than 64 bytes hold: it gets its address, mask, router, all three
    DNS servers, host name and boot file, in a reply no longer than its request."""
    bootpc = require_tool("bootpc")
    with lab(tmp_path, 1) as lb:
        ns, iface = lb.clients[0]
        mac = lb.client_mac(0)
        server = lb.dhcpd(
            "-t",
            "10.77.0.9",
            "-g",
            "10.77.0.254",
            *("-n", "10.77.0.53", "-n", "10.77.0.54", "-n", "10.77.0.55"),
            "--domain",
            "rack-17.lab.example.org",
            "--host",
            f"{mac}=10.77.0.20,build-node-0042",
            tool="bootpd",
            bootfile="boot.img",
            name="bootpd",
        )
        # bootpc sends from 0.0.0.0 through the kernel's UDP stack: it needs a route
        # for the limited broadcast, and asks for a broadcast reply (RFC 1542).
        ns.run("ip", "route", "add", "255.255.255.255/32", "dev", iface)
        done = ns.run(
            bootpc,
            "--dev",
            iface,
            "--timeoutwait",
            "15",
            "--returniffail",
            "--serverbcast",
            check=False,
            timeout=40,
        )
        assert done.returncode == 0, (done.stdout, done.stderr, server.output())
        got = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
        assert got["IPADDR"] == "'10.77.0.20'"
        assert got["NETMASK"] == "'255.255.255.0'"
        assert got["GATEWAYS"] == "'10.77.0.254'"
        assert got["DNSSRVS"] == "'10.77.0.53 10.77.0.54 10.77.0.55'"
        assert got["HOSTNAME"] == "'build-node-0042'"
        assert got["BOOTFILE"] == "'boot.img'" and got["SERVER"] == "'10.77.0.9'"
        # The domain did not fit the 64-byte vendor area: left out, not overflowed.
        assert "rack-17" not in done.stdout
        sizes = [
            int(line.rsplit(" ", 2)[-2])
            for line in server.output().splitlines()
            if "send BOOTREPLY" in line
        ]
        assert sizes and max(sizes) <= 300, server.output()


def test_real_relay_serves_a_second_subnet(tmp_path: Path) -> None:
    """ISC dhcrelay between a rack and the server: udhcpc on 10.88.0.0/24 gets an
    address from that subnet's [[subnet]] range, its router and DNS, through the relay
    (which adds option 82; the server echoes it, and the relay strips it again)."""
    dhcrelay = require_tool("dhcrelay")
    conf = tmp_path / "dhcpd.toml"
    conf.write_text(
        "all = true\n"
        "[[subnet]]\n"
        'network = "10.88.0.0/24"\n'
        'range = ["10.88.0.100", "10.88.0.120"]\n'
        'gateway = "10.88.0.1"\n'
        'dns = ["10.88.0.53"]\n'
        'bootfile = "rack88.0"\n'
    )
    with lab(tmp_path, 1) as lb:
        relay, up = lb.clients[0]
        rack = Netns("dhr")
        lb.clients.append((rack, "eth0"))  # removed with the lab
        down = "rd" + rack.name[-8:]
        add_veth(relay, down, rack, "eth0")
        relay.run("ip", "addr", "add", "10.77.0.2/24", "dev", up)
        relay.run("ip", "addr", "add", "10.88.0.1/24", "dev", down)
        relay.run("ip", "link", "set", down, "up")
        rack.run("ip", "link", "set", "eth0", "up")
        lb.server.run("ip", "route", "add", "10.88.0.0/24", "via", "10.77.0.2")
        server = lb.dhcpd("--config", str(conf))
        agent = Process(
            relay.popen_argv(
                [dhcrelay, "-4", "-d", "--no-pid", "-a", "-iu", up, "-id", down, SERVER_IP]
            ),
            tmp_path / "dhcrelay.log",
        )
        lb.procs.append(agent)
        wait_udp_bound(67, timeout=15, proc=agent.proc, netns=relay.name)
        got = Udhcpc(lb, 1, "-q", name="rack").wait_event("bound", timeout=40)
        first, last = IPv4Address("10.88.0.100"), IPv4Address("10.88.0.120")
        assert first <= IPv4Address(got["ip"]) <= last, (got, server.output(), agent.output())
        assert got["subnet"] == "255.255.255.0" and got["router"] == "10.88.0.1"
        assert got["dns"] == "10.88.0.53" and got["serverid"] == SERVER_IP
        assert got["boot_file"] == "rack88.0"
        out = server.output()
        assert f"DHCPACK {got['ip']}" in out
        assert "giaddr=10.88.0.1" in out and "82: '" in out  # relayed, with option 82


def test_silent_to_another_servers_client_on_the_same_wire(tmp_path: Path) -> None:
    """Peaceful coexistence (RFC 2131 4.3.2): dnsmasq is the site's server; dhclient,
    holding a dnsmasq lease, reboots (INIT-REBOOT) while our dhcpd runs beside it. Our
    server has no record of the client and must stay silent instead of NAKing it off
    its lease; dhclient keeps its address."""
    dnsmasq = require_tool("dnsmasq")
    with lab(tmp_path, 2) as lb:
        site, site_if = lb.clients[1]
        site.run("ip", "addr", "add", "10.77.0.2/24", "dev", site_if)
        peer = Process(
            site.popen_argv(
                [
                    dnsmasq,
                    "--no-daemon",
                    "--conf-file=/dev/null",
                    "--port=0",
                    f"--interface={site_if}",
                    "--bind-interfaces",
                    "--dhcp-range=10.77.0.200,10.77.0.210,1h",
                    f"--dhcp-leasefile={tmp_path / 'dnsmasq.leases'}",
                    "--no-ping",
                    "--log-dhcp",
                    "--pid-file=",
                ]
            ),
            tmp_path / "dnsmasq.log",
        )
        lb.procs.append(peer)
        wait_udp_bound(67, timeout=15, proc=peer.proc, netns=site.name)
        client = Dhclient(lb, 0)
        client.start()
        first = client.wait_event(("BOUND",))["new_ip_address"]
        assert first.startswith("10.77.0.2"), first
        # dhclient runs its BOUND hook before it writes the lease file: stopped in
        # between (a loaded machine), it would restart with no lease to reboot from.
        wait_for(
            lambda: client.lease_file.exists()
            and f"fixed-address {first};" in client.lease_file.read_text(),
            15,
            "dhclient's lease file",
        )
        client.stop()
        ours = lb.dhcpd("-a", "--range", "10.77.0.100", "10.77.0.150")
        client.start()
        again = client.wait_event(("REBOOT", "BOUND"), count=2, timeout=40)
        assert again["reason"] == "REBOOT" and again["new_ip_address"] == first, again
        wait_for(lambda: "silent" in ours.output(), 10, "our server's debug line")
        assert "DHCPNAK" not in ours.output(), ours.output()


def test_static_host_gets_the_lease_time_it_was_offered(tmp_path: Path) -> None:
    """udhcpc as a static host: the ACK's lease time is the configured one (it was
    the offered one too), not an infinite lease it would never renew."""
    with lab(tmp_path, 1) as lb:
        mac = lb.client_mac(0)
        lb.dhcpd("-a", "--lease-time", "600", "--host", f"{mac}=10.77.0.33,fixed33")
        got = Udhcpc(lb, 0, "-q", name="static").wait_event("bound")
        assert got["ip"] == "10.77.0.33" and got["hostname"] == "fixed33"
        assert got["lease"] == "600", got
