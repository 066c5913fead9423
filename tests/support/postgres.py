"""A throw-away PostgreSQL cluster for the tests: Debian's binaries, a temp directory.

One cluster per test session (initdb costs a second or two), a fresh database per test.
The server listens on a Unix socket inside its private directory and on 127.0.0.1 on a
free port, never on any other address. It runs as an unprivileged user (postgres refuses
root): the current user, or `nobody` when the tests run as root, with the directory owned
by that user. Durability is switched off (`--no-sync`, `fsync=off`): the tests check
concurrency and faults, not disks. The cluster is stopped with `pg_ctl stop -m immediate`
(pg_ctl signals the postmaster by the PID in its own pid file) and its directory removed.

Use from a conftest: `from support.postgres import pg_cluster, pg_database`.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

from support import missing

SUPERUSER = "ptftpd"
SOCKET_PORT_FALLBACK = 5432


def _bindir() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgCluster:
    """A running cluster: `uri(db)` for libpq, `stop()`/`start()` for fault tests."""

    bindir: Path
    root: Path
    user: pwd.struct_passwd | None  # None: run as the current (non-root) user
    port: int = 0
    databases: list[str] = field(default_factory=list)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root

    def uri(self, dbname: str = "postgres") -> str:
        """A libpq URI over the Unix socket (host given as a query parameter)."""
        return (
            f"postgresql://{SUPERUSER}@/{dbname}"
            f"?host={quote(str(self.socket_dir), safe='')}&port={self.port}"
        )

    def tcp_uri(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C", "HOME": str(self.root)},
            **kwargs,  # type: ignore[call-overload]
        )

    def initdb(self) -> None:
        done = self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--no-sync",
            "--encoding=UTF8",
            "--locale=C",
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()}")

    @property
    def running(self) -> bool:
        done = self._run(str(self.bindir / "pg_ctl"), "status", "-D", str(self.data), timeout=30)
        return done.returncode == 0

    def start(self) -> None:
        """Start (or restart after `stop`) on the same socket and port."""
        attempts = 1 if self.port else 3
        error = ""
        for _ in range(attempts):
            if not self.port or attempts > 1:
                self.port = _free_tcp_port()
            options = " ".join(
                [
                    "-c listen_addresses=127.0.0.1",
                    f"-p {self.port}",
                    f"-k {self.socket_dir}",
                    "-c fsync=off",
                    "-c full_page_writes=off",
                    "-c shared_buffers=32MB",
                    "-c max_connections=60",
                    "-c log_min_messages=warning",
                ]
            )
            done = self._run(
                str(self.bindir / "pg_ctl"),
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(self.data),
                "-l",
                str(self.root / "server.log"),
                "-o",
                options,
            )
            if done.returncode == 0:
                return
            error = done.stderr.strip() or done.stdout.strip()
        raise RuntimeError(f"pg_ctl start failed: {error}; log: {self.log_tail()}")

    def stop(self) -> None:
        """Immediate stop, as a crash or a lost server looks to clients."""
        self._run(
            str(self.bindir / "pg_ctl"), "stop", "-m", "immediate", "-w", "-D", str(self.data)
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.root / "server.log").read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        done = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                dbname,
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.psql(f"CREATE DATABASE {name}")
        self.databases.append(name)
        return name

    def drop_database(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if name in self.databases:
            self.databases.remove(name)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster() -> PgCluster:
    """initdb + start in a fresh temp directory; raises RuntimeError when that fails."""
    bindir = _bindir()
    assert bindir is not None
    user: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        user = pwd.getpwnam("nobody")
    # Short path: the socket path must stay under the 107-byte sun_path limit.
    root = Path(tempfile.mkdtemp(prefix="ptpg", dir="/tmp"))
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
    os.chmod(root, 0o700)
    cluster = PgCluster(bindir, root, user)
    try:
        cluster.initdb()
        cluster.start()
    except BaseException:
        cluster.destroy()
        raise
    return cluster


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One throw-away cluster for the session (skip locally / fail in CI without it)."""
    if _bindir() is None:
        missing("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("nobody")
        except KeyError:
            missing("no unprivileged user 'nobody' to run PostgreSQL as")
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_database(pg_cluster: PgCluster) -> Iterator[str]:
    """A fresh, empty database for one test: its libpq URI (Unix socket)."""
    if not pg_cluster.running:  # a fault test that failed half-way
        pg_cluster.start()
    name = pg_cluster.create_database()
    try:
        yield pg_cluster.uri(name)
    finally:
        if not pg_cluster.running:
            pg_cluster.start()
        pg_cluster.drop_database(name)
