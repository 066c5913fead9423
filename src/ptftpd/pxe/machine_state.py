"""Boot-local after install (issue 22 item 5): each machine's state, persisted.

``POST /v1/machines/<mac>/local`` (the installer's last step) marks a machine "boot
your local disk"; ``POST /v1/machines/<mac>/install`` lets the normal chain decide
again (reinstall). The state is the first link of the decision chain
(`ptftpd.pxe.decision.StateTable`); this module keeps it where it survives a restart:

- `SqliteMachineStates`: the ``machine_states`` table in the SQLite lease file (its
  own table, its own connection);
- `PgMachineStates`: the same table in the PostgreSQL lease database (a migration of
  `ptftpd.dhcp.pg_schema`), so every server sharing the database agrees;
- `FileMachineStates`: without a lease database (``--proxy``), a JSON state file in
  the server's state directory, replaced atomically (never half-written).

`StateKeeper` is the driver: it loads the states into the `StateTable` at start,
writes a change in a thread of its own (the event loop never waits on a database or
a disk) and then applies it, and re-reads the store every `interval` seconds, so a
change another server made reaches this one. A lost database costs one log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ptftpd.dhcp.store import StoreError
from ptftpd.log import Outage
from ptftpd.pxe.decision import MachineState, StateTable, normal_mac

if TYPE_CHECKING:
    from ptftpd.pxe.api.routes import ApiRequest, Reply, Router

__all__ = [
    "FileMachineStates",
    "MachineStates",
    "PgMachineStates",
    "SqliteMachineStates",
    "StateKeeper",
    "add_state_routes",
    "open_machine_states",
    "state_file_path",
]

log = logging.getLogger("ptftpd.pxe")

MAX_MACHINES = 100_000  # rows one load reads: the table is the operator's, still bounded

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS machine_states (
    mac      TEXT PRIMARY KEY,
    state    TEXT NOT NULL,
    updated  REAL NOT NULL
);
"""


def _states(rows: list[Any]) -> dict[str, MachineState]:
    """Rows (mac, state) as states; a row this version does not know is skipped."""
    found: dict[str, MachineState] = {}
    for mac, state in rows:
        try:
            found[normal_mac(str(mac))] = MachineState(str(state))
        except ValueError:
            continue
    return found


class MachineStates(Protocol):
    def load(self) -> dict[str, MachineState]:
        """Every machine's state (at most MAX_MACHINES)."""
        ...

    def set(self, mac: str, state: MachineState) -> None:
        """Persist `mac`'s state (`StoreError`: not persisted)."""
        ...

    def close(self) -> None: ...


class SqliteMachineStates:
    """The ``machine_states`` table in the SQLite lease file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=5.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SQLITE_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open machine states in {path}: {exc}") from None

    def load(self) -> dict[str, MachineState]:
        try:
            with self._lock:
                rows = self._db.execute(
                    "SELECT mac, state FROM machine_states LIMIT ?", (MAX_MACHINES,)
                ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read machine states from {self.path}: {exc}") from None
        return _states(rows)

    def set(self, mac: str, state: MachineState) -> None:
        try:
            with self._lock:
                self._db.execute(
                    "INSERT OR REPLACE INTO machine_states (mac, state, updated) VALUES (?, ?, ?)",
                    (normal_mac(mac), state.value, time.time()),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write machine states to {self.path}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PgMachineStates:
    """The ``machine_states`` table in the PostgreSQL lease database (every server's)."""

    def __init__(self, conninfo: str, server_id: str) -> None:
        from ptftpd.dhcp.pg_link import PgLink

        self._link = PgLink(conninfo, server_id, min_connections=1, max_connections=1)

    def load(self) -> dict[str, MachineState]:
        def op(conn: Any) -> list[Any]:
            sql = "SELECT mac, state FROM machine_states LIMIT %s"
            return list(conn.execute(sql, (MAX_MACHINES,)).fetchall())

        return _states(self._link.run(op, atomic=True))

    def set(self, mac: str, state: MachineState) -> None:
        def op(conn: Any) -> None:
            conn.execute(
                "INSERT INTO machine_states (mac, state, updated) VALUES (%s, %s, %s) "
                "ON CONFLICT (mac) DO UPDATE SET state = EXCLUDED.state, "
                "updated = EXCLUDED.updated",
                (normal_mac(mac), state.value, time.time()),
            )

        self._link.run(op, atomic=True)

    def close(self) -> None:
        self._link.close()


class FileMachineStates:
    """A JSON state file ``{"52:54:00:00:00:01": "local", ...}``, written to a
    temporary file beside it, synced and renamed over it: never half-written."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot keep machine states in {path}: {exc}") from None

    def _read(self) -> dict[str, MachineState]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"cannot read machine states from {self.path}: {exc}") from None
        try:
            data = json.loads(text)
        except ValueError:
            raise StoreError(f"{self.path}: not a machine state file (not JSON)") from None
        if not isinstance(data, dict):
            raise StoreError(f"{self.path}: not a machine state file (not an object)")
        return _states(list(data.items())[:MAX_MACHINES])

    def load(self) -> dict[str, MachineState]:
        with self._lock:
            return self._read()

    def set(self, mac: str, state: MachineState) -> None:
        with self._lock:
            states = self._read()
            states[normal_mac(mac)] = state
            text = json.dumps({m: s.value for m, s in sorted(states.items())}, indent=1)
            try:
                fd, tmp = tempfile.mkstemp(prefix=".machines-", dir=self.path.parent)
                try:
                    with os.fdopen(fd, "w", encoding="utf-8") as out:
                        out.write(text + "\n")
                        out.flush()
                        os.fsync(out.fileno())
                    os.replace(tmp, self.path)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
            except OSError as exc:
                raise StoreError(f"cannot write machine states to {self.path}: {exc}") from None

    def close(self) -> None:
        pass


def state_file_path(leases_path: Path | None, iface: str) -> Path:
    """Where a server without a lease database keeps its machine states: beside its
    lease file's place (the state directory), one file per interface."""
    from ptftpd.dhcp.store import DEFAULT_LEASES_DIR

    directory = leases_path.parent if leases_path is not None else DEFAULT_LEASES_DIR
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in iface)
    return directory / f"pxed-{safe}-machines.json"


def open_machine_states(
    leases_path: Path | None, leases_url: str | None, server_id: str, state_file: Path
) -> MachineStates:
    """The store pxed keeps machine states in: the PostgreSQL or SQLite lease database
    when it has one (`leases_path` None: none), else `state_file`."""
    if leases_url is not None:
        try:
            return PgMachineStates(leases_url, server_id)
        except ImportError:
            raise StoreError(
                "PostgreSQL leases need psycopg: pip install 'ptftpd[postgresql]'"
            ) from None
    if leases_path is not None:
        return SqliteMachineStates(leases_path)
    return FileMachineStates(state_file)


class StateKeeper:
    """Keeps `table` (the decision chain's first link) equal to `store`: loaded at
    `start`, re-read every `interval` seconds (other servers' changes), a change
    written first and applied when written (`set`). Store calls run in one thread of
    their own."""

    def __init__(self, table: StateTable, store: MachineStates, interval: float = 2.0) -> None:
        self.table = table
        self.store = store
        self.interval = interval
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="machine-states")
        self._task: asyncio.Task[None] | None = None
        self._outage = Outage(log, "machine states not read", "machine states read again")
        self._changes = 0  # a read that started before a change must not undo it

    async def _run_in_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def refresh(self) -> bool:
        """Re-read the store into the table (False: the store refused, one line)."""
        changes = self._changes
        try:
            states = await self._run_in_thread(self.store.load)
        except StoreError as exc:
            self._outage.failed(exc)
            return False
        self._outage.worked()
        if changes == self._changes:
            self.table.states = states
        return True

    async def set(self, mac: str, state: MachineState) -> None:
        """Persist, then apply (`StoreError` when it could not be persisted: nothing
        changes)."""
        mac = normal_mac(mac)
        self._changes += 1
        await self._run_in_thread(self.store.set, mac, state)
        self.table.set(mac, state)
        log.info("machine %s: %s (operator API)", mac, state.value)

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.get_running_loop().create_task(self._every())

    async def _every(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.refresh()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._executor.shutdown(wait=True)
        self.store.close()


def add_state_routes(router: Router, keeper: Callable[[], StateKeeper | None]) -> None:
    """The operator API's machine state endpoints:

    - ``POST /v1/machines/<mac>/local`` (write: bearer token): boot the local disk;
    - ``POST /v1/machines/<mac>/install`` (write): the normal chain decides again;
    - ``GET /v1/machines/<mac>/state``: ``{"mac": ..., "state": "local" | "install" |
      null}``.

    A change is answered once persisted (``{"mac", "state"}``, 200); 503 when the
    store refused it (nothing changed), 400 for a MAC that is not one."""
    from ptftpd.pxe.api.routes import ApiError, json_reply

    def mac_of(request: ApiRequest) -> str:
        try:
            return normal_mac(request.params["mac"])
        except ValueError:
            raise ApiError(400, "not a MAC address") from None

    def running() -> StateKeeper:
        found = keeper()
        if found is None:
            raise ApiError(503, "machine states are not kept (the server is starting)")
        return found

    def setter(state: MachineState) -> Callable[[ApiRequest], Awaitable[Reply]]:
        async def handler(request: ApiRequest) -> Reply:
            mac = mac_of(request)
            try:
                await running().set(mac, state)
            except StoreError as exc:
                log.warning("machine %s not marked %s: %s", mac, state.value, exc)
                raise ApiError(503, f"not saved: {exc}") from None
            return json_reply({"mac": mac, "state": state.value})

        return handler

    def show(request: ApiRequest) -> Reply:
        mac = mac_of(request)
        state = running().table.states.get(mac)
        return json_reply({"mac": mac, "state": None if state is None else state.value})

    router.add("POST", "/v1/machines/{mac}/local", setter(MachineState.LOCAL), write=True)
    router.add("POST", "/v1/machines/{mac}/install", setter(MachineState.INSTALL), write=True)
    router.add("GET", "/v1/machines/{mac}/state", show)
