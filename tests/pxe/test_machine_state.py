"""Issue 22 item 5: boot-local after install. ``POST /v1/machines/<mac>/local`` (and
``/install``) on the operator API, behind the bearer token; the state persists in the
lease database (SQLite, PostgreSQL: every server sharing it agrees) or a state file,
and survives a restart. Real pxed in a namespace, curl for the API, a scripted PXE
client (pxe_probe) for what the machine is offered."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from ptftpd.dhcp.store import StoreError
from ptftpd.pxe.decision import MachineState, StateTable
from ptftpd.pxe.machine_state import (
    FileMachineStates,
    MachineStates,
    PgMachineStates,
    SqliteMachineStates,
    StateKeeper,
)
from support import require_tool
from support.postgres import pg_cluster, pg_database

__all__ = ["pg_cluster", "pg_database"]

MAC = "52:54:00:aa:22:05"
OTHER = "52:54:00:aa:22:06"
TOKEN = "s3cret-token-of-the-operator"


def roundtrip(make: Any) -> None:
    """Set, reload from a new store object (a restart), change back."""
    store: MachineStates = make()
    assert store.load() == {}
    store.set(MAC.upper(), MachineState.LOCAL)
    store.set(OTHER, MachineState.INSTALL)
    store.close()
    again: MachineStates = make()
    assert again.load() == {MAC: MachineState.LOCAL, OTHER: MachineState.INSTALL}
    again.set(MAC, MachineState.INSTALL)
    assert again.load()[MAC] is MachineState.INSTALL
    again.close()


def test_sqlite_states_live_in_the_lease_file(tmp_path: Path) -> None:
    path = tmp_path / "leases.sqlite"
    roundtrip(lambda: SqliteMachineStates(path))


def test_a_state_file_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "state" / "pxed-br0-machines.json"
    roundtrip(lambda: FileMachineStates(path))
    assert json.loads(path.read_text()) == {MAC: "install", OTHER: "install"}
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp left
    path.write_text("{not json")
    with pytest.raises(StoreError, match="not a machine state file"):
        FileMachineStates(path).load()


def test_postgresql_states_are_every_servers(pg_database: str) -> None:
    roundtrip(lambda: PgMachineStates(pg_database, "a"))
    other = PgMachineStates(pg_database, "b")
    try:
        assert other.load()[MAC] is MachineState.INSTALL
    finally:
        other.close()


def test_the_keeper_applies_a_change_once_written_and_reads_others(tmp_path: Path) -> None:
    """A change reaches the decision chain's table once persisted; another keeper of
    the same store (another server) learns it at its next read."""
    path = tmp_path / "leases.sqlite"

    async def run() -> None:
        table_a, table_b = StateTable(), StateTable()
        a = StateKeeper(table_a, SqliteMachineStates(path), interval=0.1)
        b = StateKeeper(table_b, SqliteMachineStates(path), interval=0.1)
        await a.start()
        await b.start()
        await a.set(MAC, MachineState.LOCAL)
        assert table_a.states == {MAC: MachineState.LOCAL}
        deadline = time.monotonic() + 5
        while table_b.states != {MAC: MachineState.LOCAL}:
            assert time.monotonic() < deadline, table_b.states
            await asyncio.sleep(0.05)
        a.close()
        b.close()

    asyncio.run(run())


def test_a_store_that_refuses_changes_nothing(tmp_path: Path) -> None:
    class Refusing(FileMachineStates):
        def set(self, mac: str, state: MachineState) -> None:
            raise StoreError("disk full")

    async def run() -> None:
        table = StateTable()
        keeper = StateKeeper(table, Refusing(tmp_path / "m.json"))
        await keeper.start()
        with pytest.raises(StoreError):
            await keeper.set(MAC, MachineState.LOCAL)
        assert table.states == {}
        keeper.close()

    asyncio.run(run())


# -- real pxed --------------------------------------------------------------------------


def curl(ns: Any, method: str, path: str, token: str | None = None) -> tuple[int, Any]:
    argv = [require_tool("curl"), "-sS", "--max-time", "5", "-X", method]
    argv += ["-o", "-", "-w", "\n%{http_code}"]
    if token is not None:
        argv += ["-H", f"Authorization: Bearer {token}"]
    done = ns.run(*argv, f"http://127.0.0.1:8023{path}", timeout=20)
    body, _, code = done.stdout.rpartition("\n")
    return int(code), json.loads(body) if body.strip() else None


def offered(client: Any, server: str = "10.78.0.1") -> str:
    """The boot file `server` offers MAC (an x64 UEFI PXE client): '' for none. Only
    one server answers MAC at any time in these tests: the first reply is the one (no
    waiting out --all's 10 s for more: five such calls made a 52 s test)."""
    from test_pxe_sockets import probe

    replies = probe(client, "discover", "--mac", MAC, "--arch", "7")
    files = [str(r.get("file") or "") for r in replies if r["from"] == server]
    assert len(files) == 1, replies
    return files[0]


def pxed_argv(tmp_path: Path, iface: str, leases: str, *extra: str) -> list[str]:
    from support import script

    settings = tmp_path / "pxed.toml"
    settings.write_text(f'[pxed]\napi-token = "{TOKEN}"\n')
    argv = [script("pxed"), "-v", "--config", str(settings), "--api", "127.0.0.1:8023"]
    argv += ["-a", "--range", "10.78.0.100", "10.78.0.150", "--leases", leases, *extra]
    return [*argv, iface, str(tmp_path / "root"), "ipxe.efi"]


@pytest.mark.netns
@pytest.mark.timeout(120)
def test_post_local_flips_a_machine_and_survives_a_restart(tmp_path: Path) -> None:
    """No token -> 401 and nothing changes; with it the machine is offered no boot
    file (local), after a restart still; /install gives it its boot file back."""
    from pxe_harness import boot_network

    from support import wait_udp_bound

    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "ipxe.efi").write_bytes(b"x" * 100)
    argv = pxed_argv(tmp_path, "", str(tmp_path / "leases.sqlite"))
    with boot_network(tmp_path) as net:
        argv[-3] = net.bridge
        client = net.peer("10.78.0.50")

        def start(n: int) -> Any:
            proc = net.start(argv, f"pxed-{n}")
            wait_udp_bound(4011, timeout=15, proc=proc.proc, netns=net.ns.name)
            return proc

        pxed = start(0)
        assert offered(client) == "ipxe.efi"
        code, body = curl(net.ns, "POST", f"/v1/machines/{MAC}/local")
        assert code == 401, body
        code, body = curl(net.ns, "POST", f"/v1/machines/{MAC}/local", "wrong" + TOKEN)
        assert code == 401, body
        assert curl(net.ns, "GET", f"/v1/machines/{MAC}/state") == (
            200,
            {"mac": MAC, "state": None},
        )
        assert offered(client) == "ipxe.efi"
        code, body = curl(net.ns, "POST", f"/v1/machines/{MAC.upper()}/local", TOKEN)
        assert (code, body) == (200, {"mac": MAC, "state": "local"})
        assert offered(client) == ""
        assert pxed.stop() == 0
        pxed = start(1)
        assert curl(net.ns, "GET", f"/v1/machines/{MAC}/state")[1]["state"] == "local"
        assert offered(client) == ""
        code, body = curl(net.ns, "POST", f"/v1/machines/{MAC}/install", TOKEN)
        assert (code, body) == (200, {"mac": MAC, "state": "install"})
        assert offered(client) == "ipxe.efi"
        assert curl(net.ns, "POST", "/v1/machines/nope/local", TOKEN)[0] == 400
        assert pxed.stop() == 0
        assert "Traceback" not in pxed.output()
        assert f"machine {MAC}: install (operator API)" in pxed.output()


@pytest.mark.netns
@pytest.mark.timeout(120)
def test_with_postgresql_a_second_server_agrees(tmp_path: Path, pg_database: str) -> None:
    """Two pxed sharing one PostgreSQL lease database: a machine marked local on A's
    API is local on B too (B's API, and B's offer), within B's next read (2 s).

    The servers split the clients by RFC 3074 buckets, so only one of them answers MAC:
    B serves alone first (its offer carries the boot file), and again once A has stopped
    (a clean stop removes A's heartbeat row and B takes every bucket)."""
    from pxe_harness import boot_network

    from support import wait_udp_bound

    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "ipxe.efi").write_bytes(b"x" * 100)
    with boot_network(tmp_path) as net:
        b_ns = net.peer("10.78.0.2")
        client = net.peer("10.78.0.50")
        b = net.start(pxed_argv(tmp_path, "eth0", pg_database), "pxed-eth0", b_ns)
        wait_udp_bound(4011, timeout=15, proc=b.proc, netns=b_ns.name)
        assert offered(client, "10.78.0.2") == "ipxe.efi"
        a = net.start(pxed_argv(tmp_path, net.bridge, pg_database), "pxed-br", net.ns)
        wait_udp_bound(4011, timeout=15, proc=a.proc, netns=net.ns.name)
        assert curl(net.ns, "POST", f"/v1/machines/{MAC}/local", TOKEN)[0] == 200
        deadline = time.monotonic() + 5
        while curl(b_ns, "GET", f"/v1/machines/{MAC}/state")[1]["state"] != "local":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert a.stop() == 0
        deadline = time.monotonic() + 10
        while True:  # B takes A's buckets within a heartbeat (peer timeout / 3)
            from test_pxe_sockets import probe

            replies = probe(client, "discover", "--mac", MAC, "--arch", "7")  # A stopped
            files = [str(r.get("file") or "") for r in replies if r["from"] == "10.78.0.2"]
            if files or time.monotonic() > deadline:
                break
        assert files == [""], replies
        for proc in (a, b):
            assert "Traceback" not in proc.output()
        assert b.stop() == 0
