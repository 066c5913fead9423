"""Issue 23 item 5: boot records kept in the lease database (SQLite file, PostgreSQL),
pruned by age, every server's visible to each; what is written is what changed."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Iterable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from ptftpd.dhcp.lease_store import Lease, LeaseState
from ptftpd.dhcp.store import SqliteStore, StoreError
from ptftpd.events import DhcpMessage, Event, Failure, TransferFinished, TransferStarted
from ptftpd.pxe.boot_records import (
    BootRecord,
    BootRecords,
    BootRetention,
    PgBootRecords,
    SqliteBootRecords,
)
from ptftpd.pxe.timeline import Timeline
from ptftpd.pxe.timeline_driver import TimelineDriver
from support import Process, require_tool
from support.postgres import pg_cluster, pg_database

__all__ = ["pg_cluster", "pg_database"]

MAC = "52:54:00:aa:00:01"
OTHER = "52:54:00:aa:00:02"


def events(
    mac: str, ip: str, t: float, missing: bool = False
) -> list[tuple[Event | TransferFinished, float]]:
    """One boot's events with their times: DORA, then ipxe.efi served (or not there)."""
    address = IPv4Address(ip)
    kind = Failure.NOT_FOUND if missing else None
    failure = "file not found" if missing else None
    done = TransferFinished(ip, "ipxe.efi", True, 0 if missing else 1000, 0.5, failure, kind)
    return [
        (DhcpMessage("in", "discover", mac, port=67), t),
        (DhcpMessage("out", "offer", mac, address, port=67), t + 0.1),
        (DhcpMessage("in", "request", mac, address, port=67), t + 0.2),
        (DhcpMessage("out", "ack", mac, address, port=67), t + 0.3),
        (TransferStarted(ip, "ipxe.efi"), t + 0.4),
        (done, t + 1),
    ]


def boot(tl: Timeline, mac: str, ip: str, t: float, missing: bool = False) -> None:
    for event, when in events(mac, ip, t, missing):
        tl.feed(event, when)


class Clocks:
    """A driver's two clocks, moved by hand: monotonic `mono`, wall `wall`."""

    def __init__(self, mono: float = 0.0, wall: float = 1_700_000_000.0) -> None:
        self.mono, self.wall = mono, wall

    def step(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


def keeper(
    store: BootRecords, server: str = "pxe-a", clocks: Clocks | None = None, **kw: Any
) -> tuple[Timeline, BootRetention]:
    clocks = clocks or Clocks()
    tl = Timeline(max_attempts=kw.pop("max_attempts", 4096))
    driver = TimelineDriver(tl, clock=lambda: clocks.mono, wall=lambda: clocks.wall)
    return tl, BootRetention(driver, store, server, **kw)


class Rows:
    """A store that keeps rows in a list (what was written, in order)."""

    def __init__(self) -> None:
        self.saved: list[BootRecord] = []

    def save(self, records: Iterable[BootRecord]) -> None:
        self.saved.extend(records)

    def recent(self, **_: Any) -> list[dict[str, Any]]:
        return [r.view for r in self.saved]

    def prune(self, before: float) -> int:
        return 0

    def close(self) -> None:
        pass


def test_each_change_is_one_row_with_wall_clock_times_and_a_stable_key() -> None:
    rows = Rows()
    clocks = Clocks(mono=100.0, wall=1_000_100.0)
    tl, keep = keeper(rows, clocks=clocks)
    boot(tl, MAC, "10.0.0.5", 90.0)
    keep.changed(tl.take_changed())
    clocks.step(5)
    keep.changed(tl.take_changed())  # nothing moved: nothing more
    [first] = keep.take()
    view = first.view
    assert view["server"] == "pxe-a" and view["state"] == "completed"
    assert view["started"] == pytest.approx(1_000_090.0)
    assert [s["time"] for s in view["steps"]][:2] == pytest.approx([1_000_090.0, 1_000_090.1])
    assert keep.take() == []
    # The same attempt moves on (wall and monotonic clocks drifted apart meanwhile):
    # the same key, so the row is updated rather than added.
    clocks.wall += 0.25
    tl.feed(TransferStarted("10.0.0.5", "boot.ipxe"), 110.0)
    keep.changed(tl.take_changed())
    [again] = keep.take()
    assert again.id == first.id and len(again.view["steps"]) == len(view["steps"]) + 1
    # A new attempt that stalls: a change too.
    tl.feed(DhcpMessage("in", "discover", MAC), 300.0)
    keep.changed(tl.take_changed())
    assert [(r.mac, r.state) for r in keep.take()] == [(MAC, "in_progress")]
    tl.handle_timer(1000.0)
    keep.changed(tl.take_changed())
    assert [(r.mac, r.state) for r in keep.take()] == [(MAC, "stalled")]


def test_rows_waiting_are_bounded_newest_kept() -> None:
    tl, keep = keeper(Rows(), max_pending=50)
    for n in range(1000):
        boot(tl, f"52:54:00:00:{n >> 8:02x}:{n & 255:02x}", f"10.1.{n >> 8}.{n & 255}", n)
        keep.changed(tl.take_changed())
    waiting = keep.take()
    assert len(waiting) == 50 and keep.dropped == 950
    assert waiting[-1].mac == "52:54:00:00:03:e7"


def record(ident: str, mac: str, state: str, started: float, updated: float) -> BootRecord:
    view = {"mac": mac, "state": state, "started": started, "steps": [], "server": "s"}
    return BootRecord(ident, "s", mac, state, started, updated, view)


def test_sqlite_records_live_in_the_lease_file_beside_the_leases(tmp_path: Path) -> None:
    path = tmp_path / "pxed-eth0.sqlite"
    leases = SqliteStore(path)
    lease = Lease(IPv4Address("10.0.0.5"), b"\x01", MAC, LeaseState.BOUND, 1e12)
    leases.save([lease])
    records = SqliteBootRecords(path)
    records.save([record("1", MAC, "completed", 10.0, 10.0), record("2", OTHER, "failed", 20, 20)])
    records.save([record("1", MAC, "stalled", 10.0, 30.0)])  # the same attempt, changed
    assert [r["mac"] for r in records.recent()] == [OTHER, MAC]
    assert [r["state"] for r in records.recent(mac=MAC)] == ["stalled"]
    assert [r["mac"] for r in records.recent(state="failed")] == [OTHER]
    assert [r["mac"] for r in records.recent(since=25.0)] == [MAC]
    assert len(records.recent(limit=1)) == 1
    records.close()
    # The lease store still reads its leases; a reopened file still has the records.
    assert [x.mac for x in SqliteStore(path).load()] == [MAC]
    again = SqliteBootRecords(path)
    assert again.prune(before=25.0) == 1
    assert [r["mac"] for r in again.recent()] == [MAC]
    again.close()


def test_an_unwritable_lease_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(StoreError, match="cannot open boot records"):
        SqliteBootRecords(tmp_path / "dir")


def test_retention_writes_off_the_loop_and_prunes_by_age(tmp_path: Path) -> None:
    """The watcher and the writer in a running loop: a completed boot is in the file
    after one interval; two hours later (max_age one hour) the next write prunes it."""
    store = SqliteBootRecords(tmp_path / "leases.sqlite")
    clocks = Clocks(mono=500.0)
    _, keep = keeper(store, clocks=clocks, interval=0.05, max_age=3600.0, prune_every=0.0)
    driver = keep.driver

    async def run() -> None:
        keep.start()
        for event, _ in events(MAC, "10.0.0.5", 490.0):
            driver.feed(event)  # through the driver (its clock says 500: fine)
        await asyncio.sleep(0.4)
        (saved,) = store.recent()
        assert saved["server"] == "pxe-a" and saved["state"] == "completed"
        clocks.step(7200.0)
        for event, _ in events(OTHER, "10.0.0.6", 0.0):
            driver.feed(event)
        await asyncio.sleep(0.4)
        assert [r["mac"] for r in store.recent()] == [OTHER]

    asyncio.run(run())
    keep.close()


def test_a_failing_store_is_one_line_and_everything_is_written_when_it_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Flaky(SqliteBootRecords):
        down = True

        def save(self, records: object) -> None:
            if self.down:
                raise StoreError("database gone")
            super().save(records)  # type: ignore[arg-type]

    store = Flaky(tmp_path / "leases.sqlite")
    tl, keep = keeper(store)
    boot(tl, MAC, "10.0.0.5", 1.0)
    caplog.set_level(logging.WARNING, "ptftpd.pxe")

    async def run() -> None:
        keep.changed(tl.take_changed())
        await keep.flush()
        await keep.flush()
        assert [r.message for r in caplog.records] == ["boot records not saved: database gone"]
        store.down = False
        await keep.flush()

    asyncio.run(run())
    assert [r["mac"] for r in store.recent()] == [MAC]
    assert caplog.records[-1].message == "boot records saved again"
    keep.close()


def test_two_servers_sharing_postgresql_see_each_others_boots(pg_database: str) -> None:
    """Two servers' timelines and retention drivers, one PostgreSQL database: each
    server's reader answers both servers' attempts; pruning by age is shared too."""
    a_store, b_store = PgBootRecords(pg_database, "pxe-a"), PgBootRecords(pg_database, "pxe-b")
    clocks = Clocks()
    a_tl, a = keeper(a_store, "pxe-a", clocks)
    b_tl, b = keeper(b_store, "pxe-b", clocks)

    def write(keep: BootRetention, tl: Timeline) -> None:
        keep.changed(tl.take_changed())
        assert keep.write(keep.take()) is not None

    try:
        boot(a_tl, MAC, "10.0.0.5", -20.0)
        boot(b_tl, OTHER, "10.0.0.6", -10.0, missing=True)
        # The same machine seen by both (the second server answered its next boot).
        boot(b_tl, MAC, "10.0.0.5", -5.0)
        write(a, a_tl)
        write(b, b_tl)
        for store in (a_store, b_store):
            seen = [(r["server"], r["mac"], r["state"]) for r in store.recent()]
            assert seen == [
                ("pxe-b", MAC, "completed"),
                ("pxe-b", OTHER, "failed"),
                ("pxe-a", MAC, "completed"),
            ]
            assert [r["server"] for r in store.recent(mac=MAC)] == ["pxe-b", "pxe-a"]
            assert [r["mac"] for r in store.recent(state="failed")] == [OTHER]
        # What each server's API shows beside its own: the other's rows, read back.
        found = a.write([], -1e18)
        assert found is not None
        a._merge(found)
        assert sorted((v["server"], v["mac"]) for v in a.shared()) == [
            ("pxe-b", MAC),
            ("pxe-b", OTHER),
        ]
        (failed,) = a_store.recent(state="failed")
        assert failed["diagnosis"] and "ipxe.efi" in failed["reason"]
        # An attempt that moves on is the same row, updated; a new attempt is a new row.
        b_tl.feed(TransferStarted("10.0.0.5", "boot.ipxe"), 1.0)
        boot(b_tl, OTHER, "10.0.0.6", 100.0)
        write(b, b_tl)
        assert len(a_store.recent()) == 4
        (latest, _) = a_store.recent(mac=MAC, limit=2)
        assert latest["steps"][-1]["file"] == "boot.ipxe"
        assert a_store.prune(before=clocks.wall + 1) == 4
        assert b_store.recent() == []
    finally:
        a.close()
        b.close()


def api_get(ns: Any, path: str) -> dict[str, Any]:
    curl = require_tool("curl")
    done = ns.run(curl, "-sS", "--max-time", "5", f"http://127.0.0.1:8023{path}", timeout=20)
    return dict(json.loads(done.stdout))


@pytest.mark.netns
@pytest.mark.timeout(120)
def test_two_pxed_sharing_postgresql_see_each_others_boots(
    tmp_path: Path, pg_database: str
) -> None:
    """Two real pxed (DHCP mode, one PostgreSQL lease database, each with --api) on one
    LAN: a scripted PXE client's DISCOVER reaches both, it asks each one's boot server
    (4011), then fetches its boot file with tftp-hpa from B. Each server's API (curl)
    answers both attempts, A's (offered, still going) and B's (completed), each with
    its server; a third reader of the database sees the same rows."""
    from pxe_harness import boot_network
    from test_pxe_sockets import probe

    from support import script, wait_udp_bound

    tftp = require_tool("tftp")
    root = tmp_path / "root"
    root.mkdir()
    (root / "ipxe.efi").write_bytes(b"x" * 3000)
    mac = "52:54:00:bb:00:01"
    want = {("10.78.0.1", "in_progress"), ("10.78.0.2", "completed")}
    with boot_network(tmp_path) as net:
        b_ns = net.peer("10.78.0.2")
        client = net.peer("10.78.0.50")
        servers = []
        for ns, iface in ((net.ns, net.bridge), (b_ns, "eth0")):
            argv = [script("pxed"), "-v", "-a", "--range", "10.78.0.100", "10.78.0.150"]
            argv += ["--api", "127.0.0.1:8023", "--leases", pg_database]
            argv += [iface, str(root), "ipxe.efi"]
            proc = net.start(argv, f"pxed-{len(servers)}", ns)
            wait_udp_bound(4011, timeout=15, proc=proc.proc, netns=ns.name)
            servers.append(proc)
        # Both servers hear the (broadcast) DISCOVER; one answers (they share the
        # clients out between them): the first offer will do, no need to wait out
        # --all's 10 s. The client then asks each one's boot server.
        offers = probe(client, "discover", "--mac", mac, "--arch", "7")
        assert offers, offers
        for server in ("10.78.0.1", "10.78.0.2"):
            args = ["--mac", mac, "--arch", "7", "--server", server, "--ciaddr", "10.78.0.50"]
            [ack] = probe(client, "bootserver", *args)
            assert ack["file"] == "ipxe.efi" and ack["from"] == server, ack
        get = f"cd {tmp_path} && {tftp} 10.78.0.2 -m octet -c get ipxe.efi"
        client.run("sh", "-c", get, timeout=20)
        for ns in (net.ns, b_ns):
            deadline = time.monotonic() + 10
            while True:
                attempts = api_get(ns, f"/v1/machines/{mac}")["attempts"]
                seen = {(a["server"], a["state"]) for a in attempts}
                if seen == want:
                    break
                assert time.monotonic() < deadline, (seen, servers[1].output()[-2000:])
                time.sleep(0.2)
            boots = api_get(ns, "/v1/boots?state=completed")["boots"]
            assert [(b["server"], b["mac"]) for b in boots] == [("10.78.0.2", mac)]
            kinds = [s["kind"] for s in boots[0]["steps"]]
            assert kinds[0] == "dhcp.discover" and kinds[-1] == "tftp.done", kinds
            ports = {s.get("port") for s in boots[0]["steps"] if s["kind"] == "dhcp.request"}
            assert ports == {4011}
        reader = PgBootRecords(pg_database, "reader")
        try:
            assert {(r["server"], r["state"]) for r in reader.recent(mac=mac)} == want
        finally:
            reader.close()
        for proc in servers:
            assert proc.stop() == 0
            assert "Traceback" not in proc.output()


@pytest.mark.netns
@pytest.mark.timeout(120)
def test_pxed_keeps_its_boots_across_a_restart_in_the_sqlite_lease_file(
    tmp_path: Path,
) -> None:
    """pxed with its SQLite lease file: a scripted client's DISCOVER makes an attempt;
    pxed stops (SIGTERM) and starts again on the same file, and its API still answers
    that attempt (read back from the file's boot_attempts table)."""
    from pxe_harness import boot_network
    from test_pxe_sockets import probe

    from support import script, wait_udp_bound

    root = tmp_path / "root"
    root.mkdir()
    (root / "ipxe.efi").write_bytes(b"x")
    mac = "52:54:00:bb:00:02"
    leases = tmp_path / "leases.sqlite"
    with boot_network(tmp_path) as net:
        client = net.peer("10.78.0.50")
        argv = [script("pxed"), "-v", "--api", "127.0.0.1:8023", "--leases", str(leases)]
        argv += [net.bridge, str(root), "ipxe.efi"]

        def start(n: int) -> Process:
            proc = net.start(argv, f"pxed-{n}")
            wait_udp_bound(4011, timeout=15, proc=proc.proc, netns=net.ns.name)
            return proc

        first = start(1)
        [offer] = probe(client, "discover", "--mac", mac, "--arch", "7")
        assert offer["file"] == "ipxe.efi"
        [before] = api_get(net.ns, f"/v1/machines/{mac}")["attempts"]
        assert first.stop() == 0
        wait_udp_free_in(net, 4011)
        second = start(2)
        deadline = time.monotonic() + 10
        while True:
            got = api_get(net.ns, f"/v1/machines/{mac}")
            if got.get("attempts"):
                break
            assert time.monotonic() < deadline, (got, second.output()[-2000:])
            time.sleep(0.2)
        [after] = got["attempts"]
        assert after["server"] == "10.78.0.1" and after["started"] == before["started"]
        assert [s["kind"] for s in after["steps"]] == [s["kind"] for s in before["steps"]]
        assert second.stop() == 0
        assert "Traceback" not in first.output() + second.output()


def wait_udp_free_in(net: Any, port: int, timeout: float = 10.0) -> None:
    from support import udp_port_bound

    deadline = time.monotonic() + timeout
    while udp_port_bound(port, netns=net.ns.name):
        assert time.monotonic() < deadline, f"port {port} still bound"
        time.sleep(0.1)


def test_boot_history_setting_reaches_the_retention(tmp_path: Path) -> None:
    """--boot-history / boot-history = "12h": the age pxed's retention prunes at; below
    an hour is a usage error (exit 2, one line)."""
    import subprocess
    from ipaddress import IPv4Network

    from pxe_requests import FILES, SERVER

    from ptftpd.dhcp import DhcpConfig
    from ptftpd.pxe import PxeConfig, PxeService
    from ptftpd.pxe.settings import pxe_config
    from ptftpd.tftp.server import ServerConfig
    from support import script

    dhcp = DhcpConfig(server_ip=SERVER, network=IPv4Network("10.78.0.0/24"), bootfile="x")
    assert pxe_config({"boot-history": "12h"}, dhcp, tmp_path, "x").boot_history == 43200
    assert pxe_config({"boot-history": 7200}, dhcp, tmp_path, "x").boot_history == 7200
    assert pxe_config({}, dhcp, tmp_path, "x").boot_history == 7 * 86400
    dhcp = DhcpConfig(
        server_ip=SERVER, network=IPv4Network("10.78.0.0/24"), leases_path=tmp_path / "l.sqlite"
    )
    config = PxeConfig(dhcp=dhcp, tftp=ServerConfig(root=tmp_path), files=FILES, boot_history=7200)
    for _, name in FILES.configured():
        (tmp_path / name).write_bytes(b"boot")
    svc = PxeService(config)

    async def run() -> None:
        svc._keep_boot_records()
        assert svc.boot_records is not None and svc.boot_records.max_age == 7200
        svc.reload(dataclasses.replace(config, boot_history=3600))
        assert svc.boot_records.max_age == 3600
        svc.close()

    asyncio.run(run())
    argv = [script("pxed"), "--boot-history", "5m", "lo", str(tmp_path), "x"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "pxed: --boot-history: must be between 3600 and 315360000, not 300 (try --help)\n"
    )
    assert "Traceback" not in done.stderr
    (tmp_path / "pxed.toml").write_text("boot-history = 60\n")
    argv = [script("pxed"), "--config", str(tmp_path / "pxed.toml"), "lo", str(tmp_path)]
    argv.append("default.0")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"pxed: {tmp_path / 'pxed.toml'}:1: boot-history: must be between 3600 and"
        " 315360000, not 60 (try --help)\n"
    )
