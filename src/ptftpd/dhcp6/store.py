"""SQLite store for DHCPv6 bindings: one row per address, committed before each Reply.

Same approach as the IPv4 store (`ptftpd.dhcp.store`): WAL journal, `synchronous=NORMAL`
by default, so a committed binding survives `kill -9` of the server; "FULL" adds an
fsync per commit to survive power loss too. Kept separate from the IPv4 table because
the key is (DUID, IAID), not a MAC.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ptftpd.dhcp.store import LeaseFile
from ptftpd.dhcp6.leases import Lease6, LocalStore6, lease_from_row

__all__ = ["Lease6StoreError", "SqliteStore6"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases6 (
    address  TEXT PRIMARY KEY,
    duid     BLOB NOT NULL,
    iaid     INTEGER NOT NULL,
    state    TEXT NOT NULL,
    expires  REAL NOT NULL,
    since    REAL NOT NULL
)
"""


class Lease6StoreError(Exception):
    """The lease file cannot be opened, read or written (one line for the CLI)."""


class SqliteStore6(LocalStore6):
    def __init__(self, path: Path | str, synchronous: str = "NORMAL") -> None:
        self.path = Path(path)
        self._file = LeaseFile(path, synchronous, _SCHEMA, Lease6StoreError)

    def load(self) -> list[Lease6]:
        rows = self._file.read("SELECT address, duid, iaid, state, expires, since FROM leases6")
        return [lease for row in rows if (lease := lease_from_row(row)) is not None]

    def save(self, leases: Iterable[Lease6]) -> None:
        rows = [(str(x.address), x.duid, x.iaid, x.state.value, x.expires, x.since) for x in leases]
        with self._file.writing() as db:
            db.executemany("INSERT OR REPLACE INTO leases6 VALUES (?,?,?,?,?,?)", rows)
            db.execute("COMMIT")

    def close(self) -> None:
        self._file.close()
