"""The free-address search reads an index, not every lease, on a 65,536-address pool."""

from __future__ import annotations

from typing import Any

from pgtest import NOW, Stores, ip

from ptftpd.dhcp.pg_store import FREE_SEARCH_SQL

BIG = "big"


def plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", []) for n in plan_nodes(child))]


def test_free_address_search_is_an_index_scan_on_a_full_65k_pool(stores: Stores) -> None:
    store = stores("10.60.0.1")
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
    with_params = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + FREE_SEARCH_SQL
    ((plan,),) = stores.sql(with_params, {"pool": BIG, "now": NOW})
    nodes = plan_nodes(plan[0]["Plan"])
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
    offer = store.offer(b"late", "bb", BIG, None, NOW, 30)
    assert offer is not None and offer.address == ip("10.64.255.248")


def test_the_hot_statements_are_prepared_once_per_connection(stores: Stores) -> None:
    store = stores("10.60.0.1", max_connections=1)
    store.ensure_pool("small", ip("10.66.0.1"), ip("10.66.0.100"))
    for n in range(5):
        offer = store.offer(b"c%d" % n, "aa", "small", None, NOW, 30)
        assert offer is not None
        assert store.bind(b"c%d" % n, "aa", offer.address, NOW, NOW + 60) is not None
    with store._link._pool.connection() as conn:  # the store's only connection
        rows = conn.execute(
            "SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements"
        ).fetchall()
    executions = {statement.split(" SET ")[0][:40]: n for statement, n in rows}
    assert len(rows) >= 4, rows  # own row, take, bind's lock, release-other, bind
    assert all(n >= 4 for n in executions.values()), executions
