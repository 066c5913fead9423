"""Benchmark ptftpd against other TFTP servers, one after another, with one client.

    sudo .venv/bin/python bench/tftp_server_bench.py --update-docs

For each server (ours, tftpd-hpa, atftpd, the original ptftpd 1.3, the PyPI `tftp`
package's server, dnsmasq): the same 64 MiB download with atftp 0.8 as the client, at
512-byte blocks without options, blksize 1428, and blksize 1428 + windowsize 16; then
100 atftp clients fetching a 4 MiB file at once (wall time, failures, server CPU
seconds with children, peak RSS). Every download is checked for size and SHA-256.

Peers are installed on first use under bench/.work/ (see bench/peers.py). As root the
measurements run inside a network namespace made for the run (and removed after it), so
dnsmasq can have port 69 and nothing collides with other tests on the host; all traffic
stays on that namespace's loopback. Results go to bench/results/ as JSON; --update-docs
rewrites the "## TFTP server" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
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
    Peer,
    PeerUnavailable,
    RssSampler,
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


def _reap(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """Wait for a client at most `timeout` s; kill it (by PID) if it overruns."""
    try:
        rc: int | None = proc.wait(max(timeout, 0.0))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        rc = None
    _children.pop(proc.pid, None)
    return rc


def _kill_children() -> None:
    for proc in list(_children.values()):
        if proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
    _children.clear()


# -- measurements ----------------------------------------------------------------------


@dataclass
class SingleResult:
    negotiated: str = ""
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    failure: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds and not self.failure else None


@dataclass
class ConcurrentResult:
    clients: int = 0
    walls: list[float] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    peak_rss: int = 0
    failure_examples: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class PeerResult:
    name: str
    label: str
    version: str
    notes: list[str]
    unavailable: str | None = None
    single: dict[str, SingleResult] = field(default_factory=dict)
    concurrent: ConcurrentResult | None = None


def measure_single(
    server: RunningServer,
    data: DataFile,
    options: dict[str, str],
    reps: int,
    outdir: Path,
    timeout: float,
) -> SingleResult:
    result = SingleResult(negotiated=probe_options(server.port, data.name, options))
    out = outdir / "single.out"
    for _ in range(reps):
        out.unlink(missing_ok=True)
        server.quiesce()
        cpu0 = server.cpu_seconds()
        with open(outdir / "single.err", "wb") as err:
            t0 = time.perf_counter()
            proc = _spawn(atftp_command(server.port, data.name, out, options), err)
            rc = _reap(proc, timeout)
            elapsed = time.perf_counter() - t0
        server.quiesce()
        cpu = server.cpu_seconds() - cpu0
        problem = verify(out, data)
        if rc is None:
            problem = f"client timed out after {timeout:.0f} s ({problem or 'complete'})"
        elif rc != 0:
            message = (outdir / "single.err").read_text(errors="replace").strip()
            last = message.splitlines()[-2:] if message else []
            problem = f"client exit {rc}: {' / '.join(last)}; {problem or 'file complete'}"
        if problem:
            result.failure = problem
            break
        result.seconds.append(elapsed)
        result.cpu.append(cpu)
    out.unlink(missing_ok=True)
    return result


def measure_concurrent(
    server: RunningServer,
    data: DataFile,
    clients: int,
    reps: int,
    outdir: Path,
    timeout: float,
) -> ConcurrentResult:
    result = ConcurrentResult(clients=clients)
    with RssSampler(server.proc) as sampler:
        for _ in range(reps):
            server.quiesce()
            rundir = outdir / "concurrent"
            shutil.rmtree(rundir, ignore_errors=True)
            rundir.mkdir()
            cpu0 = server.cpu_seconds()
            errs = [open(rundir / f"c{i}.err", "wb") for i in range(clients)]  # noqa: SIM115
            try:
                t0 = time.perf_counter()
                procs = [
                    _spawn(atftp_command(server.port, data.name, rundir / f"c{i}", {}), errs[i])
                    for i in range(clients)
                ]
                deadline = t0 + timeout
                codes = [_reap(p, deadline - time.perf_counter()) for p in procs]
                wall = time.perf_counter() - t0
            finally:
                for f in errs:
                    f.close()
            server.quiesce()
            cpu = server.cpu_seconds() - cpu0
            failed = 0
            for i, rc in enumerate(codes):
                problem = verify(rundir / f"c{i}", data)
                if rc != 0:
                    problem = f"client exit {rc}; {problem or 'file complete'}"
                if problem:
                    failed += 1
                    if len(result.failure_examples) < 3:
                        result.failure_examples.append(problem)
            result.walls.append(wall)
            result.failures.append(failed)
            result.cpu.append(cpu)
            shutil.rmtree(rundir, ignore_errors=True)
    result.peak_rss = sampler.peak
    return result


def bench_peer(peer: Peer, args: argparse.Namespace, big: DataFile, small: DataFile) -> PeerResult:
    result = PeerResult(peer.name, peer.label, peer.version, list(peer.notes), peer.unavailable)
    if peer.unavailable:
        return result
    logs = RESULTS / "logs"
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else WORK
    outdir = Path(tempfile.mkdtemp(prefix="tftp-bench-", dir=base))
    try:
        try:
            with peer.running(args.root, logs) as server:
                for key, _label, options in SINGLE_ROWS:
                    single = measure_single(
                        server, big, options, args.reps, outdir, args.client_timeout
                    )
                    result.single[key] = single
                    print(f"  {peer.name} {key}: {_single_text(single)}", flush=True)
            # a fresh server for the concurrent run, so CPU and RSS are its own
            if args.clients:
                with peer.running(args.root, logs) as server:
                    conc = measure_concurrent(
                        server, small, args.clients, args.reps, outdir, args.concurrent_timeout
                    )
                    result.concurrent = conc
                    print(f"  {peer.name} concurrent: {_conc_text(conc)}", flush=True)
        except PeerUnavailable as exc:
            result.unavailable = f"could not start: {exc}"
            print(f"  {peer.name}: {result.unavailable}", flush=True)
    finally:
        shutil.rmtree(outdir, ignore_errors=True)
    return result


def _single_text(s: SingleResult) -> str:
    if s.failure:
        return f"FAILED ({s.failure}); first answer: {s.negotiated}"
    return f"{' '.join(f'{x:.3f}' for x in s.seconds)} s; first answer: {s.negotiated}"


def _conc_text(c: ConcurrentResult) -> str:
    return (
        f"walls {' '.join(f'{x:.2f}' for x in c.walls)} s, failures {c.failures}, "
        f"cpu {' '.join(f'{x:.2f}' for x in c.cpu)} s, peak rss {c.peak_rss / MIB:.1f} MiB"
    )


# -- report ----------------------------------------------------------------------------


def _by_name(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in results}


def _median_single(r: dict[str, Any] | None, key: str) -> float | None:
    if not r or r.get("unavailable"):
        return None
    s = r["single"].get(key)
    if not s or s["failure"] or not s["seconds"]:
        return None
    return float(statistics.median(s["seconds"]))


def _conc_medians(r: dict[str, Any] | None) -> tuple[float, float, int] | None:
    if not r or r.get("unavailable") or not r.get("concurrent"):
        return None
    c = r["concurrent"]
    if not c["walls"]:
        return None
    return (
        float(statistics.median(c["walls"])),
        float(statistics.median(c["cpu"])),
        int(sum(c["failures"])),
    )


def _lacks_window(negotiated: str) -> bool:
    return "windowsize=" not in negotiated


def render(report: dict[str, Any]) -> str:
    results: list[dict[str, Any]] = report["results"]
    named = _by_name(results)
    meta = report["meta"]
    big_mib = meta["big_bytes"] // MIB
    small_mib = meta["small_bytes"] // MIB
    lines = [
        SECTION,
        "",
        f"Measured {meta['date']} on {meta['machine']} ({meta['where']}); "
        f"load average before the run {meta['load_before']}, after {meta['load_after']}.",
        "",
        "```sh",
        meta["command"],
        "```",
        "",
        f"Client for every row: `{meta['client']}` (the only Debian TFTP client with "
        "windowsize), started once per download. Each figure is the median of "
        f"{meta['reps']} runs; every download is checked for size and SHA-256. "
        "Speed ratios are the server's speed divided by the reference's (higher is better).",
        "",
        f"### One {big_mib} MiB download",
        "",
        "| Server | Version | " + " | ".join(label for _, label, _ in SINGLE_ROWS) + " |",
        "| --- | --- | " + " | ".join("---" for _ in SINGLE_ROWS) + " |",
    ]
    for r in results:
        cells = []
        for key, _label, _opts in SINGLE_ROWS:
            cells.append(_single_cell(r, key, named))
        lines.append(f"| {r['label']} | {r['version']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Server CPU seconds for that download (user + system, children included, median):",
        "",
        "| Server | " + " | ".join(label for _, label, _ in SINGLE_ROWS) + " |",
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
    clients = meta["clients"]
    lines += [
        "",
        f"### {clients} clients at once, {small_mib} MiB each (512-byte blocks, no options)",
        "",
        "| Server | Wall s | vs tftpd-hpa wall | Failed downloads | Server CPU s | Peak RSS MiB |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    hpa = _conc_medians(named.get("tftpd-hpa"))
    for r in results:
        if r.get("unavailable"):
            lines.append(f"| {r['label']} | {_esc(r['unavailable'])} | | | | |")
            continue
        m = _conc_medians(r)
        if m is None:
            lines.append(f"| {r['label']} | not run | | | | |")
            continue
        wall, cpu, failed = m
        c = r["concurrent"]
        ratio = f"{wall / hpa[0]:.2f}x" if hpa else "-"
        total = clients * len(c["walls"])
        fail = f"{failed} of {total}"
        if c["failure_examples"]:
            fail += f" ({_esc(c['failure_examples'][0])})"
        lines.append(
            f"| {r['label']} | {wall:.2f} | {ratio} | {fail} | {cpu:.2f} | "
            f"{c['peak_rss'] / MIB:.1f} |"
        )
    lines += ["", "### Targets (issue 2)", ""]
    lines += [f"- {t}" for t in targets(report)]
    notes = [f"{r['label']}: {n}" for r in results for n in r["notes"]]
    lines += [
        "",
        "### Notes",
        "",
        "- Speed is the file size over the client's wall time (process start to exit).",
        "- Server CPU is `psutil` user + system time of the server process, its threads and "
        "its reaped children, read before and after; peak RSS is the larger of the main "
        "process's VmHWM and the sampled sum of RSS over its process tree (shared pages of "
        "forked children are counted once per child).",
        "- The windowed row asks for windowsize 16; a server that does not acknowledge it "
        "is marked and the client falls back to one block per ACK.",
        "- Other work ran on the same 2-core machine during the run; figures vary by "
        "roughly ±10 % between runs.",
    ]
    lines += [f"- {_esc(n)}" for n in notes]
    return "\n".join(lines) + "\n"


def _esc(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _single_cell(r: dict[str, Any], key: str, named: dict[str, dict[str, Any]]) -> str:
    if r.get("unavailable"):
        return _esc(r["unavailable"])
    s = r["single"].get(key)
    if s is None:
        return "not run"
    size = r.get("big_bytes") or 0
    if s["failure"]:
        return f"**FAIL**: {_esc(s['failure'])}"
    median = float(statistics.median(s["seconds"]))
    speed = size / median / MIB
    text = f"{speed:.0f} MiB/s ({median:.2f} s)"
    hpa = _median_single(named.get("tftpd-hpa"), key)
    if hpa and r["name"] != "tftpd-hpa":
        text += f", {hpa / median:.2f}x hpa"
    if key == "1428w16":
        atftpd = _median_single(named.get("atftpd"), key)
        if atftpd and r["name"] != "atftpd":
            text += f", {atftpd / median:.2f}x atftpd"
        if _lacks_window(s["negotiated"]):
            text += " (no windowsize: lockstep)"
    return text


def targets(report: dict[str, Any]) -> list[str]:
    named = _by_name(report["results"])
    ours = named.get("ptftpd")
    out: list[str] = []

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**missed**"

    w_ours = _median_single(ours, "1428w16")
    w_atftpd = _median_single(named.get("atftpd"), "1428w16")
    if w_ours and w_atftpd:
        out.append(
            f"blksize 1428 + windowsize 16 at least as fast as atftpd: "
            f"{w_atftpd / w_ours:.2f}x, {verdict(w_ours <= w_atftpd)}"
        )
    for key, label in (("512", "512 B, no options"), ("1428", "blksize 1428")):
        mine = _median_single(ours, key)
        hpa = _median_single(named.get("tftpd-hpa"), key)
        if mine and hpa:
            out.append(
                f"{label} at least 0.8x tftpd-hpa: {hpa / mine:.2f}x, {verdict(hpa / mine >= 0.8)}"
            )
    c_ours = _conc_medians(ours)
    c_hpa = _conc_medians(named.get("tftpd-hpa"))
    c_old = _conc_medians(named.get("ptftpd-1.3"))
    if c_ours:
        out.append(f"concurrent: zero failures: {c_ours[2]} failed, {verdict(c_ours[2] == 0)}")
        if c_hpa:
            ratio = c_ours[0] / c_hpa[0]
            out.append(
                f"concurrent: wall within 1.5x tftpd-hpa: {ratio:.2f}x, {verdict(ratio <= 1.5)}"
            )
        if c_old:
            out.append(
                f"concurrent: less CPU than ptftpd 1.3: {c_ours[1]:.2f} s vs {c_old[1]:.2f} s, "
                f"{verdict(c_ours[1] < c_old[1])}"
            )
    return out or ["not evaluated (ptftpd or a reference did not run)"]


def update_docs(text: str) -> None:
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
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _on_term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run_inner(args: argparse.Namespace) -> dict[str, Any]:
    signal.signal(signal.SIGTERM, _on_term)
    peers = build_peers(args.peers)
    for peer in peers:
        try:
            peer.setup()
        except PeerUnavailable as exc:
            peer.unavailable = f"unavailable: {exc}"
    big = make_data(args.root, f"bench-{args.big_mib}M.bin", args.big_mib * MIB)
    small = make_data(args.root, f"bench-{args.small_mib}M.bin", args.small_mib * MIB)
    load_before = _loadavg()
    results = []
    try:
        for peer in peers:
            print(f"{peer.label} {peer.version}", flush=True)
            res = asdict(bench_peer(peer, args, big, small))
            res["big_bytes"] = big.size
            results.append(res)
    finally:
        _kill_children()
    return {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.release()}",
            "where": args.where,
            "load_before": load_before,
            "load_after": _loadavg(),
            "command": args.command_line,
            "client": atftp_version(),
            "reps": args.reps,
            "clients": args.clients,
            "big_bytes": big.size,
            "small_bytes": small.size,
        },
        "results": results,
    }


def run_in_netns(args: argparse.Namespace, argv: list[str]) -> int:
    """Re-run this script inside a fresh network namespace; remove it afterwards."""
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
        cmd = ["ip", "netns", "exec", ns, sys.executable, str(Path(__file__).resolve())]
        inner = subprocess.Popen([*cmd, *argv, "--inner", "--where", f"network namespace {ns}"])
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


def setup_peers(names: list[str] | None) -> None:
    """Install every peer (needs the package registries, so outside the namespace)."""
    for peer in build_peers(names):
        try:
            peer.setup()
            print(f"ready: {peer.label} {peer.version}", flush=True)
        except PeerUnavailable as exc:
            print(f"unavailable: {peer.label}: {exc}", flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--reps", type=int, default=3, help="runs of each measurement (median)")
    p.add_argument("--clients", type=int, default=100, help="concurrent clients (0: skip)")
    p.add_argument("--big-mib", type=int, default=64, help="size of the single download")
    p.add_argument("--small-mib", type=int, default=4, help="size of each concurrent download")
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
    p.add_argument("--json", type=Path, help="where to write results (default bench/results/)")
    p.add_argument("--update-docs", action="store_true", help="rewrite docs/benchmarks.md section")
    p.add_argument("--render", type=Path, help="only render an earlier JSON result")
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--where", default="host loopback", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.root = WORK / "data"
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
        ["(as root) .venv/bin/python bench/tftp_server_bench.py", *map(shlex.quote, _shown(argv))]
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
        setup_peers(args.peers)
        use_netns = args.netns == "yes" or (
            args.netns == "auto" and os.geteuid() == 0 and shutil.which("ip") is not None
        )
        if use_netns:
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
