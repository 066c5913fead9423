"""Two DHCPv6 servers sharing their bindings in PostgreSQL (issue 25 item 3): ISC
dhclient -6 binds through them, the server that holds its binding is killed with
SIGKILL; the client's Renew names the dead server and goes unanswered (RFC 8415), and
its Rebind gets the same address from the other server, which knows the binding only
through the database.

Topology: the client namespace holds a bridge; each server namespace is a veth port
on it (one link, two servers). Short lifetimes (valid 20 s: T1 5 s, T2 8 s) so the
Rebind comes within the test's bounds."""

from __future__ import annotations

import re
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from pathlib import Path

import psycopg

from ptftpd.dhcp.balance import owners, pearson
from ptftpd.dhcp.peers import V6
from ptftpd.dhcp6.codec import ClientId, ElapsedTime, IaNa, Message, MsgType, encode
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


@dataclass
class TwoServers:
    client: Netns
    bridge: str
    spaces: list[Netns]
    ifaces: list[str]
    url: str
    tmp: Path
    procs: list[Process] = field(default_factory=list)

    def start(self, n: int, *extra: str) -> Process:
        ns = self.spaces[n]
        python = str(VENV_BIN / "python")
        argv = [python, "-m", "ptftpd.dhcp6", self.ifaces[n], "--leases", self.url]
        argv += ["--no-ra", "--lease-time", "20", "-D", *extra]
        proc = Process(ns.popen_argv(argv), self.tmp / f"server{n}-{len(self.procs)}.log")
        self.procs.append(proc)
        wait_udp_bound(547, timeout=15, proc=proc.proc, netns=ns.name)
        return proc


@contextmanager
def two_servers(pg_cluster: PgCluster, tmp_path: Path) -> Iterator[TwoServers]:
    """The client namespace's bridge with the two server namespaces as its ports."""
    require_root()
    url = pg_cluster.uri(pg_cluster.create_database())
    client = Netns("d6c")
    spaces = [Netns("d6s"), Netns("d6t")]
    lab = TwoServers(client, "br" + client.name[-8:], spaces, [], url, tmp_path)
    try:
        for ns in (client, *spaces):
            ns.run("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0")
            ns.run("sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
        client.run("ip", "link", "add", lab.bridge, "type", "bridge")
        client.run("ip", "link", "set", lab.bridge, "up")
        ports = []
        for n, (ns, address) in enumerate(zip(spaces, SERVERS, strict=True)):
            inner, outer = f"vs{n}{ns.name[-7:]}", f"vp{n}{ns.name[-7:]}"
            add_veth(ns, inner, client, outer)
            client.run("ip", "link", "set", outer, "master", lab.bridge)
            client.run("ip", "link", "set", outer, "up")
            ns.run("ip", "addr", "add", f"{address}/64", "dev", inner, "nodad")
            ns.run("ip", "link", "set", inner, "up")
            lab.ifaces.append(inner)
            ports.append(outer)
        wait_for(
            lambda: all(
                "forwarding" in client.run("bridge", "link", "show", "dev", port).stdout
                for port in ports
            ),
            10,
            "the bridge ports to forward",
        )
        yield lab
    finally:
        for proc in reversed(lab.procs):
            proc.stop(signal.SIGTERM, timeout=5)
        for ns in (*spaces, client):
            ns.delete()


def test_a_rebind_gets_the_same_address_from_the_other_server(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    with two_servers(pg_cluster, tmp_path) as two:
        servers = [two.start(0), two.start(1)]
        lab = Lab6(two.spaces[0], two.client, two.ifaces[0], two.bridge, tmp_path)
        dhclient, events = run_dhclient(lab)
        two.procs.append(dhclient)
        address = IPv6Address(bound_event(events)["new_ip6_address"])
        assert address in PREFIX
        leased = [f"leased {address}" in s.output() for s in servers]
        assert sorted(leased) == [False, True], leased  # one server bound it
        holder = leased.index(True)
        servers[holder].stop(signal.SIGKILL)
        # Renew at T1 (5 s) names the dead server: unanswered; Rebind at T2 (8 s),
        # answered by the other once the dead one's heartbeat is older than 3 s.
        rebound = wait_for(lambda: events_of(events, "REBIND6"), 40, "a REBIND6 event")
        assert isinstance(rebound, list)
        assert rebound[0]["new_ip6_address"] == str(address), rebound
        assert not events_of(events, "RENEW6"), "the dead server cannot have renewed it"
        other = servers[1 - holder].output()
        assert f"rebound {address}" in other, other[-3000:]
        with psycopg.connect(two.url) as conn:
            bound = conn.execute(
                "SELECT address FROM leases WHERE family(address) = 6 AND state = 'bound'"
            ).fetchall()
        assert [IPv6Address(str(a)) for (a,) in bound] == [address]


def server_id(log: str) -> str:
    found = re.search(r"server DUID ([0-9a-f:]+)\)", log)
    assert found is not None, log[-2000:]
    return V6 + found.group(1).replace(":", "")


def test_the_servers_split_the_solicits_by_duid(pg_cluster: PgCluster, tmp_path: Path) -> None:
    """60 Solicits, each from its own DUID: exactly one Advertise each, from the server
    of the DUID's RFC 3074 bucket."""
    with two_servers(pg_cluster, tmp_path) as two:
        servers = [two.start(0), two.start(1)]
        wait_for(lambda: all("2 live servers" in s.output() for s in servers), 10, "the split")
        ids = [server_id(s.output()) for s in servers]
        split = owners(ids)
        solicits, owner_of = [], {}
        for n in range(60):
            duid = bytes.fromhex("00030001") + bytes([2, 0, 0, 0, 0x66, n])
            ia = IaNa(n + 1, 0, 0, ())
            msg = Message(MsgType.SOLICIT, 0x660000 + n, (ClientId(duid), ElapsedTime(0), ia))
            solicits.append(encode(msg))
            owner_of[0x660000 + n] = next(s for s, b in split.items() if pearson(duid) in b)
        lab = Lab6(two.spaces[0], two.client, two.ifaces[0], two.bridge, tmp_path)
        replies = lab.probe(*solicits, wait=3.0)
        by_xid: dict[int, list[str]] = {}
        for r in replies:
            by_xid.setdefault(int(str(r["xid"])), []).append(V6 + str(r["server_id"]))
        assert sorted(by_xid) == sorted(owner_of), (len(by_xid), replies[:3])
        for xid, answered in by_xid.items():
            assert answered == [owner_of[xid]], (xid, answered)
        assert set(owner_of.values()) == set(ids)  # both servers had clients


def assert_dhcp6_peer_timeout(url: str, server: Process) -> None:
    """`server` (a DHCPv6 server on `url`, peer timeout 1.2 s) beats every 0.4 s, and a
    peer row that stops beating is dropped within 1.2 s + a beat, its log line naming
    1.2 s (with the value ignored: beats every 1 s, dropped after 3 s)."""
    peer = V6 + "feed"
    with psycopg.connect(url, autocommit=True) as conn:
        now = "extract(epoch FROM clock_timestamp())"
        conn.execute(
            f"INSERT INTO servers (id, addresses, heartbeat, started) "
            f"VALUES (%s, ARRAY[]::inet[], {now}, {now})",
            (peer,),
        )
        live = server.wait_output(f"peer {peer} is live", timeout=5)
        assert f"peer {peer} is live" in live, live[-2000:]
        conn.execute(f"UPDATE servers SET heartbeat = {now} WHERE id = %s", (peer,))
        silent_since = time.monotonic()
        beats: set[float] = set()
        mine = "SELECT heartbeat FROM servers WHERE id LIKE 'dhcp6:%%' AND id <> %s"
        while time.monotonic() - silent_since < 2.0:  # about five beats at 0.4 s
            row = conn.execute(mine, (peer,)).fetchone()
            assert row is not None
            beats.add(float(row[0]))
            time.sleep(0.05)
        out = server.wait_output(f"peer {peer} silent for", timeout=10)
    pattern = rf"peer {peer} silent for ([0-9.]+) s \(peer timeout ([0-9.]+) s\)"
    found = re.search(pattern, out)
    assert found, out[-2000:]
    assert float(found[2]) == 1.2, found[0]
    assert float(found[1]) < 2.5, found[0]  # 1.2 s + a 0.4 s beat (+ load)
    assert len(beats) >= 4, f"{len(beats)} heartbeats of its own in 2 s"


def test_peer_timeout_reaches_the_dhcp6_heartbeat(pg_cluster: PgCluster, tmp_path: Path) -> None:
    """`python -m ptftpd.dhcp6 --peer-timeout 1.2` (the settings field dhcpd and pxed
    take) sets the heartbeat interval (a third of it) and how soon a silent peer loses
    its share of the clients."""
    with two_servers(pg_cluster, tmp_path) as two:
        assert_dhcp6_peer_timeout(two.url, two.start(0, "--peer-timeout", "1.2"))
