"""Two DHCPv6 servers sharing their bindings in PostgreSQL (issue 25 item 3): ISC
dhclient -6 binds through them, the server that holds its binding is killed with
SIGKILL; the client's Renew names the dead server and goes unanswered (RFC 8415), and
its Rebind gets the same address from the other server, which knows the binding only
through the database.

Topology: the client namespace holds a bridge; each server namespace is a veth port
on it (one link, two servers). Short lifetimes (valid 20 s: T1 5 s, T2 8 s) so the
Rebind comes within the test's bounds."""

from __future__ import annotations

import signal
import sys
from ipaddress import IPv6Address
from pathlib import Path

import psycopg

from support import VENV_BIN, Netns, Process, add_veth, require_root, wait_udp_bound
from support.postgres import PgCluster

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "dhcp6"))
from test_dhcp6_clients import PREFIX, Lab6, bound_event, run_dhclient, wait_for

SERVERS = ("fd00:77::1", "fd00:77::2")


def events_of(path: Path, reason: str) -> list[dict[str, str]]:
    import json

    if not path.exists():
        return []
    lines = [json.loads(x) for x in path.read_text().splitlines() if x]
    return [e for e in lines if e.get("reason") == reason]


def test_a_rebind_gets_the_same_address_from_the_other_server(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    require_root()
    url = pg_cluster.uri(pg_cluster.create_database())
    client = Netns("d6c")
    spaces = [Netns("d6s"), Netns("d6t")]
    procs: list[Process] = []
    try:
        for ns in (client, *spaces):
            ns.run("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0")
            ns.run("sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
        bridge = "br" + client.name[-8:]
        client.run("ip", "link", "add", bridge, "type", "bridge")
        client.run("ip", "link", "set", bridge, "up")
        ifaces = []
        for n, (ns, address) in enumerate(zip(spaces, SERVERS, strict=True)):
            inner, outer = f"vs{n}{ns.name[-7:]}", f"vp{n}{ns.name[-7:]}"
            add_veth(ns, inner, client, outer)
            client.run("ip", "link", "set", outer, "master", bridge)
            client.run("ip", "link", "set", outer, "up")
            ns.run("ip", "addr", "add", f"{address}/64", "dev", inner, "nodad")
            ns.run("ip", "link", "set", inner, "up")
            ifaces.append(inner)
        wait_for(
            lambda: all(
                "forwarding" in client.run("bridge", "link", "show", "dev", f"vp{n}{ns.name[-7:]}")
                .stdout
                for n, ns in enumerate(spaces)
            ),
            10,
            "the bridge ports to forward",
        )

        def start(n: int) -> Process:
            ns = spaces[n]
            python = str(VENV_BIN / "python")
            argv = [python, "-m", "ptftpd.dhcp6", ifaces[n], "--leases", url]
            argv += ["--no-ra", "--lease-time", "20", "-D"]
            proc = Process(ns.popen_argv(argv), tmp_path / f"server{n}-{len(procs)}.log")
            procs.append(proc)
            wait_udp_bound(547, timeout=15, proc=proc.proc, netns=ns.name)
            return proc

        servers = [start(0), start(1)]
        lab = Lab6(spaces[0], client, ifaces[0], bridge, tmp_path)
        dhclient, events = run_dhclient(lab)
        procs.append(dhclient)
        address = IPv6Address(bound_event(events)["new_ip6_address"])
        assert address in PREFIX
        leased = [f"leased {address}" in s.output() for s in servers]
        assert sorted(leased) == [False, True], leased  # one server bound it
        holder = leased.index(True)
        servers[holder].stop(signal.SIGKILL)
        # Renew at T1 (5 s) names the dead server: unanswered; Rebind at T2 (8 s).
        rebound = wait_for(lambda: events_of(events, "REBIND6"), 40, "a REBIND6 event")
        assert isinstance(rebound, list)
        assert rebound[0]["new_ip6_address"] == str(address), rebound
        assert not events_of(events, "RENEW6"), "the dead server cannot have renewed it"
        other = servers[1 - holder].output()
        assert f"rebound {address}" in other, other[-3000:]
        with psycopg.connect(url) as conn:
            bound = conn.execute(
                "SELECT address FROM leases6 WHERE state = 'bound'"
            ).fetchall()
        assert [IPv6Address(str(a)) for (a,) in bound] == [address]
    finally:
        for proc in reversed(procs):
            proc.stop(signal.SIGTERM, timeout=5)
        for ns in (*spaces, client):
            ns.delete()
