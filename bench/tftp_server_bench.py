"""Benchmark ptftpd against other TFTP servers, one after another, with one client.

    .venv/bin/python bench/tftp_server_bench.py --update-docs      # as root

Servers: ours, tftpd-hpa, atftpd, the original ptftpd 1.3 (PyPI), the PyPI `tftp`
package's server and dnsmasq. Client: atftp 0.8 for everything. Measured:

- the same 64 MiB download at 512-byte blocks without options, with blksize 1428, and
  with blksize 1428 + windowsize 16;
- 100 atftp clients fetching a 4 MiB file at once: wall time, failures, server CPU
  seconds (children included), peak memory.

Every download is checked for size and SHA-256. The servers take turns: each round runs
every measurement once against every server, so a burst of load from elsewhere on the
machine spreads over all of them instead of landing on one; the best wall time of the
rounds is reported (CPU: the median).

Peers are installed on first use under bench/.work/ (see bench/peers.py). As root the
measurements run inside a network namespace made for the run and removed after it, so
dnsmasq can have port 69 and nothing collides with tests on the host; all traffic stays
on loopback. Results go to bench/results/ as JSON; --update-docs rewrites the
"## TFTP server" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import resource
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import (
    HOST,
    REPO,
    WORK,
    MemorySampler,
    Peer,
    PeerUnavailable,
    RunningServer,
    build_peers,
    probe_options,
)

RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "benchmarks.md"
SECTION = "## TFTP server"
MIB = 1024 * 1024

# (key, label, options the client asks for)
SINGLE_ROWS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("512", "512 B, no options", {}),
    ("1428", "blksize 1428", {"blksize": "1428"}),
    ("1428w16", "blksize 1428 + windowsize 16", {"blksize": "1428", "windowsize": "16"}),
)

_children: dict[int, subprocess.Popen[bytes]] = {}


# -- data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataFile:
    name: str
    size: int
    sha256: str


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def make_data(root: Path, name: str, size: int) -> DataFile:
    """A random file of `size` bytes in `root` (kept across runs), world-readable."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    path = root / name
    sidecar = root / f".{name}.sha256"
    if not path.exists() or path.stat().st_size != size or not sidecar.exists():
        with open(path, "wb") as f:
            left = size
            while left:
                n = min(left, 1 << 20)
                f.write(os.urandom(n))
                left -= n
        sidecar.write_text(_sha256(path))
    path.chmod(0o644)
    return DataFile(name, size, sidecar.read_text().strip())


def verify(out: Path, expected: DataFile) -> str | None:
    """None when `out` is exactly the expected file, else what is wrong."""
    if not out.exists():
        return "no output file"
    size = out.stat().st_size
    if size != expected.size:
        return f"got {size} of {expected.size} bytes"
    if _sha256(out) != expected.sha256:
        return "content differs (sha256)"
    return None


# -- client ----------------------------------------------------------------------------


def atftp_command(port: int, remote: str, local: Path, options: dict[str, str]) -> list[str]:
    cmd = ["atftp"]
    for name, value in options.items():
        cmd += ["--option", f"{name} {value}"]
    return [*cmd, "-g", "-r", remote, "-l", str(local), HOST, str(port)]


def atftp_version() -> str:
    out = subprocess.run(["atftp", "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else "?"


def _spawn(cmd: list[str], stderr: Any) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    _children[proc.pid] = proc
    return proc


def wait_clients(
    procs: list[subprocess.Popen[bytes]], deadline: float
) -> tuple[list[int | None], float, float]:
    """Wait for every client until `deadline` (perf_counter); kill (by PID) the late ones.

    Returns the exit codes (None: killed), the perf_counter time the last one exited and
    the CPU seconds the clients used (from wait4). Exits are seen through pidfds, at
    once: Popen.wait(timeout) polls with sleeps of up to 50 ms, which would round every
    measured time up to that grain.
    """
    codes: dict[int, int | None] = {}
    client_cpu = 0.0
    last = time.perf_counter()
    fds: dict[int, subprocess.Popen[bytes]] = {}
    try:
        for proc in procs:
            fds[os.pidfd_open(proc.pid)] = proc
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        pending = set(fds)
        while pending:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            events = poller.poll(left * 1000)
            now = time.perf_counter()
            for fd, _ in events:
                if fd in pending:
                    pending.discard(fd)
                    poller.unregister(fd)
                    last = now
                    proc = fds[fd]
                    _, status, usage = os.wait4(proc.pid, 0)
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    client_cpu += usage.ru_utime + usage.ru_stime
                    codes[proc.pid] = proc.returncode
    finally:
        for fd in fds:
            os.close(fd)
    for proc in procs:
        if proc.pid not in codes:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
                codes[proc.pid] = None
            else:
                codes[proc.pid] = proc.returncode
                last = time.perf_counter()
        _children.pop(proc.pid, None)
    return [codes[p.pid] for p in procs], last, client_cpu


def _kill_children() -> None:
    for proc in list(_children.values()):
        if proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
    _children.clear()


# -- a quiet machine --------------------------------------------------------------------


def _cpu_ticks() -> tuple[int, int]:
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]), idle


def cpu_busy(sample: float = 0.3) -> float:
    """Fraction of all CPUs busy during the next `sample` seconds (0..1)."""
    total0, idle0 = _cpu_ticks()
    time.sleep(sample)
    total1, idle1 = _cpu_ticks()
    total = total1 - total0
    return 0.0 if total <= 0 else 1.0 - (idle1 - idle0) / total


class QuietWaiter:
    """Waits for a lull on the machine before each measurement, within a total budget.

    Other work on the machine (test suites, other benches) distorts timings badly on
    2 cores. Each wait lasts at most `max_wait` s and all of them together at most
    `budget` s, so the run stays bounded; the busy fraction seen last is returned, and
    the report shows it.
    """

    def __init__(self, threshold: float, max_wait: float, budget: float) -> None:
        self.threshold = threshold
        self.max_wait = max_wait
        self.left = budget

    def __call__(self) -> float:
        start = time.monotonic()
        deadline = start + max(0.0, min(self.max_wait, self.left))
        while True:
            busy = cpu_busy()
            if busy < self.threshold or time.monotonic() >= deadline:
                self.left -= time.monotonic() - start
                return busy


class ForeignLoad:
    """How much of the machine something other than this measurement used meanwhile.

    Busy CPU time of the whole machine (/proc/stat) minus the server's, the clients'
    and this script's own, as a fraction of the machine's capacity over the wall time.
    A sample above the threshold is "disturbed": it is kept, but the best undisturbed
    sample is reported, and a row with none is measured again (bounded).
    """

    def __init__(self) -> None:
        self.busy0 = self._busy()
        self.self0 = self._self_cpu()

    @staticmethod
    def _busy() -> float:
        total, idle = _cpu_ticks()
        return (total - idle) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _self_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def fraction(self, wall: float, server_cpu: float, client_cpu: float) -> float:
        busy = self._busy() - self.busy0
        own = self._self_cpu() - self.self0
        foreign = busy - server_cpu - client_cpu - own
        return max(0.0, foreign) / (max(wall, 1e-3) * (os.cpu_count() or 1))


# -- measurements ----------------------------------------------------------------------


@dataclass
class SingleResult:
    negotiated: str = ""
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    foreign: list[float] = field(default_factory=list)
    failure: str | None = None


@dataclass
class ConcurrentResult:
    clients: int = 0
    walls: list[float] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    foreign: list[float] = field(default_factory=list)
    peak_memory: int = 0
    failure_examples: list[str] = field(default_factory=list)


@dataclass
class PeerResult:
    name: str
    label: str
    version: str
    notes: list[str]
    unavailable: str | None = None
    cpu_method: str = ""
    busy_before: list[float] = field(default_factory=list)
    single: dict[str, SingleResult] = field(default_factory=dict)
    concurrent: ConcurrentResult | None = None


def _client_problem(rc: int | None, err: Path, problem: str | None, timeout: float) -> str | None:
    """What went wrong with one download, or None: size/hash first, then the client's word."""
    if rc is None:
        return f"{problem or 'file complete'}; client timed out after {timeout:.0f} s"
    if rc != 0:
        message = err.read_text(errors="replace").strip() if err.exists() else ""
        lines = [ln.strip() for ln in message.splitlines()]
        said = [ln for ln in lines if "error received" in ln] or [
            ln for ln in lines if ln and not ln.startswith("Option ")
        ]
        reason = said[0].removeprefix("tftp: ") if said else f"exit {rc}"
        return f"{problem or 'file complete'}; client: {reason}"
    return problem


def measure_single(
    server: RunningServer,
    data: DataFile,
    options: dict[str, str],
    result: SingleResult,
    outdir: Path,
    timeout: float,
    pin_cpu: int | None = None,
) -> None:
    """One download; appends its time and server CPU to `result`, or sets its failure."""
    out, err = outdir / "single.out", outdir / "single.err"
    out.unlink(missing_ok=True)
    server.quiesce()
    cpu0 = server.cpu_seconds()
    load = ForeignLoad()
    with open(err, "wb") as err_file:
        t0 = time.perf_counter()
        pin = ["taskset", "-c", str(pin_cpu)] if pin_cpu is not None else []
        proc = _spawn([*pin, *atftp_command(server.port, data.name, out, options)], err_file)
        (rc,), end, client_cpu = wait_clients([proc], t0 + timeout)
        elapsed = end - t0
    server.quiesce()
    cpu = server.cpu_seconds() - cpu0
    foreign = load.fraction(time.perf_counter() - t0, cpu, client_cpu)
    problem = _client_problem(rc, err, verify(out, data), timeout)
    out.unlink(missing_ok=True)
    if problem:
        result.failure = problem
    else:
        result.seconds.append(elapsed)
        result.cpu.append(cpu)
        result.foreign.append(foreign)


def measure_concurrent(
    server: RunningServer,
    data: DataFile,
    result: ConcurrentResult,
    outdir: Path,
    timeout: float,
    blksize: int = 512,
) -> None:
    """`result.clients` downloads started at once; appends one round to `result`."""
    clients = result.clients
    rundir = outdir / "concurrent"
    options = {"blksize": str(blksize)} if blksize != 512 else {}
    shutil.rmtree(rundir, ignore_errors=True)
    rundir.mkdir()
    server.quiesce()
    cpu0 = server.cpu_seconds()
    load = ForeignLoad()
    with MemorySampler(server.proc) as sampler, contextlib.ExitStack() as stack:
        errs = [stack.enter_context(open(rundir / f"c{i}.err", "wb")) for i in range(clients)]
        t0 = time.perf_counter()
        procs = [
            _spawn(atftp_command(server.port, data.name, rundir / f"c{i}", options), errs[i])
            for i in range(clients)
        ]
        codes, end, client_cpu = wait_clients(procs, t0 + timeout)
        wall = end - t0
    server.quiesce()
    cpu = server.cpu_seconds() - cpu0
    foreign = load.fraction(time.perf_counter() - t0, cpu, client_cpu)
    failed = 0
    for i, rc in enumerate(codes):
        problem = _client_problem(rc, rundir / f"c{i}.err", verify(rundir / f"c{i}", data), timeout)
        if problem:
            failed += 1
            if len(result.failure_examples) < 3:
                result.failure_examples.append(problem)
    result.walls.append(wall)
    result.failures.append(failed)
    result.cpu.append(cpu)
    result.foreign.append(foreign)
    result.peak_memory = max(result.peak_memory, sampler.peak)
    shutil.rmtree(rundir, ignore_errors=True)


def _start_all(
    stack: contextlib.ExitStack,
    peers: list[Peer],
    results: dict[str, PeerResult],
    root: Path,
    cpu: int | None = None,
) -> dict[str, RunningServer]:
    servers: dict[str, RunningServer] = {}
    for peer in peers:
        res = results[peer.name]
        if res.unavailable:
            continue
        try:
            servers[peer.name] = stack.enter_context(peer.running(root, RESULTS / "logs", cpu))
            res.cpu_method = servers[peer.name].cpu.method
        except PeerUnavailable as exc:
            res.unavailable = f"could not start: {exc}"
            print(f"  {peer.name}: {res.unavailable}", flush=True)
    return servers


def run_rounds(
    peers: list[Peer], args: argparse.Namespace, big: DataFile, small: DataFile
) -> list[PeerResult]:
    results = {
        p.name: PeerResult(p.name, p.label, p.version, list(p.notes), p.unavailable) for p in peers
    }
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else WORK
    outdir = Path(tempfile.mkdtemp(prefix="tftp-bench-", dir=base))
    try:
        with contextlib.ExitStack() as stack:
            servers = _start_all(stack, peers, results, args.root, args.pin)
            for name, server in servers.items():
                for key, _label, options in SINGLE_ROWS:
                    negotiated = probe_options(server.port, big.name, options)
                    results[name].single[key] = SingleResult(negotiated=negotiated)
            for round_no in range(1, args.reps + 1):
                print(f"single downloads, round {round_no}/{args.reps}", flush=True)
                for name, server in servers.items():
                    results[name].busy_before.append(args.wait_quiet())
                    for key, _label, options in SINGLE_ROWS:
                        single = results[name].single[key]
                        if single.failure:
                            continue  # a failure is final: no retry hides it
                        measure_single(
                            server, big, options, single, outdir, args.client_timeout, args.pin
                        )
                        shown = single.failure or (
                            f"{single.seconds[-1]:.3f} s, other load {single.foreign[-1]:.0%}"
                        )
                        print(f"  {name:11} {key:8} {shown}", flush=True)
        if not args.clients:
            return list(results.values())
        # fresh servers, so CPU and memory belong to the concurrent runs alone
        with contextlib.ExitStack() as stack:
            servers = _start_all(stack, peers, results, args.root)
            for name in servers:
                results[name].concurrent = ConcurrentResult(clients=args.clients)
            for round_no in range(1, args.concurrent_reps + 1):
                print(f"{args.clients} clients at once, round {round_no}", flush=True)
                for name, server in servers.items():
                    conc = results[name].concurrent
                    assert conc is not None
                    results[name].busy_before.append(args.wait_quiet())
                    measure_concurrent(
                        server, small, conc, outdir, args.concurrent_timeout, args.conc_blksize
                    )
                    packets = args.clients * (small.size // args.conc_blksize + 1)
                    print(
                        f"  {name:11} wall {conc.walls[-1]:.2f} s, failed {conc.failures[-1]}, "
                        f"cpu {conc.cpu[-1]:.2f} s ({conc.cpu[-1] / packets * 1e6:.1f} us/packet), "
                        f"peak memory {conc.peak_memory / MIB:.1f} MiB, "
                        f"other load {conc.foreign[-1]:.0%}",
                        flush=True,
                    )
    finally:
        _kill_children()
        shutil.rmtree(outdir, ignore_errors=True)
    return list(results.values())


# -- report ----------------------------------------------------------------------------


def _by_name(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in results}


def _best_single(r: dict[str, Any] | None, key: str) -> float | None:
    if not r or r.get("unavailable"):
        return None
    s = r["single"].get(key)
    if not s or s["failure"] or not s["seconds"]:
        return None
    return float(min(s["seconds"]))


def _conc_summary(r: dict[str, Any] | None) -> tuple[float, float, int] | None:
    """Best wall time, median CPU, total failed downloads."""
    if not r or r.get("unavailable") or not r.get("concurrent"):
        return None
    c = r["concurrent"]
    if not c["walls"]:
        return None
    return (
        float(min(c["walls"])),
        float(statistics.median(c["cpu"])),
        int(sum(c["failures"])),
    )


def _lacks_window(negotiated: str) -> bool:
    return "windowsize=" not in negotiated


def _esc(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _single_cell(r: dict[str, Any], key: str, named: dict[str, dict[str, Any]]) -> str:
    if r.get("unavailable"):
        return _esc(r["unavailable"])
    s = r["single"].get(key)
    if s is None or not (s["failure"] or s["seconds"]):
        return "not run"
    if s["failure"]:
        return f"**fails**: {_esc(s['failure'])}"
    best = float(min(s["seconds"]))
    text = f"{r['big_bytes'] / best / MIB:.0f} MiB/s ({best:.2f} s)"
    hpa = _best_single(named.get("tftpd-hpa"), key)
    if hpa and r["name"] != "tftpd-hpa":
        text += f", {hpa / best:.2f}x hpa"
    if key == "1428w16":
        atftpd = _best_single(named.get("atftpd"), key)
        if atftpd and r["name"] != "atftpd":
            text += f", {atftpd / best:.2f}x atftpd"
        if _lacks_window(s["negotiated"]):
            text += " (**no windowsize**: OACK without it, ran one block per ACK)"
    return text


def _concurrent_table(
    results: list[dict[str, Any]], named: dict[str, dict[str, Any]], meta: dict[str, Any]
) -> list[str]:
    clients = meta["clients"]
    small_mib = meta["small_bytes"] // MIB
    blk = meta.get("conc_blksize", 512)
    packets = clients * (meta["small_bytes"] // blk + 1)
    how = "512-byte blocks, no options" if blk == 512 else f"blksize {blk}, lock-step"
    lines = [
        "",
        f"### {clients} clients at once, {small_mib} MiB each ({how})",
        "",
        "| Server | Wall s (best) | Wall vs tftpd-hpa | Failed downloads | Server CPU s "
        "| CPU µs per packet | CPU vs tftpd-hpa | Peak memory MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    hpa = _conc_summary(named.get("tftpd-hpa"))
    for r in results:
        if r.get("unavailable"):
            lines.append(f"| {r['label']} | {_esc(r['unavailable'])} | | | | | | |")
            continue
        summary = _conc_summary(r)
        if summary is None:
            lines.append(f"| {r['label']} | not run | | | | | | |")
            continue
        wall, cpu, failed = summary
        c = r["concurrent"]
        ratio = f"{wall / hpa[0]:.2f}x" if hpa else "-"
        fail = f"{failed} of {clients * len(c['walls'])}"
        if c["failure_examples"]:
            fail += f" ({_esc(c['failure_examples'][0])})"
        cpu_ratio = f"{cpu / hpa[1]:.2f}x" if hpa and hpa[1] else "-"
        lines.append(
            f"| {r['label']} | {wall:.2f} | {ratio} | {fail} | {cpu:.2f} | "
            f"{cpu / packets * 1e6:.1f} | {cpu_ratio} | {c['peak_memory'] / MIB:.1f} |"
        )
    return lines


def _pin_note(meta: dict[str, Any]) -> str:
    if meta.get("pin") is None:
        return "- Single downloads ran unpinned."
    return (
        f"- Single downloads: server and client pinned to CPU {meta['pin']} (`taskset`), so "
        "a time is the CPU work of both plus their context switches. Unpinned, one "
        "block per ACK means one cross-CPU wake-up per packet, and on this shared 2-core VM "
        "the same download then took anywhere from 1x to 3x its best time, for every "
        "server alike. The concurrent test runs unpinned on all CPUs."
    )


def _foreign_text(results: list[dict[str, Any]]) -> str:
    values = [
        f
        for r in results
        if not r.get("unavailable")
        for s in [*r["single"].values(), *([r["concurrent"]] if r.get("concurrent") else [])]
        for f in s.get("foreign", [])
    ]
    if not values:
        return "not measured"
    return f"median {statistics.median(values):.0%}, max {max(values):.0%}"


def render(report: dict[str, Any]) -> str:
    results: list[dict[str, Any]] = report["results"]
    named = _by_name(results)
    meta = report["meta"]
    big_mib = meta["big_bytes"] // MIB
    row_labels = [label for _, label, _ in SINGLE_ROWS]
    lines = [
        SECTION,
        "",
        f"Measured {meta['date']} on {meta['machine']}, in a {meta['where']}; "
        f"load average {meta['load_before']} before the run, {meta['load_after']} after "
        "(other work shared the machine).",
        "",
        "```sh",
        "# as root (network namespace, port 69 for dnsmasq, cgroup CPU accounting);",
        "# --update-docs rewrites this section; peers install under bench/.work/ on first use",
        meta["command"],
        "```",
        "",
        f"Client for every row: `{meta['client']}`, the one Debian TFTP client with "
        "windowsize, started once per download. Servers take turns: each of "
        f"{meta['reps']} rounds downloads once from every server (the concurrent test: "
        f"{meta['concurrent_reps']} rounds), and the table shows each server's **best** "
        "wall time (CPU: the median). Every download is checked for size and SHA-256. "
        "Ratios are speed relative to the named server (higher is better).",
        "",
        f"### One {big_mib} MiB download",
        "",
        "| Server | Version | " + " | ".join(row_labels) + " |",
        "| --- | --- | " + " | ".join("---" for _ in SINGLE_ROWS) + " |",
    ]
    for r in results:
        cells = [_single_cell(r, key, named) for key, _, _ in SINGLE_ROWS]
        lines.append(f"| {r['label']} | {r['version']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Server CPU seconds for that download (user + system, children included, median):",
        "",
        "| Server | " + " | ".join(row_labels) + " |",
        "| --- | " + " | ".join("---" for _ in SINGLE_ROWS) + " |",
    ]
    for r in results:
        cells = []
        for key, _label, _opts in SINGLE_ROWS:
            s = None if r.get("unavailable") else r["single"].get(key)
            if not s or s["failure"] or not s["cpu"]:
                cells.append("-")
            else:
                cells.append(f"{statistics.median(s['cpu']):.2f}")
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    if meta["clients"]:
        lines += _concurrent_table(results, named, meta)
    lines += ["", "### Targets (issue 9)", ""]
    lines += [f"- {t}" for t in targets(report)]
    methods = sorted({r["cpu_method"] for r in results if r.get("cpu_method")})
    busy = [b for r in results for b in r.get("busy_before", [])]
    busy_text = (
        f"median {statistics.median(busy):.0%}, max {max(busy):.0%}" if busy else "not measured"
    )
    lines += [
        "",
        "### How it is measured",
        "",
        "- Speed: file size over the client's wall time, process start to exit.",
        _pin_note(meta),
        "- Other load: the machine's busy CPU time during a sample minus the server's, "
        "the clients' and the bench's own, as a share of both CPUs; samples seen: "
        f"{_foreign_text(results)}.",
        f"- Server CPU: user + system seconds of the server and everything it forked "
        f"({', '.join(methods) or 'psutil'}), read before and after each run.",
        "- Peak memory: the main process's RSS plus the PSS of its child processes "
        "(forking servers), sampled every 0.25 s, and at least the main process's VmHWM.",
        f"- Before each server's turn the bench waits (up to {meta.get('quiet_wait', 0):.0f} s) "
        f"for the machine to be under {meta.get('quiet', 0):.0%} busy; busy fraction seen: "
        f"{busy_text}.",
        "- The windowed row asks for windowsize 16; a server that does not acknowledge it "
        "is marked, and the client then falls back to one block per ACK.",
        "- Each server ran with its defaults except where noted below; the option "
        "negotiation was probed with one request per row before the runs.",
    ]
    lines += [f"- {r['label']}: {_esc(n)}" for r in results for n in r["notes"]]
    return "\n".join(lines) + "\n"


def targets(report: dict[str, Any]) -> list[str]:
    """Issue 9's targets, for each of our rows (single process and workers)."""
    named = _by_name(report["results"])
    out: list[str] = []

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**missed**"

    for name in ("ptftpd", "ptftpd-w2"):
        ours = named.get(name)
        if not ours or ours.get("unavailable"):
            continue
        w_ours = _best_single(ours, "1428w16")
        w_atftpd = _best_single(named.get("atftpd"), "1428w16")
        if w_ours and w_atftpd:
            ratio = w_atftpd / w_ours
            out.append(
                f"{name}: blksize 1428 + windowsize 16 at least 1.2x atftpd: "
                f"{ratio:.2f}x, {verdict(ratio >= 1.2)}"
            )
        for key, label in (("512", "512 B, no options"), ("1428", "blksize 1428")):
            mine = _best_single(ours, key)
            hpa = _best_single(named.get("tftpd-hpa"), key)
            if mine and hpa:
                out.append(
                    f"{name}: {label} at least 1.0x tftpd-hpa: {hpa / mine:.2f}x, "
                    f"{verdict(hpa / mine >= 1.0)}"
                )
        c_ours = _conc_summary(ours)
        c_hpa = _conc_summary(named.get("tftpd-hpa"))
        if c_ours:
            out.append(
                f"{name}: concurrent, zero failures: {c_ours[2]} failed, "
                f"{verdict(c_ours[2] == 0)}"
            )
            if c_hpa:
                wall, cpu = c_ours[0] / c_hpa[0], c_ours[1] / c_hpa[1]
                out.append(
                    f"{name}: concurrent, wall at most 1.0x tftpd-hpa: {wall:.2f}x, "
                    f"{verdict(wall <= 1.0)}; server CPU at most 1.5x: {cpu:.2f}x, "
                    f"{verdict(cpu <= 1.5)}"
                )
    return out or ["not evaluated (ptftpd or a reference did not run)"]


def update_docs(text: str) -> None:
    """Replace the "## TFTP server" section of docs/benchmarks.md, nothing else."""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    old = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.rstrip() == SECTION), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
            len(lines),
        )
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + text + ("\n" + tail if tail else "")
    DOC.write_text(new)


# -- driver ----------------------------------------------------------------------------


def _loadavg() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _on_term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run_inner(args: argparse.Namespace) -> dict[str, Any]:
    signal.signal(signal.SIGTERM, _on_term)
    peers = build_peers(args.peers, args.alt_src)
    for peer in peers:
        try:
            peer.setup()
        except PeerUnavailable as exc:
            peer.unavailable = f"unavailable: {exc}"
    big = make_data(args.root, f"bench-{args.big_mib}M.bin", args.big_mib * MIB)
    small = make_data(args.root, f"bench-{args.small_mib}M.bin", args.small_mib * MIB)
    load_before = _loadavg()
    started = time.monotonic()
    results = []
    for res in run_rounds(peers, args, big, small):
        entry = asdict(res)
        entry["big_bytes"] = big.size
        results.append(entry)
    return {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.release()}",
            "where": args.where,
            "load_before": load_before,
            "load_after": _loadavg(),
            "seconds": round(time.monotonic() - started),
            "command": args.command_line,
            "client": atftp_version(),
            "reps": args.reps,
            "pin": args.pin,
            "concurrent_reps": args.concurrent_reps,
            "clients": args.clients,
            "conc_blksize": args.conc_blksize,
            "quiet": args.quiet,
            "quiet_wait": args.quiet_wait,
            "big_bytes": big.size,
            "small_bytes": small.size,
        },
        "results": results,
    }


def run_in_netns(args: argparse.Namespace, argv: list[str]) -> int:
    """Re-run this script inside a fresh network namespace; remove it afterwards.

    nsenter switches the network namespace only (unlike `ip netns exec`, which also
    remounts /sys), so the cgroup files that count server CPU stay reachable.
    """
    ns = f"ptftpd-bench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    inner: subprocess.Popen[bytes] | None = None
    try:
        for step in (
            ["ip", "link", "set", "lo", "up"],
            # glibc's AI_ADDRCONFIG ignores exactly 127.0.0.1, so with only that address
            # getaddrinfo("127.0.0.1") fails and tftpd-hpa refuses to start: add a second
            # loopback address (on lo, inside this namespace only).
            ["ip", "addr", "add", "127.0.0.2/32", "dev", "lo"],
        ):
            subprocess.run(["ip", "netns", "exec", ns, *step], check=True, timeout=30)
        cmd = ["nsenter", f"--net=/run/netns/{ns}", sys.executable, str(Path(__file__).resolve())]
        inner = subprocess.Popen([*cmd, *argv, "--inner", "--where", "network namespace"])
        try:
            return inner.wait(args.total_timeout)
        except subprocess.TimeoutExpired:
            print(f"benchmark overran {args.total_timeout:.0f} s: stopping it", file=sys.stderr)
            inner.terminate()
            try:
                inner.wait(30)
            except subprocess.TimeoutExpired:
                inner.kill()
                inner.wait(10)
            return 1
    finally:
        if inner is not None and inner.poll() is None:
            inner.kill()
            inner.wait(10)
        subprocess.run(["ip", "netns", "del", ns], check=False, timeout=30)


def setup_peers(names: list[str] | None, alt_src: Path | None) -> None:
    """Install every peer (needs the package registries, so outside the namespace)."""
    for peer in build_peers(names, alt_src):
        try:
            peer.setup()
            print(f"ready: {peer.label} {peer.version}", flush=True)
        except PeerUnavailable as exc:
            print(f"unavailable: {peer.label}: {exc}", flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--reps", type=int, default=5, help="rounds of single downloads (best)")
    p.add_argument("--concurrent-reps", type=int, default=3, help="rounds of the concurrent test")
    p.add_argument("--clients", type=int, default=100, help="concurrent clients (0: skip)")
    p.add_argument("--big-mib", type=int, default=64, help="size of the single download")
    p.add_argument("--small-mib", type=int, default=4, help="size of each concurrent download")
    p.add_argument("--conc-blksize", type=int, default=512, help="blksize of concurrent clients")
    p.add_argument("--peers", nargs="*", help="only these peers (names as in bench/peers.py)")
    p.add_argument("--client-timeout", type=float, default=60.0, help="bound on one download")
    p.add_argument(
        "--concurrent-timeout", type=float, default=120.0, help="bound on one concurrent run"
    )
    p.add_argument("--total-timeout", type=float, default=1500.0, help="bound on the whole run")
    p.add_argument(
        "--netns",
        choices=("auto", "yes", "no"),
        default="auto",
        help="run in a fresh network namespace (auto: when root)",
    )
    p.add_argument(
        "--pin",
        type=int,
        default=-2,
        help="CPU to pin server and client to for the single downloads (-1: no pinning; "
        "default: the last CPU when there are several)",
    )
    p.add_argument(
        "--quiet",
        type=float,
        default=0.3,
        help="before each measurement wait for the machine to be less busy than this (0..1)",
    )
    p.add_argument("--quiet-wait", type=float, default=10.0, help="longest such wait, s")
    p.add_argument(
        "--quiet-budget", type=float, default=120.0, help="longest all such waits together, s"
    )
    p.add_argument(
        "--alt-src",
        type=Path,
        help="also run ptftpd from this source tree (a folder holding ptftpd/) as ptftpd-alt",
    )
    p.add_argument("--json", type=Path, help="where to write results (default bench/results/)")
    p.add_argument("--update-docs", action="store_true", help="rewrite docs/benchmarks.md section")
    p.add_argument("--render", type=Path, help="only render an earlier JSON result")
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--where", default="host loopback", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.pin == -2:
        cpus = sorted(os.sched_getaffinity(0))
        args.pin = cpus[-1] if len(cpus) > 1 and shutil.which("taskset") else -1
    if args.pin < 0:
        args.pin = None
    args.root = WORK / "data"
    args.wait_quiet = QuietWaiter(args.quiet, args.quiet_wait, args.quiet_budget)
    return args


def _shown(argv: list[str]) -> list[str]:
    """The user's arguments, without the ones the namespace re-run adds."""
    shown: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--where", "--json"):
            skip = True
        elif arg != "--inner" and not arg.startswith(("--where=", "--json=")):
            shown.append(arg)
    return shown


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    args.command_line = " ".join(
        [".venv/bin/python bench/tftp_server_bench.py", *map(shlex.quote, _shown(argv))]
    )
    json_path: Path = args.json or RESULTS / "tftp_server_bench.json"

    if args.render:
        report = json.loads(args.render.read_text())
    elif args.inner:
        report = run_inner(args)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=1))
        return 0
    else:
        WORK.mkdir(parents=True, exist_ok=True)
        setup_peers(args.peers, args.alt_src)
        use_netns = args.netns == "yes" or (
            args.netns == "auto" and os.geteuid() == 0 and shutil.which("nsenter") is not None
        )
        if use_netns:
            json_path.unlink(missing_ok=True)
            rc = run_in_netns(args, [*argv, "--json", str(json_path)])
            if rc != 0 or not json_path.exists():
                print(f"benchmark failed (exit {rc})", file=sys.stderr)
                return 1
            report = json.loads(json_path.read_text())
        else:
            report = run_inner(args)
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(report, indent=1))
    text = render(report)
    print()
    print(text)
    if args.update_docs:
        update_docs(text)
        print(f"updated {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
