"""SQLite lease store: one row per address, committed before the server answers.

WAL journal with `synchronous=NORMAL`: a commit is in the operating system's hands when
`save` returns, so a `kill -9` of the server loses nothing (the case the issue asks
for) while a commit costs tens of microseconds instead of an fsync. Use
`synchronous="FULL"` to survive power loss as well.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

from ptftpd.dhcp.free_index import HeapFreeIndex
from ptftpd.dhcp.lease_store import FreeIndex, Lease, LeaseState

__all__ = [
    "DEFAULT_LEASES_DIR",
    "LeaseFile",
    "SqliteStore",
    "StoreBusy",
    "StoreError",
    "StoreUnavailable",
    "default_leases_path",
]

DEFAULT_LEASES_DIR = Path("/var/lib/ptftpd")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    address   TEXT PRIMARY KEY,
    client    BLOB NOT NULL,
    mac       TEXT NOT NULL,
    state     TEXT NOT NULL,
    expires   REAL,
    hostname  TEXT,
    since     REAL NOT NULL
)
"""


class StoreError(Exception):
    """The lease file cannot be opened or written: reported as one line by the CLIs."""


class StoreUnavailable(StoreError):
    """A shared store is gone for now: answer nothing; the store logs the state change
    itself and reconnects, so the server adds no line per packet."""


class StoreBusy(StoreError):
    """Another server holds what this request needs: stay silent, the client retries."""


def default_leases_path(tool: str, iface: str) -> Path:
    """`/var/lib/ptftpd/TOOL-IFACE.sqlite`: one file per instance, so servers on
    different interfaces never share (or fight over) a pool."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in iface)
    return DEFAULT_LEASES_DIR / f"{tool}-{safe}.sqlite"


class LeaseFile:
    """A lease file as both DHCP stores (IPv4 and IPv6) use it: opened in WAL mode at
    the chosen sync level with the schema created; read, written in a transaction and
    rolled back alike, any failure one `error` line naming the file."""

    def __init__(
        self, path: Path | str, synchronous: str, schema: str, error: type[Exception]
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise error(f"lease sync must be normal or full, not {synchronous.lower()}")
        self.path = Path(path)
        self.error = error
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(path), isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={synchronous}")
            self.db.execute(schema)
        except (sqlite3.Error, OSError) as exc:
            raise error(f"cannot open lease file {path}: {exc}") from None

    def read(self, query: str) -> list[Any]:
        try:
            return self.db.execute(query).fetchall()
        except sqlite3.Error as exc:
            raise self.error(f"cannot read lease file {self.path}: {exc}") from None

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """A write inside a transaction (opened unless one is): a failure rolls it
        back and is one `error` line."""
        try:
            if not self.db.in_transaction:
                self.db.execute("BEGIN IMMEDIATE")
            yield self.db
        except sqlite3.Error as exc:
            self.rollback()
            raise self.error(f"cannot write lease file {self.path}: {exc}") from None

    def rollback(self) -> None:
        try:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def close(self) -> None:
        self.db.close()


class SqliteStore:
    def __init__(self, path: Path | str, synchronous: str = "NORMAL") -> None:
        self.path = Path(path)
        self._batching = False
        self._file = LeaseFile(path, synchronous, _SCHEMA, StoreError)
        self._from_leases6()
        # Group commit: commits made, and the lease rows they carried (the rows of the
        # open transaction are pending).
        self.commits = 0
        self.carried = 0
        self._pending = 0

    def load(self) -> list[Lease[Any]]:
        rows = self._file.read(
            "SELECT address, client, mac, state, expires, hostname, since FROM leases"
        )
        leases: list[Lease[Any]] = []
        for address, client, mac, state, expires, hostname, since in rows:
            try:
                leases.append(
                    Lease(
                        ip_address(address),
                        bytes(client),
                        mac,
                        LeaseState(state),
                        math.inf if expires is None else float(expires),
                        hostname,
                        float(since),
                    )
                )
            except ValueError:
                continue  # a row from a future version: skip rather than refuse to start
        return leases

    def _from_leases6(self) -> None:
        """A DHCPv6 lease file of an older version keeps its bindings in `leases6`
        (address, DUID, IAID): they move into `leases` once, in one transaction, keyed
        by the DUID and the IAID's 4 bytes with the DUID in hex as `mac`, the rows the
        one lease policy reads for IPv4 and IPv6 alike."""
        found = self._file.read("SELECT name FROM sqlite_master WHERE name = 'leases6'")
        if not found:
            return
        old = self._file.read("SELECT address, duid, iaid, state, expires, since FROM leases6")
        rows = []
        for address, duid, iaid, state, expires, since in old:
            key = bytes(duid) + int(iaid).to_bytes(4, "big")
            rows.append((address, key, bytes(duid).hex(), state, expires, None, since))
        with self._file.writing() as db:
            db.executemany("INSERT OR IGNORE INTO leases VALUES (?,?,?,?,?,?,?)", rows)
            db.execute("DROP TABLE leases6")
            db.execute("COMMIT")

    def save(self, leases: Iterable[Lease[Any]]) -> None:
        rows = [
            (
                str(lease.address),
                lease.client_key,
                lease.mac,
                lease.state.value,
                None if math.isinf(lease.expires) else lease.expires,
                lease.hostname,
                lease.since,
            )
            for lease in leases
        ]
        if not self._file.db.in_transaction:
            self._pending = 0  # a failed transaction's rows were rolled back
        with self._file.writing() as db:
            db.executemany("INSERT OR REPLACE INTO leases VALUES (?,?,?,?,?,?,?)", rows)
            self._pending += len(rows)
            if not self._batching:
                self._commit()

    def forget(self, addresses: Iterable[IPv4Address | IPv6Address]) -> None:
        """Delete rows past their end (a sparse IPv6 pool's), in the open batch."""
        rows = [(str(address),) for address in addresses]
        if not rows:
            return
        if not self._file.db.in_transaction:
            self._pending = 0
        with self._file.writing() as db:
            db.executemany("DELETE FROM leases WHERE address = ?", rows)
            if not self._batching:
                self._commit()

    def _commit(self) -> None:
        self._file.db.execute("COMMIT")
        self.commits += 1
        self.carried += self._pending
        self._pending = 0

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group the saves of one burst of packets into one commit.

        The server handles every datagram that is waiting, commits once, and only then
        sends the replies: the ACKs still follow a durable commit, at a fraction of the
        cost per lease."""
        if self._batching:
            yield
            return
        self._batching = True
        try:
            yield
        finally:
            # Commit even when handling failed half-way: the policy already counts
            # those leases as granted, so the file must too.
            self._batching = False
            if self._file.db.in_transaction:
                with self._file.writing():
                    self._commit()

    def free_index(self) -> FreeIndex:
        """The file has one writer (this server), so the search runs in memory."""
        return HeapFreeIndex()

    def close(self) -> None:
        self._file.close()
