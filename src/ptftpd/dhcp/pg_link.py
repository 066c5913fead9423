"""The connection to the lease database: a pool, fault detection and reconnection.

Kept apart from the lease operations (pg_store.py) because it knows nothing of DHCP:
it runs a function on a pooled connection inside a transaction (or a savepoint of the
current burst), tells a lost database (`StoreUnavailable`) from rows another server
holds (`StoreBusy`), and after a loss refuses at once until the next reconnection
attempt, spaced by a bounded exponential backoff, so a server answers nothing instead
of blocking or printing a traceback per packet. One line is logged when the database
goes and one when it comes back (psycopg_pool's own per-attempt warnings are muted).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import errors as pgerrors
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from ptftpd.dhcp import store
from ptftpd.dhcp.pg_schema import migrate
from ptftpd.dhcp.store import StoreError

__all__ = [
    "PgLink",
    "PgStoreError",
    "RowsBusy",
    "StoreBusy",
    "StoreUnavailable",
    "describe",
    "init_schema",
]

log = logging.getLogger("ptftpd.dhcp")
T = TypeVar("T")


# Another server holds or just took the rows: retry, or stay silent (the client retries).
class RowsBusy(Exception):
    """An operation's function reported a race it lost (raised by the operation)."""


_BUSY = (
    RowsBusy,
    pgerrors.UniqueViolation,
    pgerrors.LockNotAvailable,
    pgerrors.DeadlockDetected,
    pgerrors.SerializationFailure,
    pgerrors.QueryCanceled,
)


class PgStoreError(StoreError):
    """The lease database cannot be used: one line, for the CLI to print and exit 1."""


class StoreUnavailable(PgStoreError, store.StoreUnavailable):
    """The database is gone (or not back yet): answer nothing, the store reconnects."""


class StoreBusy(PgStoreError, store.StoreBusy):
    """Another server holds the rows this request needs: stay silent, the client retries."""


class StatementFailed(PgStoreError):
    """One statement failed (bad data from a client, a constraint): that client gets no
    answer; the database is not lost and every other client is served."""


# The connection or the server is gone (or a pooled connection could not be had).
_LOST = (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout)


def describe(conninfo: str) -> str:
    """The database named for a log line or an error, without its password."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error:
        return "the lease database (unparsable URI)"
    host = params.get("host") or "local socket"
    port = f":{params['port']}" if params.get("port") else ""
    user = f"{params['user']}@" if params.get("user") else ""
    return f"postgresql {user}{host}{port}/{params.get('dbname', '')}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _connect(conninfo: str, timeout: float) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(conninfo, autocommit=True, connect_timeout=max(1, round(timeout)))
    except (psycopg.Error, ValueError) as exc:
        raise PgStoreError(f"cannot reach {describe(conninfo)}: {_one_line(exc)}") from None


def init_schema(conninfo: str, connect_timeout: float = 5.0) -> int:
    """Create or migrate the schema and return its version (what `--init-db` runs)."""
    with _connect(conninfo, connect_timeout) as conn:
        try:
            return migrate(conn)
        except psycopg.Error as exc:
            raise PgStoreError(f"cannot create the lease schema: {_one_line(exc)}") from None


class PgLink:
    """A connection pool to one database, with the schema migrated when it opens.

    Tuned by keyword, as psycopg_pool's own pool is (no user setting feeds these: each
    user of the link picks its size): `min_connections`/`max_connections` size the
    pool; `connect_timeout` bounds a (re)connection; `lock_timeout` is how long an
    operation waits for a row another server holds before reporting it busy; `backoff`
    is the first and the longest interval between reconnection attempts after the
    database is lost (seconds); `clock` is the backoff's monotonic clock (injectable for
    tests)."""

    def __init__(
        self,
        conninfo: str,
        server_id: str,
        *,
        min_connections: int = 1,
        max_connections: int = 4,
        connect_timeout: float = 5.0,
        lock_timeout: float = 0.2,
        backoff: tuple[float, float] = (0.5, 30.0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_connections = max_connections
        self.conninfo = conninfo
        self.owner = server_id
        self.name = describe(conninfo)
        self._connect_timeout = connect_timeout
        self._backoff_first, self._backoff_max = backoff
        self._clock = clock
        self._state_lock = threading.Lock()
        self._down_reason: str | None = None
        self._delay = self._backoff_first
        self._retry_at = 0.0
        self._local = threading.local()
        # Fails with one line when the database is unreachable or its schema is newer.
        with _connect(conninfo, connect_timeout) as conn:
            try:
                migrate(conn)
            except psycopg.Error as exc:
                raise PgStoreError(f"cannot create the lease schema: {_one_line(exc)}") from None
        lock_ms = max(1, round(lock_timeout * 1000))
        # The pool would log every failed reconnection; we log once per state change.
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)

        def configure(conn: psycopg.Connection[Any]) -> None:
            # A row another server holds for long is skipped or reported busy, never
            # waited for: the client retransmits anyway.
            conn.execute(f"SET lock_timeout = {lock_ms}")
            conn.execute("SET statement_timeout = 10000")

        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] = (
            psycopg_pool.ConnectionPool(
                conninfo,
                min_size=min_connections,
                max_size=max_connections,
                kwargs={
                    "autocommit": True,
                    "prepare_threshold": 1,
                    "connect_timeout": max(1, round(connect_timeout)),
                },
                configure=configure,
                timeout=connect_timeout,
                reconnect_timeout=0,  # no retries of its own: our backoff decides
                open=False,
                name=f"leases-{server_id}",
            )
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
        except psycopg_pool.PoolTimeout as exc:
            self._pool.close()
            raise PgStoreError(f"cannot reach {self.name}: {_one_line(exc)}") from None

    # -- availability ------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self._down_reason is None

    def _gate(self) -> None:
        """Refuse at once while down, until the next reconnection attempt is due."""
        with self._state_lock:
            if self._down_reason is None:
                return
            if self._clock() < self._retry_at:
                raise StoreUnavailable(f"{self.name} is unavailable: {self._down_reason}")
            self._retry_at = self._clock() + self._delay  # one attempt per interval
        try:
            self._probe()
        except psycopg.Error as exc:
            self._lost(exc)
            raise StoreUnavailable(f"{self.name} is unavailable: {_one_line(exc)}") from None
        # Reachable again: open the gate now, or the operations of the burst that
        # made this attempt would each be refused until the next one.
        self._recovered()

    def _probe(self) -> None:
        """Connect afresh (fails fast when the server is gone), then let the pool drop
        the connections that died with the old server instead of failing on each."""
        timeout = max(1, round(self._connect_timeout))
        psycopg.connect(self.conninfo, connect_timeout=timeout).close()
        self._pool.check()

    def _lost(self, exc: BaseException) -> None:
        with self._state_lock:
            if self._down_reason is None:
                self._down_reason = _one_line(exc)
                self._delay = self._backoff_first
                log.warning(
                    "server %s: lease database %s lost: %s; answering nothing, reconnecting",
                    self.owner,
                    self.name,
                    self._down_reason,
                )
            else:
                self._delay = min(self._delay * 2, self._backoff_max)
            self._retry_at = self._clock() + self._delay

    def _recovered(self) -> None:
        with self._state_lock:
            if self._down_reason is not None:
                self._down_reason = None
                self._delay = self._backoff_first
                log.warning(
                    "server %s: lease database %s is back: serving leases again",
                    self.owner,
                    self.name,
                )

    # -- running one operation ----------------------------------------------------------

    def run(
        self, op: Callable[[psycopg.Connection[Any]], T], *, attempts: int = 3, atomic: bool = False
    ) -> T:
        """`op(conn)` in a transaction (a savepoint inside a burst), retried when it
        loses a race. `atomic`: op is one statement that cannot fail half-way (a read,
        or a function that catches its own races), so it needs neither."""
        self._gate()
        batch: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if batch is not None:
            attempts = 1  # our burst holds locks: retrying would wait on ourselves
            if batch.info.transaction_status is TransactionStatus.INERROR:
                # An earlier statement of this burst failed: the rest of it can only
                # fail too, and none of its replies will go out (see `batch`).
                raise StoreBusy(f"this burst was rolled back in {self.name}")
        probed = batch is not None  # a burst's connection cannot be swapped half-way
        attempt = 0
        while True:
            try:
                if batch is not None and atomic:
                    result = op(batch)
                elif batch is not None:
                    with batch.transaction():  # a savepoint inside the burst's transaction
                        result = op(batch)
                elif atomic:
                    with self._pool.connection() as conn:  # autocommit: its own transaction
                        result = op(conn)
                else:
                    with self._pool.connection() as conn, conn.transaction():
                        result = op(conn)
            except _BUSY as exc:
                attempt += 1
                if attempt < attempts:
                    continue  # another server just took what we wanted: look again
                raise StoreBusy(f"lease rows busy in {self.name}: {_one_line(exc)}") from None
            except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
                if not isinstance(exc, _LOST):
                    why = _one_line(exc)
                    raise StatementFailed(f"statement failed in {self.name}: {why}") from None
                if not probed:
                    probed = True
                    try:
                        self._probe()
                    except psycopg.Error:
                        pass
                    else:
                        continue  # a pooled connection had died (server restarted)
                self._lost(exc)
                raise StoreUnavailable(f"{self.name} is unavailable: {_one_line(exc)}") from None
            self._recovered()
            return result

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Run the operations of one burst in one transaction: one commit for all.

        Each operation is a savepoint, so one that loses a race is undone alone. The
        caller sends the replies after the block: if the commit fails this raises
        `StoreUnavailable` and none of the burst's grants may be announced."""
        if getattr(self._local, "conn", None) is not None:
            yield
            return
        self._gate()
        conn = self._begin()
        self._local.conn = conn
        try:
            yield
        finally:
            self._local.conn = None
            try:
                if conn.info.transaction_status is TransactionStatus.INERROR:
                    # COMMIT would silently roll back: the burst's grants are not
                    # recorded, so its replies must not go out.
                    conn.execute("ROLLBACK")
                    raise StoreBusy(f"a burst was rolled back in {self.name}")
                conn.execute("COMMIT")
            except _LOST as exc:
                self._lost(exc)
                raise StoreUnavailable(f"{self.name} lost the burst: {_one_line(exc)}") from None
            except psycopg.Error as exc:
                # The database refused the commit (a deferred check): this burst's
                # grants are not recorded, so its replies must not go out.
                raise StatementFailed(
                    f"commit refused in {self.name}: {_one_line(exc)}"
                ) from None
            finally:
                self._pool.putconn(conn)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Inside `batch`: what runs in the block is undone alone when it fails (the
        burst's transaction goes on); outside a burst, nothing."""
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.info.transaction_status is TransactionStatus.INERROR:
            yield
            return
        try:
            with conn.transaction():
                yield
        except psycopg.Error as exc:  # the savepoint itself could not be made or released
            self._lost(exc)
            raise StoreUnavailable(f"{self.name} lost the burst: {_one_line(exc)}") from None

    def _begin(self) -> psycopg.Connection[Any]:
        """A pooled connection inside BEGIN; a dead pooled one is replaced once."""
        for probed in (False, True):
            conn: psycopg.Connection[Any] | None = None
            try:
                conn = self._pool.getconn()
                conn.execute("BEGIN")
                return conn
            except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
                if conn is not None:
                    self._pool.putconn(conn)
                if not probed:
                    try:
                        self._probe()
                        continue
                    except psycopg.Error:
                        pass
                self._lost(exc)
                raise StoreUnavailable(f"{self.name} is unavailable: {_one_line(exc)}") from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._pool.close()
