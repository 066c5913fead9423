"""Boot records kept in the lease database (issue 23 item 5): retention beyond memory.

The timeline (`pxe/timeline.py`) keeps the last N attempts in memory. With a lease
database, pxed also writes each attempt that changed to its own table there,
`boot_attempts`, so a restart keeps the history and servers sharing one PostgreSQL
database show each other's boots; rows older than the retention age are pruned.

- `BootRecords` is the store: `save(records)`, `recent(...)` (newest first, every
  server's), `prune(before)`, `close()`. `SqliteBootRecords` writes the table into the
  SQLite lease file (its own table, its own connection); `PgBootRecords` into the
  PostgreSQL lease database (the table is a migration of `dhcp/pg_schema.py`).
- `BootRetention` watches the timeline's driver (`pxe/timeline_driver.py`): the attempts
  that changed become rows with wall-clock times in the event loop, and every `interval`
  seconds they are written in a thread of its own (the loop never waits on the
  database); rows are pruned by age; a lost database costs one line, not a traceback.

Rows are JSON text (the attempt's API form plus `server`), keyed by server, MAC,
attempt number and start time, so two servers never overwrite each other's rows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sqlite3
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptftpd.dhcp.store import StoreError
from ptftpd.log import Outage

if TYPE_CHECKING:
    from ptftpd.pxe.timeline import Attempt
    from ptftpd.pxe.timeline_driver import TimelineDriver

__all__ = [
    "DEFAULT_MAX_AGE",
    "BootRecord",
    "BootRecords",
    "BootRetention",
    "PgBootRecords",
    "SqliteBootRecords",
    "open_boot_records",
    "record_of",
]

log = logging.getLogger("ptftpd.pxe")

DEFAULT_MAX_AGE = 7 * 86400.0  # a week of boots
RECENT_LIMIT = 1000  # the most rows one read returns

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS boot_attempts (
    id       TEXT PRIMARY KEY,
    server   TEXT NOT NULL,
    mac      TEXT NOT NULL,
    state    TEXT NOT NULL,
    started  REAL NOT NULL,
    updated  REAL NOT NULL,
    record   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS boot_attempts_updated ON boot_attempts (updated);
CREATE INDEX IF NOT EXISTS boot_attempts_mac ON boot_attempts (mac, started);
"""

_COLUMNS = "id, server, mac, state, started, updated, record"
# Rows not written by this run of this server (ids start "SERVER RUN "): the other
# servers', and this server's from before a restart.
_OTHERS = (
    "SELECT id, updated, record FROM boot_attempts WHERE substr(id, 1, {m}) <> {m} "
    "AND updated >= {m} ORDER BY updated, id LIMIT {m}"
)


@dataclass(frozen=True, slots=True)
class BootRecord:
    """One attempt as a row: `view` is its API form with wall-clock times and `server`."""

    id: str
    server: str
    mac: str
    state: str
    started: float
    updated: float
    view: dict[str, Any]

    def row(self) -> tuple[str, str, str, str, float, float, str]:
        return (
            self.id,
            self.server,
            self.mac,
            self.state,
            self.started,
            self.updated,
            json.dumps(self.view, separators=(",", ":"), default=str),
        )


def _where(
    mac: str | None, state: str | None, since: float | None, mark: str
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    for column, value, op in (("mac", mac, "="), ("state", state, "="), ("updated", since, ">=")):
        if value is not None:
            clauses.append(f"{column} {op} {mark}")
            args.append(value)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def _limit(limit: int) -> int:
    return max(0, min(int(limit), RECENT_LIMIT))


class BootRecords(ABC):
    """The store. The queries are written once here with the database's parameter
    `mark`; each database says how it runs one (`_execute`) and how it saves."""

    mark = "?"

    @abstractmethod
    def save(self, records: Iterable[BootRecord]) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _execute(self, sql: str, args: Sequence[Any], action: str) -> tuple[list[Any], int]:
        """Run one statement: (rows, rowcount); a failure to `action` is a StoreError."""

    def recent(
        self,
        *,
        mac: str | None = None,
        state: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Attempts of every server, newest first: `mac`'s, in `state`, changed at or
        after `since` (wall clock), at most `limit` (capped at RECENT_LIMIT)."""
        where, args = _where(mac, state, since, self.mark)
        sql = f"SELECT record FROM boot_attempts{where} ORDER BY started DESC, id LIMIT {self.mark}"
        rows, _ = self._execute(sql, [*args, _limit(limit)], "read")
        return [json.loads(row[0]) for row in rows]

    def others(self, writer: str, since: float, limit: int) -> list[tuple[str, float, str]]:
        """Rows whose id does not start with `writer` (this run's "SERVER RUN "),
        changed at or after `since`, the oldest change first, at most `limit`: (id,
        updated, record JSON)."""
        args = (len(writer), writer, since, limit)
        rows, _ = self._execute(_OTHERS.format(m=self.mark), args, "read")
        return [(str(i), float(u), str(r)) for i, u, r in rows]

    def prune(self, before: float) -> int:
        """Delete the attempts last changed before `before` (wall clock); how many."""
        sql = f"DELETE FROM boot_attempts WHERE updated < {self.mark}"
        _, deleted = self._execute(sql, (before,), "prune")
        return deleted


class SqliteBootRecords(BootRecords):
    """The `boot_attempts` table in the SQLite lease file (WAL: the lease store's own
    connection is never blocked by ours for long). Used from one thread at a time."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=5.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SQLITE_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open boot records in {path}: {exc}") from None

    def save(self, records: Iterable[BootRecord]) -> None:
        rows = [r.row() for r in records]
        if not rows:
            return
        try:
            with self._lock:
                self._db.execute("BEGIN")
                try:
                    self._db.executemany(
                        f"INSERT OR REPLACE INTO boot_attempts ({_COLUMNS}) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        rows,
                    )
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write boot records to {self.path}: {exc}") from None

    def _execute(self, sql: str, args: Sequence[Any], action: str) -> tuple[list[Any], int]:
        try:
            with self._lock:
                cursor = self._db.execute(sql, args)
                return cursor.fetchall(), cursor.rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"cannot {action} boot records in {self.path}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PgBootRecords(BootRecords):
    """The `boot_attempts` table in the PostgreSQL lease database (migrated with the
    lease schema), through its own small connection pool: every server's rows."""

    mark = "%s"

    def __init__(self, conninfo: str, server_id: str) -> None:
        from ptftpd.dhcp.pg_link import PgLink

        self._link = PgLink(conninfo, server_id, min_connections=1, max_connections=2)

    def save(self, records: Iterable[BootRecord]) -> None:
        rows = [r.row() for r in records]
        if not rows:
            return

        def op(conn: Any) -> None:
            with conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO boot_attempts ({_COLUMNS}) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                    "state = EXCLUDED.state, updated = EXCLUDED.updated, "
                    "record = EXCLUDED.record",
                    rows,
                )

        self._link.run(op, attempts=1)

    def _execute(self, sql: str, args: Sequence[Any], action: str) -> tuple[list[Any], int]:
        def op(conn: Any) -> tuple[list[Any], int]:
            cursor = conn.execute(sql, args)
            rows = cursor.fetchall() if cursor.description is not None else []
            return list(rows), int(cursor.rowcount)

        return self._link.run(op, atomic=True)

    def close(self) -> None:
        self._link.close()


def open_boot_records(
    leases_path: Path | None, leases_url: str | None, server_id: str
) -> BootRecords | None:
    """The boot records of the lease database pxed uses (None: it keeps leases in
    memory). One-line `StoreError` when it cannot be opened."""
    if leases_url is not None:
        try:
            return PgBootRecords(leases_url, server_id)
        except ImportError:
            raise StoreError(
                "PostgreSQL leases need psycopg: pip install 'ptftpd[postgresql]'"
            ) from None
    if leases_path is not None:
        return SqliteBootRecords(leases_path)
    return None


# -- the driver --------------------------------------------------------------------------


def record_of(attempt: Attempt, *, server: str, run: str, offset: float, now: float) -> BootRecord:
    """`attempt` as a row: its API form with wall-clock times (`offset`) and `server`;
    keyed by server, this run of it, MAC, attempt number and monotonic start, which never
    change while the attempt goes on. `now`: the wall clock (`updated`)."""
    view = attempt.view(offset)
    view["server"] = server
    ident = f"{server} {run} {attempt.mac} {attempt.number} {attempt.started!r}"
    return BootRecord(ident, server, attempt.mac, attempt.state, view["started"], now, view)


class BootRetention:
    """Writes the attempts that changed (the timeline driver's watcher batches) to
    `store` every `interval` seconds, in a thread of its own, and deletes rows older
    than `max_age` every `prune_every` seconds. Rows waiting are bounded by
    `max_pending` (the newest version of each attempt; the oldest waiting go first
    when the database is away for long)."""

    def __init__(
        self,
        driver: TimelineDriver,
        store: BootRecords,
        server: str,
        *,
        interval: float = 1.0,
        max_age: float = DEFAULT_MAX_AGE,
        prune_every: float = 60.0,
        max_pending: int | None = None,
    ) -> None:
        self.driver = driver
        self.store = store
        self.server = server
        self.run = uuid.uuid4().hex[:12]
        self.interval = interval
        self.max_age = max_age
        self.prune_every = prune_every
        self.max_pending = max_pending or max(driver.timeline.max_attempts, 1)
        self.dropped = 0  # rows never written because too many waited
        self._pending: dict[str, BootRecord] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="boot-records")
        self._task: asyncio.Task[None] | None = None
        self._outage = Outage(log, "boot records not saved", "boot records saved again")
        self._next_prune = 0.0
        # The other servers' attempts in the same database (id -> API form), read
        # with each write: what the API shows beside this server's own. Bounded like
        # the rows waiting; the oldest attempts go first.
        self._shared: dict[str, dict[str, Any]] = {}
        self._shared_since = -math.inf

    def start(self) -> None:
        """Watch the timeline and write in the running loop until `close`."""
        self.driver.watch(self.changed)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def changed(self, attempts: list[Attempt]) -> None:
        """The driver's watcher (in the loop): keep the newest row of each attempt."""
        offset, now = self.driver.offset(), self.driver.wall()
        for attempt in attempts:
            rec = record_of(attempt, server=self.server, run=self.run, offset=offset, now=now)
            self._keep(rec)

    def _keep(self, rec: BootRecord) -> None:
        self._pending.pop(rec.id, None)
        while len(self._pending) >= self.max_pending:
            del self._pending[next(iter(self._pending))]
            self.dropped += 1
        self._pending[rec.id] = rec

    def take(self) -> list[BootRecord]:
        """The rows waiting, oldest change first; none wait afterwards."""
        records = list(self._pending.values())
        self._pending.clear()
        return records

    def write(
        self, records: list[BootRecord], since: float = math.inf
    ) -> list[tuple[str, float, str]] | None:
        """Save `records`, prune when due, and read the other servers' rows changed
        since `since` (in the retention thread); None when the database refused (one
        line when that starts and one when it ends)."""
        try:
            self.store.save(records)
            wall = self.driver.wall()
            if wall >= self._next_prune:
                self._next_prune = wall + self.prune_every
                self.store.prune(wall - self.max_age)
            writer = f"{self.server} {self.run} "
            found = [] if since == math.inf else self.store.others(writer, since, 1000)
        except StoreError as exc:
            self._outage.failed(exc)
            return None
        self._outage.worked()
        return found

    async def flush(self) -> None:
        records = self.take()
        since = max(self._shared_since, self.driver.wall() - self.max_age)
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(self._executor, self.write, records, since)
        if found is None:
            for rec in records:  # again next time, unless a newer version came meanwhile
                if rec.id not in self._pending:
                    self._keep(rec)
            return
        self._merge(found)

    def _merge(self, found: list[tuple[str, float, str]]) -> None:
        for ident, updated, text in found:
            self._shared_since = max(self._shared_since, updated)
            try:
                view = json.loads(text)
            except ValueError:
                continue
            self._shared.pop(ident, None)
            self._shared[ident] = view
        oldest = self.driver.wall() - self.max_age
        if len(self._shared) > self.max_pending or any(
            v.get("updated", 0) < oldest for v in self._shared.values()
        ):
            kept = sorted(self._shared.items(), key=lambda kv: kv[1].get("started", 0))
            kept = [kv for kv in kept if kv[1].get("updated", 0) >= oldest]
            self._shared = dict(kept[-self.max_pending :])

    def shared(self) -> list[dict[str, Any]]:
        """The attempts other servers wrote, and this one before a restart, as last
        read from the database (API form, with `server`), in no particular order."""
        return list(self._shared.values())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()

    def close(self) -> None:
        """Stop, write what waits, close the store (call the driver's `flush` first,
        so the last changes are heard)."""
        self.driver.unwatch(self.changed)
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._executor.shutdown(wait=True)
        self.write(self.take())
        self.store.close()
