"""Real dhcpd processes sharing one PostgreSQL lease database (issue 13).

Two servers with different server identifiers on one segment (the lab's server
namespace and a second one on its bridge), scripted clients in a client namespace
(tests/dhcp/dhcpprobe.py `crowd`), the throw-away cluster of tests/support/postgres.py.
"""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
from dhcplab import SERVER_IP, Lab, lab, wait_for

from ptftpd.dhcp.pg_schema import LATEST_VERSION
from support import Process, script, wait_udp_bound
from support.postgres import PgCluster

SECOND_IP = "10.77.0.2"
RANGE = ("--range", "10.77.0.3", "10.77.0.254")


def crowd(the_lab: Lab, *args: str, timeout: float) -> list[dict[str, Any]]:
    iface = the_lab.clients[0][1]
    return the_lab.probe(
        0, "crowd", "--iface", iface, "--timeout", str(timeout), *args, timeout=timeout + 30
    )


def rebind(the_lab: Lab, clients: list[dict[str, Any]], *args: str, timeout: float) -> Any:
    """The `clients` (crowd results) REBIND their addresses by broadcast."""
    # A rebinding client owns its address: the ACK is sent to it (ciaddr).
    client_ns, client_if = the_lab.clients[0]
    batch = "".join(f"addr add {r['address']}/24 dev {client_if}\n" for r in clients)
    subprocess.run(["ip", "-n", client_ns.name, "-batch", "-"], input=batch, text=True, check=True)
    pairs = [f"{r['mac']}={r['address']}" for r in clients]
    return crowd(the_lab, "--rebind", *pairs, *args, timeout=timeout)


def bound_rows(uri: str) -> list[tuple[str, bytes]]:
    with psycopg.connect(uri) as conn:
        rows = conn.execute(
            "SELECT host(address), client FROM leases WHERE state = 'bound'"
        ).fetchall()
    return [(str(a), bytes(c)) for a, c in rows]


def assert_no_duplicates(uri: str, results: list[dict[str, Any]]) -> None:
    addresses = [r["address"] for r in results if r["address"]]
    assert len(addresses) == len(set(addresses)), Counter(addresses).most_common(3)
    rows = bound_rows(uri)
    assert len({a for a, _ in rows}) == len(rows)
    clients = Counter(c for _, c in rows)
    assert max(clients.values(), default=1) == 1, clients.most_common(3)


def test_two_servers_share_leases_and_take_over(tmp_path: Path, pg_database: str) -> None:
    """20 clients lease from the first server alone, then the second starts and 200
    clients DORA against both at once: 0 duplicates, one lease each (the second server
    knows the first one's leases only through the database); kill -9 one: its clients'
    REBINDING broadcasts are ACKed by the other, same address."""
    with lab(tmp_path, 1) as the_lab:
        ns2, if2 = the_lab.add_server(SECOND_IP)
        first = the_lab.dhcpd("-a", *RANGE, lease_url=pg_database, name="a")
        early = crowd(the_lab, "--count", "20", "--seed", "6", timeout=60)
        the_lab.dhcpd("-a", *RANGE, lease_url=pg_database, name="b", netns=ns2, iface=if2)
        spread = ("--prefer", SERVER_IP, SECOND_IP)
        results = crowd(the_lab, "--count", "200", "--seed", "7", *spread, timeout=120)
        assert len(results) == 200
        unbound = [r for r in early + results if not r["address"]]
        assert not unbound, unbound[:3]
        assert_no_duplicates(pg_database, early + results)
        rows = dict(bound_rows(pg_database))
        assert len(rows) == 220
        servers = Counter(r["server"] for r in results)
        assert set(servers) == {SERVER_IP, SECOND_IP}, servers

        first.stop(signal.SIGKILL)
        orphans = [r for r in results if r["server"] == SERVER_IP]
        rebound = rebind(the_lab, orphans, timeout=60)
        assert len(rebound) == len(orphans)
        for before, after in zip(orphans, rebound, strict=True):
            assert after["mac"] == before["mac"]
            assert after["address"] == before["address"], after
            assert after["server"] == SECOND_IP, after
        assert_no_duplicates(pg_database, early + results)


THIRD_IP = "10.77.0.9"


def test_two_servers_with_default_settings_share_one_subnet(
    tmp_path: Path, pg_database: str
) -> None:
    """Issue 25 item 1: `dhcpd -a --leases postgresql://...` twice, nothing else: both
    start and serve; neither server's own address goes to a client (the database
    reserves each for everyone); a third server whose pool differs is refused with the
    difference, not two equal-looking summaries."""
    with lab(tmp_path, 1) as the_lab:
        ns2, if2 = the_lab.add_server(SECOND_IP)
        the_lab.dhcpd("-a", lease_url=pg_database, name="a")
        the_lab.dhcpd("-a", lease_url=pg_database, name="b", netns=ns2, iface=if2)
        spread = ("--prefer", SERVER_IP, SECOND_IP)
        results = crowd(the_lab, "--count", "60", "--seed", "11", *spread, timeout=90)
        assert [r for r in results if not r["address"]] == []
        assert {r["server"] for r in results} == {SERVER_IP, SECOND_IP}
        assert_no_duplicates(pg_database, results)
        assert not {SERVER_IP, SECOND_IP} & {r["address"] for r in results}
        with psycopg.connect(pg_database) as conn:
            reserved = conn.execute(
                "SELECT host(address), owner FROM leases WHERE state = 'server' ORDER BY 1"
            ).fetchall()
        assert reserved == [(SERVER_IP, SERVER_IP), (SECOND_IP, SECOND_IP)]

        ns3, if3 = the_lab.add_server(THIRD_IP)
        argv = [script("dhcpd"), "-a", "-g", "10.77.0.7", "--leases", pg_database]
        res = ns3.run(*argv, if3, "pxelinux.0", check=False, timeout=60)
        assert res.returncode == 1, res
        assert res.stderr.count("\n") == 1, res.stderr
        assert "excluded only here: 10.77.0.7" in res.stderr, res.stderr
        assert "only in the database" not in res.stderr and "range 10" not in res.stderr


def test_database_lost_and_back_while_serving(
    tmp_path: Path, pg_cluster: PgCluster, pg_database: str
) -> None:
    """Database stopped mid-run: no reply while it is down, one line when it goes and
    one when it is back, service resumes by itself, no duplicate, no traceback."""
    with lab(tmp_path, 1) as the_lab:
        server = the_lab.dhcpd("-a", *RANGE, lease_url=pg_database, name="a")
        before = crowd(the_lab, "--count", "20", "--seed", "2", timeout=60)
        assert all(r["address"] for r in before)
        pg_cluster.stop()
        try:
            down = crowd(the_lab, "--count", "5", "--seed", "3", "--retry", "2", timeout=8)
            assert [r["address"] for r in down] == [None] * 5
            assert all(r["tries"] >= 2 for r in down)
            wait_for(lambda: "lost" in server.output(), 10, "the lost-database line")
        finally:
            pg_cluster.start()
        after = crowd(the_lab, "--count", "5", "--seed", "3", "--retry", "2", timeout=90)
        assert all(r["address"] for r in after), (after, server.output()[-6000:])
        assert_no_duplicates(pg_database, before + after)
        log = server.output()
        assert log.count("lease database") == 2, log[-2000:]
        assert "is back" in log
        assert "Traceback" not in log


def run_dhcpd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [script("dhcpd"), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_init_db_creates_the_schema_and_exits(pg_database: str) -> None:
    for _ in range(2):  # a second run finds it up to date
        res = run_dhcpd("--init-db", "--leases", pg_database, "127.0.0.1", "pxelinux.0")
        assert res.returncode == 0, res.stderr
        assert res.stdout.count("\n") == 1
        assert f"lease schema version {LATEST_VERSION}" in res.stdout
    with psycopg.connect(pg_database) as conn:
        assert conn.execute("SELECT count(*) FROM leases").fetchone() == (0,)


def test_unreachable_database_at_start_is_one_line(tmp_path: Path) -> None:
    nowhere = f"postgresql://ptftpd@/leases?host={tmp_path}&port=1"
    for extra in (("--init-db",), ("--port", "6767")):
        res = run_dhcpd(*extra, "--leases", nowhere, "127.0.0.1", "pxelinux.0")
        assert res.returncode == 1, res
        assert res.stderr.startswith("dhcpd: error: cannot reach postgresql"), res.stderr
        assert res.stderr.count("\n") == 1, res.stderr
    res = run_dhcpd("--init-db", "127.0.0.1", "pxelinux.0")
    assert res.returncode == 1
    assert "--init-db needs --leases postgresql://" in res.stderr


def test_pxed_takes_the_database_uri(tmp_path: Path, pg_database: str) -> None:
    """pxed reuses dhcpd's settings: its leases go to the shared database too."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "pxelinux.0").write_bytes(b"\0" * 64)
    with lab(tmp_path, 1) as the_lab:
        argv = [script("pxed"), "-D", "-a", *RANGE, "--leases", pg_database]
        argv += [the_lab.server_if, str(root), "pxelinux.0"]
        proc = Process(the_lab.server.popen_argv(argv), tmp_path / "pxed.log")
        the_lab.procs.append(proc)
        wait_udp_bound(67, timeout=15, proc=proc.proc, netns=the_lab.server.name)
        results = crowd(the_lab, "--count", "5", "--seed", "4", timeout=60)
        assert all(r["address"] for r in results), proc.output()[-2000:]
        assert sorted(a for a, _ in bound_rows(pg_database)) == sorted(
            str(r["address"]) for r in results
        )
