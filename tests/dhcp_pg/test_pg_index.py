"""The free-address search reads an index, not every lease, on a 65,536-address pool."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from pgtest import NOW, Stores, ip

from ptftpd.dhcp.lease_store import Claim

BIG = "big"


def plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", []) for n in plan_nodes(child))]


def test_free_address_search_is_an_index_scan_on_a_full_65k_pool(stores: Stores) -> None:
    store = stores("10.60.0.1", max_connections=1)
    assert store.ensure_pool(BIG, ip("10.64.0.0"), ip("10.64.255.255")) == 65536
    # All but the last 8 addresses are leased for long: the free ones sit at the end.
    stores.sql(
        "UPDATE leases SET state = 'bound', client = inet_send(address), "
        "mac = 'aa', expires = %s, free_at = %s, since = %s "
        "WHERE pool = %s AND address < '10.64.255.248'",
        (NOW + 3600, NOW + 3600, NOW, BIG),
    )
    # Another pool in the same table must not be read either.
    store.ensure_pool("other", ip("10.65.0.0"), ip("10.65.3.255"))
    # Steady state: autovacuum has removed the index entries of the rows' old versions
    # (until it does, btree scans mark them dead as they pass: the cost is paid once).
    stores.sql("VACUUM ANALYZE leases")

    # auto_explain on the store's own (only) connection reports the plans of the
    # statements inside ptftpd_offer as notices, with the rows and pages they read.
    plans: list[dict[str, Any]] = []

    def on_notice(diag: psycopg.errors.Diagnostic) -> None:
        text = diag.message_primary or ""
        if "plan:" in text:
            plans.append(json.loads(text.split("plan:", 1)[1]))

    with store._link._pool.connection() as conn:
        for setting in (
            "LOAD 'auto_explain'",
            "SET auto_explain.log_min_duration = 0",
            "SET auto_explain.log_nested_statements = on",
            "SET auto_explain.log_analyze = on",
            "SET auto_explain.log_buffers = on",
            "SET auto_explain.log_format = json",
            "SET auto_explain.log_level = notice",
        ):
            conn.execute(setting)
        conn.add_notice_handler(on_notice)
    offer = store.offer(Claim(b"late", "bb", NOW, NOW + 30), BIG, None)
    assert offer is not None and offer.address == ip("10.64.255.248")

    searches = [p for p in plans if "ORDER BY l.free_at" in p["Query Text"]]
    assert len(searches) == 1, [p["Query Text"] for p in plans]
    nodes = plan_nodes(searches[0]["Plan"])
    types = [n["Node Type"] for n in nodes]
    assert "Seq Scan" not in types and "Bitmap Heap Scan" not in types, types
    scans = [n for n in nodes if n["Node Type"] in ("Index Scan", "Index Only Scan")]
    assert [n["Index Name"] for n in scans] == ["leases_free"]
    # The scan starts at the first free row: it reads one row and a handful of pages,
    # where a scan of the pool would read all 65,536 rows (several hundred pages).
    assert scans[0]["Actual Rows"] == 1
    assert scans[0].get("Rows Removed by Filter", 0) == 0
    pages = scans[0]["Shared Hit Blocks"] + scans[0]["Shared Read Blocks"]
    assert pages < 20, pages
    # And every statement inside the offer reads a few pages too (the call itself adds
    # the function's compilation on first use, catalog pages, left out here).
    inner = [p for p in plans if "ptftpd_offer(" not in p["Query Text"]]
    assert len(inner) == 3  # own row, free search, take
    total = sum(p["Plan"]["Shared Hit Blocks"] + p["Plan"]["Shared Read Blocks"] for p in inner)
    assert total < 100, total


def test_the_hot_statements_are_prepared_once_per_connection(stores: Stores) -> None:
    store = stores("10.60.0.1", max_connections=1)
    store.ensure_pool("small", ip("10.66.0.1"), ip("10.66.0.100"))
    for n in range(5):
        offer = store.offer(Claim(b"c%d" % n, "aa", NOW, NOW + 30), "small", None)
        assert offer is not None
        assert store.bind(Claim(b"c%d" % n, "aa", NOW, NOW + 60), offer.address) is not None
    with store._link._pool.connection() as conn:  # the store's only connection
        rows = conn.execute(
            "SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements"
        ).fetchall()
    executions = {statement: n for statement, n in rows}
    assert {s.split("(")[0] for s in executions} >= {
        "SELECT * FROM ptftpd_offer",
        "SELECT * FROM ptftpd_bind",
    }, executions
    assert all(n >= 4 for n in executions.values()), executions
