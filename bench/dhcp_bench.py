#!/usr/bin/env python3
"""DHCP benchmark: Kea's perfdhcp against `dhcpd -a` and dnsmasq, one after the other.

Both servers get the same pool, lease time and boot file, in a pair of network
namespaces made for the run (nothing leaves them). For each server, perfdhcp is run at
increasing rates, each step against a freshly started server with an empty lease file;
the result is the best measured rate of full four-way exchanges (DISCOVER, OFFER,
REQUEST, ACK) whose drop ratio stays at or below --max-drop percent. At that step the
server's own lease file is read back to count distinct addresses against distinct
clients: any address given to two clients shows up as fewer addresses than clients.

Rows: our dhcpd as shipped (every grant committed to SQLite before its ACK, safe against
kill -9) and with `--lease-sync full` (fsync too, safe against power loss); two of our
dhcpd servers (server identifiers 10.88.0.1 and .3) sharing one PostgreSQL database
(`--leases postgresql://...`, a throw-away cluster made for the run), with
perfdhcp broadcasting to both (they split the clients by RFC 3074 buckets, so the split
is exercised); ISC Kea's kea-dhcp4 (Debian's package) with its memfile backend (a CSV
lease file, appended per lease) and with its PostgreSQL backend on the same throw-away
cluster (schema from kea's dhcpdb_create.pgsql); dnsmasq as shipped (rewrites and
fsyncs its whole lease file on every change) and with `--leasefile-ro` (no lease file at
all: a ceiling, not a like-for-like rival). "ptftpd dhcpd (PostgreSQL)" is one of our
servers alone on the database, beside the two, for the per-lease figures: the servers'
CPU (threads included, PostgreSQL's own processes not) and the database's committed
transactions (pg_stat_database, reads included) per lease of the measured step. Every
server sits behind the same bridge in the client namespace. The cluster's fsync setting
is tests/support/postgres.py's.

Run as root:  .venv/bin/python bench/dhcp_bench.py
Every perfdhcp step and the whole run are bounded in time.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVER_IP = "10.88.0.1"
CLIENT_IP = "10.88.0.2"
PREFIX = 16
RANGE = ("10.88.1.0", "10.88.255.254")
LEASE_TIME = 3600
BOOTFILE = "pxelinux.0"
OURS = "ptftpd dhcpd"
OURS_FSYNC = "ptftpd dhcpd --lease-sync full"
OURS_PG = "ptftpd dhcpd x2 (PostgreSQL)"
OURS_PG1 = "ptftpd dhcpd (PostgreSQL)"
DNSMASQ = "dnsmasq"
DNSMASQ_RO = "dnsmasq --leasefile-ro"
KEA = "kea-dhcp4 memfile"
KEA_PG = "kea-dhcp4 PostgreSQL"
SERVERS = (OURS, OURS_FSYNC, OURS_PG1, OURS_PG, KEA, KEA_PG, DNSMASQ, DNSMASQ_RO)
SHARED = (OURS_PG1, OURS_PG, KEA_PG)  # a fresh PostgreSQL database per step
KEA_SCHEMA = Path("/usr/share/kea/scripts/pgsql/dhcpdb_create.pgsql")
SECOND_IP = "10.88.0.3"


@dataclass
class Step:
    rate: int
    measured: float
    sent: int
    acked: int
    cpu: float = 0.0  # the servers' CPU seconds during the step (threads included)
    commits: int | None = None  # PostgreSQL transactions committed during the step

    def per_lease(self) -> tuple[str, str]:
        """(server CPU ms per lease, database commits per lease) as table cells."""
        if not self.acked:
            return "-", "-"
        commits = "-" if self.commits is None else f"{self.commits / self.acked:.2f}"
        return f"{1000 * self.cpu / self.acked:.2f}", commits

    @property
    def drop_pct(self) -> float:
        return 100.0 * (1 - self.acked / self.sent) if self.sent else 100.0


@dataclass
class Result:
    name: str
    steps: list[Step]
    best: Step | None
    clients: int
    addresses: int


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        tag = f"{os.getpid() % 100000}"
        self.ns_s, self.ns_c = f"dhbs{tag}", f"dhbc{tag}"
        self.if_s, self.if_c = f"dbs{tag}", f"dbc{tag}"
        self.ns_s2, self.if_s2 = f"dhbt{tag}", f"dbt{tag}"
        self.cluster: Any = None  # tests/support/postgres.PgCluster, for OURS_PG
        self.deadline = time.monotonic() + args.time_limit

    # -- namespaces -----------------------------------------------------------------

    def sh(self, *argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True, timeout=30)

    def setup(self) -> None:
        """Client namespace with a bridge (perfdhcp's interface) and one veth port per
        server namespace: the second one only serves the shared-database row."""
        self.sh("ip", "netns", "add", self.ns_c)
        self.sh("ip", "-n", self.ns_c, "link", "add", self.if_c, "type", "bridge")
        self.sh("ip", "-n", self.ns_c, "addr", "add", f"{CLIENT_IP}/{PREFIX}", "dev", self.if_c)
        self.sh("ip", "-n", self.ns_c, "link", "set", self.if_c, "up")
        self.sh("ip", "-n", self.ns_c, "link", "set", "lo", "up")
        for ns, ifname, ip in (
            (self.ns_s, self.if_s, SERVER_IP),
            (self.ns_s2, self.if_s2, SECOND_IP),
        ):
            self.sh("ip", "netns", "add", ns)
            port = "p" + ifname
            self.sh(
                "ip", "link", "add", ifname, "netns", ns, "type", "veth",
                "peer", "name", port, "netns", self.ns_c,
            )  # fmt: skip
            self.sh("ip", "-n", self.ns_c, "link", "set", port, "master", self.if_c)
            self.sh("ip", "-n", self.ns_c, "link", "set", port, "up")
            self.sh("ip", "-n", ns, "addr", "add", f"{ip}/{PREFIX}", "dev", ifname)
            self.sh("ip", "-n", ns, "link", "set", ifname, "up")
            self.sh("ip", "-n", ns, "link", "set", "lo", "up")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            out = subprocess.run(
                ["ip", "-n", self.ns_c, "link", "show", "master", self.if_c],
                capture_output=True, text=True, timeout=10,
            ).stdout  # fmt: skip
            if out.count("state UP") >= 2:
                break
            time.sleep(0.1)
        time.sleep(2)  # the bridge ports learn and forward

    def teardown(self) -> None:
        for ns in (self.ns_s, self.ns_s2, self.ns_c):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=30)

    # -- servers ----------------------------------------------------------------------

    def kea_config(self, name: str, lease_file: Path | str) -> Path:
        """kea-dhcp4's JSON configuration for `name` (memfile or PostgreSQL)."""
        if name == KEA_PG:
            assert isinstance(lease_file, str)
            cluster = self.cluster
            dbname = lease_file.split("?")[0].rsplit("/", 1)[1]
            database: dict[str, Any] = {
                "type": "postgresql",
                "name": dbname,
                "host": str(cluster.socket_dir),
                "port": cluster.port,
                "user": "ptftpd",
            }
        else:
            database = {"type": "memfile", "persist": True, "name": str(lease_file)}
            database["lfc-interval"] = 0
        config = {
            "Dhcp4": {
                "interfaces-config": {"interfaces": [self.if_s]},
                "lease-database": database,
                "valid-lifetime": LEASE_TIME,
                "subnet4": [
                    {
                        "id": 1,
                        "subnet": f"{SERVER_IP}/{PREFIX}",
                        "pools": [{"pool": f"{RANGE[0]} - {RANGE[1]}"}],
                        "boot-file-name": BOOTFILE,
                    }
                ],
                "loggers": [
                    {"name": "kea-dhcp4", "output_options": [{"output": "stdout"}],
                     "severity": "WARN"}
                ],
            }
        }  # fmt: skip
        path = self.tmp / f"{Path(str(lease_file)).name[:40]}-kea.json"
        path.write_text(json.dumps(config, indent=1))
        return path

    def server_argv(self, name: str, lease_file: Path | str, iface: str = "") -> list[str]:
        if name in (KEA, KEA_PG):
            return ["kea-dhcp4", "-c", str(self.kea_config(name, lease_file))]
        if name.startswith(OURS):
            dhcpd = Path(sys.executable).parent / "dhcpd"
            extra = ["--lease-sync", "full"] if name == OURS_FSYNC else []
            return [
                str(dhcpd),
                "-a",
                "--range",
                *RANGE,
                "--lease-time",
                str(LEASE_TIME),
                "--leases",
                str(lease_file),
                *extra,
                iface or self.if_s,
                BOOTFILE,
            ]
        assert isinstance(lease_file, Path)
        lease_file.touch()
        storage = ["--leasefile-ro"] if name == DNSMASQ_RO else [f"--dhcp-leasefile={lease_file}"]
        return [
            "dnsmasq",
            "--no-daemon",
            "--port=0",
            f"--interface={self.if_s}",
            "--bind-interfaces",
            f"--dhcp-range={RANGE[0]},{RANGE[1]},255.255.0.0,{LEASE_TIME}",
            *storage,
            "--dhcp-lease-max=1000000",
            "--dhcp-authoritative",
            "--no-ping",
            f"--dhcp-boot={BOOTFILE}",
            "--user=root",
            "--no-resolv",
            "--no-hosts",
            "--quiet-dhcp",
            "--log-facility=-",
        ]

    def wait_bound(self, proc: subprocess.Popen[bytes], ns: str = "") -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            out = subprocess.run(
                ["ip", "netns", "exec", ns or self.ns_s, "cat", "/proc/net/udp"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout
            if any(line.split()[1].endswith(":0043") for line in out.splitlines()[1:]):
                return
            time.sleep(0.05)
        raise RuntimeError("server did not bind UDP port 67 within 15 s")

    def perfdhcp(self, rate: int, period: int, clients: int, target: str = SERVER_IP) -> Step:
        argv = [
            "ip",
            "netns",
            "exec",
            self.ns_c,
            "perfdhcp",
            "-4",
            "-l",
            self.if_c,
            "-r",
            str(rate),
            "-R",
            str(clients),
            "-p",
            str(period),
            "-W",
            "1000000",
            *([target] if target else []),  # none: perfdhcp broadcasts on the interface
        ]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=period + 30)
        out = res.stdout + res.stderr
        measured = re.search(r"Rate: ([\d.]+) 4-way", out)
        blocks = re.findall(
            r"Statistics for: ([A-Z-]+)\*+\s+sent packets: (\d+)\s+"
            r"received packets: (\d+)",
            out,
        )
        stats = {kind: (int(sent), int(recv)) for kind, sent, recv in blocks}
        if "DISCOVER-OFFER" not in stats:
            raise RuntimeError(f"cannot read perfdhcp output:\n{out[-2000:]}")
        sent = stats["DISCOVER-OFFER"][0]
        acked = stats.get("REQUEST-ACK", (0, 0))[1]
        return Step(rate, float(measured.group(1)) if measured else 0.0, sent, acked)

    def count(self, name: str, lease_file: Path | str) -> tuple[int, int]:
        """(distinct clients, distinct addresses) from the server's own lease file."""
        if name == DNSMASQ_RO:
            return (0, 0)  # nothing on disk to count
        if name in SHARED:
            import psycopg

            sql = "SELECT client, address FROM leases WHERE state='bound'"
            if name == KEA_PG:
                sql = "SELECT hwaddr, address FROM lease4 WHERE state = 0"
            with psycopg.connect(str(lease_file)) as conn:
                rows = conn.execute(sql).fetchall()
        elif name == KEA:
            # memfile CSV: address,hwaddr,client_id,valid_lifetime,expire,...; the last
            # line for an address wins (a lease is appended again when it changes).
            latest = {}
            for line in Path(lease_file).read_text().splitlines()[1:]:
                fields = line.split(",")
                if len(fields) > 9:
                    latest[fields[0]] = (fields[1], fields[0], fields[9])
            rows = [(hw, addr) for hw, addr, state in latest.values() if state == "0"]
        elif name.startswith(OURS):
            db = sqlite3.connect(lease_file)
            rows = db.execute("SELECT client, address FROM leases WHERE state='bound'").fetchall()
            db.close()
        else:
            rows = [
                tuple(line.split()[1:3])
                for line in lease_file.read_text().splitlines()
                if len(line.split()) >= 3
            ]
        return len({r[0] for r in rows}), len({r[1] for r in rows})

    def run_step(self, name: str, rate: int) -> tuple[Step, tuple[int, int]]:
        stem = f"{re.sub(r'[^A-Za-z0-9]+', '_', name)}-{rate}"
        lease_file: Path | str = self.tmp / f"{stem}.leases"
        places = [(self.ns_s, self.if_s)]
        target = SERVER_IP
        if name in SHARED:
            # A fresh database per step, as the others get a fresh lease file.
            lease_file = self.cluster.uri(self.cluster.create_database())
        if name == KEA_PG:
            self.kea_schema(str(lease_file))
        if name == OURS_PG:
            places.append((self.ns_s2, self.if_s2))
            target = ""  # broadcast: both servers hear every exchange
        procs: list[subprocess.Popen[bytes]] = []
        logs = []
        try:
            for n, (ns, ifname) in enumerate(places):
                log = open(self.tmp / f"{stem}-{n}.log", "wb")  # noqa: SIM115
                logs.append(log)
                # kea-dhcp4 writes its PID file and lock file here, not under /run.
                env = {**os.environ, "KEA_PIDFILE_DIR": str(self.tmp), "KEA_LOCKFILE_DIR": "none"}
                proc = subprocess.Popen(
                    ["ip", "netns", "exec", ns, *self.server_argv(name, lease_file, ifname)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=env,
                )
                procs.append(proc)
                self.wait_bound(proc, ns)
            # Warm-up: code paths, caches and the ARP/neighbour state, not measured.
            self.perfdhcp(100, 1, 50, target)
            pg = name in SHARED
            if pg:
                time.sleep(1.2)  # the warm-up's statistics reach pg_stat_database first
            cpu, commits = cpu_seconds(procs), xact_commits(str(lease_file)) if pg else 0
            step = self.perfdhcp(rate, self.args.period, self.args.clients, target)
            step.cpu = cpu_seconds(procs) - cpu
            time.sleep(0.3)
            if pg:
                time.sleep(1.2)  # backends report their statistics at most once a second
                step.commits = xact_commits(str(lease_file)) - commits
            counts = self.count(name, lease_file)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(5)
            for log in logs:
                log.close()
        return step, counts

    def kea_schema(self, uri: str) -> None:
        """Kea's own schema script, run by the cluster's psql."""
        psql = self.cluster.bindir / "psql"
        done = subprocess.run(
            [str(psql), "-q", "-v", "ON_ERROR_STOP=1", "-d", uri, "-f", str(KEA_SCHEMA)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"kea schema: {done.stderr.strip()[-500:]}")

    def wait_quiet(self) -> float:
        """Other work on a shared machine skews a step: wait (bounded) until the 1-minute
        load average is below --max-load, and report it either way."""
        deadline = min(time.monotonic() + self.args.quiet_wait, self.deadline)
        while os.getloadavg()[0] > self.args.max_load and time.monotonic() < deadline:
            time.sleep(2)
        return os.getloadavg()[0]

    def measure(self, names: list[str]) -> list[Result]:
        """Step all servers through the rates together (ours, then dnsmasq, at each
        rate), so that both see the same machine; a server stops at its first rate over
        the drop limit, after one retry, since a shared machine makes single runs noisy."""
        results = {name: Result(name, [], None, 0, 0) for name in names}
        active = list(names)
        for rate in self.args.rates:
            for name in list(active):
                res = results[name]
                for attempt in (1, 2):
                    if time.monotonic() + self.args.period + 40 > self.deadline:
                        print(f"  time limit reached: {name} stops before {rate}/s", flush=True)
                        active.remove(name)
                        break
                    load = self.wait_quiet()
                    step, counts = self.run_step(name, rate)
                    res.steps.append(step)
                    ok = step.drop_pct <= self.args.max_drop
                    print(
                        f"  {name:31} {rate:5}/s: {step.measured:7.1f} exchanges/s, "
                        f"drops {step.drop_pct:5.2f}%, {counts[1]} addresses / {counts[0]} "
                        f"clients, CPU {step.per_lease()[0]} ms/lease, commits "
                        f"{step.per_lease()[1]}/lease, load {load:4.1f}  "
                        f"{'ok' if ok else 'over the drop limit'}",
                        flush=True,
                    )
                    if ok:
                        if res.best is None or step.measured > res.best.measured:
                            res.best, (res.clients, res.addresses) = step, counts
                        break
                    if attempt == 2:
                        active.remove(name)
            if not active:
                break
        return [results[name] for name in names]


def cpu_seconds(procs: list[subprocess.Popen[bytes]]) -> float:
    """User + system CPU of the server processes so far (`ip netns exec` execs the
    server in its place, so the PID is the server's; threads are included)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for proc in procs:
        try:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def xact_commits(uri: str) -> int:
    """Transactions committed in the step's database so far (pg_stat_database)."""
    import psycopg

    with psycopg.connect(uri, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def table(results: list[Result], args: argparse.Namespace) -> str:
    ref = next((r for r in results if r.name == DNSMASQ), None)
    lines = [
        f"| server | 4-way exchanges/s (drops <= {args.max_drop}%) | drops at that rate "
        "| distinct addresses / clients | rate vs dnsmasq | server CPU ms / lease "
        "| database commits / lease |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        rate = r.best.measured if r.best else 0.0
        drops = f"{r.best.drop_pct:.2f}%" if r.best else "-"
        ratio = "-"
        if ref and ref.best and ref.best.measured > 0:
            ratio = f"{rate / ref.best.measured:.2f}x"
        counted = "not stored" if r.name == DNSMASQ_RO else f"{r.addresses} / {r.clients}"
        cpu, commits = r.best.per_lease() if r.best else ("-", "-")
        lines.append(
            f"| {r.name} | {rate:.0f} | {drops} | {counted} | {ratio} | {cpu} | {commits} |"
        )
    return "\n".join(lines)


def engine_cost(exchanges: int, runs: int) -> str:
    """CPU seconds for `exchanges` DISCOVER+REQUEST pairs through the sans-IO engine
    with a memory store (best of `runs`): the protocol code alone, without sockets,
    SQLite or perfdhcp, so it can be compared between two versions on a busy machine.
    Point PYTHONPATH at another checkout's src to measure that one."""
    from ipaddress import IPv4Address, IPv4Network

    from ptftpd.dhcp import DhcpConfig, DhcpServer, Message, decode, encode

    cfg = DhcpConfig(
        server_ip=IPv4Address(SERVER_IP),
        network=IPv4Network(f"{SERVER_IP}/{PREFIX}", strict=False),
        bootfile=BOOTFILE,
        answer_all=True,
        range_start=IPv4Address(RANGE[0]),
        range_end=IPv4Address(RANGE[1]),
    )
    wanted = {55: bytes([1, 3, 6, 15, 66, 67])}
    best = float("inf")
    for _ in range(runs):
        engine = DhcpServer(cfg).build_engine()
        # 568c0b2's engine reads its own clock: handle(data, source); ours takes `now`.
        handle: Callable[[bytes, tuple[str, int], float], list[Any]] = engine.handle
        if "now" not in inspect.signature(engine.handle).parameters:
            old = engine.handle
            handle = lambda data, source, _now, old=old: old(data, source)  # noqa: E731
        macs = [n.to_bytes(6, "big") + bytes(10) for n in range(exchanges)]
        discovers = [
            encode(Message(xid=n, chaddr=mac, options={53: b"\x01", **wanted}))
            for n, mac in enumerate(macs)
        ]
        started = time.process_time()
        for n, (mac, discover) in enumerate(zip(macs, discovers, strict=True)):
            now = time.time()
            offer = decode(handle(discover, ("0.0.0.0", 68), now)[0].payload)
            request = Message(
                xid=n,
                chaddr=mac,
                options={
                    53: b"\x03",
                    50: offer.yiaddr.packed,
                    54: IPv4Address(SERVER_IP).packed,
                    **wanted,
                },
            )
            handle(encode(request), ("0.0.0.0", 68), now)
        best = min(best, time.process_time() - started)
    rate = exchanges / best
    return f"engine: {best:.3f} s CPU for {exchanges} exchanges ({rate:.0f}/s), best of {runs}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--engine",
        type=int,
        metavar="N",
        help="only measure the sans-IO engine's CPU for N exchanges (no root needed)",
    )
    parser.add_argument("--clients", type=int, default=5000, help="simulated clients (-R)")
    parser.add_argument("--period", type=int, default=10, help="seconds per step")
    parser.add_argument(
        "--rates",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[50, 100, 150, 200, 250, 500, 1000, 2000, 3000, 4000, 5000, 6000],
        help="comma-separated request rates to try, ascending",
    )
    parser.add_argument("--max-drop", type=float, default=2.5, help="percent")
    parser.add_argument("--time-limit", type=float, default=1800, help="whole run, seconds")
    parser.add_argument(
        "--max-load", type=float, default=4.0, help="wait for a load average below this"
    )
    parser.add_argument(
        "--quiet-wait", type=float, default=60, help="longest wait for it before a step, s"
    )
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help=f"comma-separated, from: {', '.join(SERVERS)}",
    )
    args = parser.parse_args()
    if args.engine:
        print(engine_cost(args.engine, 3))
        return 0
    unknown = set(args.servers.split(",")) - set(SERVERS)
    if unknown:
        print(
            f"dhcp_bench: error: unknown server(s): {', '.join(sorted(unknown))}", file=sys.stderr
        )
        return 1
    if os.geteuid() != 0:
        print("dhcp_bench: error: needs root (network namespaces)", file=sys.stderr)
        return 1
    for tool in ("ip", "perfdhcp", "dnsmasq", "kea-dhcp4"):
        if shutil.which(tool) is None:
            print(
                f"dhcp_bench: error: {tool} is not installed (apt-get install kea-admin "
                "kea-dhcp4-server dnsmasq-base iproute2)",
                file=sys.stderr,
            )
            return 1
    with tempfile.TemporaryDirectory(prefix="dhcp-bench-") as tmp:
        bench = Bench(args, Path(tmp))
        try:
            if set(SHARED) & set(args.servers.split(",")):
                # The tests' throw-away cluster (initdb + pg_ctl as nobody, Unix socket).
                sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
                from support.postgres import start_cluster

                bench.cluster = start_cluster()
            bench.setup()
            load = os.getloadavg()[0]
            results = bench.measure(args.servers.split(","))
        except (RuntimeError, subprocess.SubprocessError) as exc:
            print(f"dhcp_bench: error: {exc}", file=sys.stderr)
            return 1
        finally:
            bench.teardown()
            if bench.cluster is not None:
                bench.cluster.destroy()
    print()
    print(
        f"load average before/after: {load:.1f}/{os.getloadavg()[0]:.1f}; "
        f"perfdhcp -4 -R {args.clients} -p {args.period} per step; pool {RANGE[0]}-"
        f"{RANGE[1]}; {os.cpu_count()} cores"
    )
    print(table(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
