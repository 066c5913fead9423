"""Two real dhcpd processes on one PostgreSQL split the clients by RFC 3074 buckets
(issue 25 item 2): one OFFER per DISCOVER, from the bucket's owner; kill -9 one and the
other takes its buckets within --peer-timeout; restart it and the split comes back."""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

from dhcplab import SERVER_IP, Lab, lab, wait_for
from test_pg_dhcpd import SECOND_IP, assert_no_duplicates, crowd, rebind

from ptftpd.dhcp.balance import owners, pearson
from support import Netns, free_udp_port, require_tool

PEER_TIMEOUT = 2.0
SPLIT = owners([SERVER_IP, SECOND_IP])


def owner_of(mac: str) -> str:
    bucket = pearson(bytes.fromhex(mac.replace(":", "")))
    return next(server for server, buckets in SPLIT.items() if bucket in buckets)


def assert_one_offer_each_from_the_owner(results: list[dict[str, Any]]) -> None:
    for r in results:
        assert r["address"], r
        owner = owner_of(str(r["mac"]))
        assert r["server"] == owner, (r, r.get("offers"))
        # One OFFER per DISCOVER sent (a client that retransmitted got one per try).
        assert r["offers"] == [owner] * int(r["tries"]), r


def scrape(ns: Netns, port: int) -> dict[str, float]:
    out = ns.run(require_tool("curl"), "-sf", f"http://127.0.0.1:{port}/metrics").stdout
    pattern = r"^(ptftpd_dhcp_balance_\S+) (\S+)$"
    return {k: float(v) for k, v in re.findall(pattern, out, re.M)}


def two_live(the_lab: Lab, *logs: Any) -> None:
    wait_for(
        lambda: all("2 live servers" in log.output() for log in logs),
        10,
        "both servers to see two live servers",
    )


def test_two_servers_split_the_clients_and_take_over(tmp_path: Path, pg_database: str) -> None:
    timeout = ("--peer-timeout", str(PEER_TIMEOUT))
    with lab(tmp_path, 1) as the_lab:
        ns2, if2 = the_lab.add_server(SECOND_IP)
        mport = free_udp_port()
        a = the_lab.dhcpd("-a", *timeout, lease_url=pg_database, name="a")
        b = the_lab.dhcpd(
            "-a", *timeout, "--metrics", f"127.0.0.1:{mport}",
            lease_url=pg_database, name="b", netns=ns2, iface=if2,
        )  # fmt: skip
        two_live(the_lab, a, b)
        results = crowd(
            the_lab, "--count", "200", "--seed", "21", "--retry", "10", "--linger", "1",
            timeout=90,
        )  # fmt: skip
        assert len(results) == 200
        assert_one_offer_each_from_the_owner(results)
        assert_no_duplicates(pg_database, results)
        servers = Counter(r["server"] for r in results)
        assert set(servers) == {SERVER_IP, SECOND_IP}, servers
        assert sum(int(r["tries"]) for r in results) < 210  # hardly any retransmission
        gauges = scrape(ns2, mport)
        assert gauges["ptftpd_dhcp_balance_buckets"] == 128, gauges
        assert gauges["ptftpd_dhcp_balance_servers"] == 2, gauges

        # kill -9 one: its clients REBIND (broadcast, ciaddr) and the other answers
        # them once their server's heartbeat is older than --peer-timeout.
        a.stop(signal.SIGKILL)
        killed = time.monotonic()
        orphans = [r for r in results if r["server"] == SERVER_IP]
        rebound = rebind(the_lab, orphans, "--retry", "1", timeout=30)
        took = time.monotonic() - killed
        assert len(rebound) == len(orphans)
        for before, after in zip(orphans, rebound, strict=True):
            assert after["mac"] == before["mac"]
            assert after["address"] == before["address"], after
            assert after["server"] == SECOND_IP, after
        # Peer timeout, one heartbeat interval, one client retry, and slack for load.
        assert took < PEER_TIMEOUT + PEER_TIMEOUT / 3 + 1 + 4, took
        assert max(int(r["tries"]) for r in rebound) >= 2  # unanswered before the timeout
        assert f"peer {SERVER_IP} silent for" in b.output()
        assert "256 of 256 buckets (1 live server" in b.output()
        gauges = scrape(ns2, mport)
        assert gauges["ptftpd_dhcp_balance_buckets"] == 256, gauges
        assert gauges["ptftpd_dhcp_balance_left"] > 0, gauges
        assert_no_duplicates(pg_database, results)

        # Restart it: the split comes back.
        again = the_lab.dhcpd("-a", *timeout, lease_url=pg_database, name="a2")
        back = f"peer {SERVER_IP} is live"
        wait_for(lambda: b.output().count(back) == 2, 10, "b to see a back")
        two_live(the_lab, again)
        later = crowd(
            the_lab, "--count", "40", "--seed", "22", "--retry", "10", "--linger", "1",
            timeout=60,
        )  # fmt: skip
        assert_one_offer_each_from_the_owner(later)
        assert set(Counter(r["server"] for r in later)) == {SERVER_IP, SECOND_IP}
        assert_no_duplicates(pg_database, results + later)
        assert "Traceback" not in a.output() + b.output() + again.output()
