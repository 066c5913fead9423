"""HTTP boot storm: pxed `--http-port` against Debian's nginx-light on one root, same run.

Both servers run in a network namespace made for the run, on its loopback (nothing
leaves the machine): pxed with `--http-port` (its DHCP side hears only loopback), nginx
with Debian's own defaults (worker_processes auto, worker_connections 768, sendfile on,
tcp_nopush on) and a config of its own in a temp dir (root, listen address, pid, logs,
temp paths). The clients are curl processes in the same namespace, each scenario one
curl with `--parallel` (one connection per download):

- 500 machines x 8 MiB at once,
- 100 machines x 64 MiB at once,
- one 1 GiB download.

Rounds are interleaved (the server order alternates per round) so both share the
machine's conditions. Per scenario: wall seconds (curl's run), server CPU seconds (user +
system of every process of the server: pxed and its TFTP workers, nginx's master and
workers; read from /proc before and after), failures (non-200, short body, curl error).

    sudo .venv/bin/python bench/http_bench.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

HOST = "127.0.0.1"
PXED_PORT = 8080
NGINX_PORT = 8081
MIB = 1024 * 1024
SCENARIOS = {  # name: (file, size, machines)
    "500 x 8 MiB": ("k8.bin", 8 * MIB, 500),
    "100 x 64 MiB": ("k64.bin", 64 * MIB, 100),
    "1 x 1 GiB": ("g1.bin", 1024 * MIB, 1),
}
NGINX_CONF = """\
worker_processes {workers};
pid {work}/nginx{port}.pid;
error_log {work}/nginx{port}-error.log;
events {{
    worker_connections 768;
}}
http {{
    sendfile on;
    tcp_nopush on;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {work}/nginx{port}-access.log;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    server {{
        listen {host}:{port};
        root {root};
    }}
}}
"""


@dataclass
class Result:
    wall: float
    cpu: float
    user: float
    failures: int


def make_file(path: Path, size: int) -> None:
    block = os.urandom(MIB)
    with path.open("wb") as f:
        for _ in range(size // MIB):
            f.write(block)


def tree_cpu(pid: int) -> tuple[float, float]:
    """(user + system, user) seconds of `pid` and every live descendant."""
    try:
        top = psutil.Process(pid)
        procs = [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0, 0.0
    total = user = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
        user += times.user
    return total, user


def wait_http(inside: list[str], url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while subprocess.run([*inside, "curl", "-sfI", url], capture_output=True).returncode:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(f"server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)


def storm(inside: list[str], url: str, size: int, machines: int, pid: int) -> Result:
    argv = [*inside, "curl", "-s", "--parallel", "--parallel-immediate"]
    argv += ["--parallel-max", str(machines), "--max-time", "600"]
    argv += ["-w", "%{http_code} %{size_download}\\n"]
    for _ in range(machines):
        argv += ["-o", "/dev/null", url]
    cpu0, user0 = tree_cpu(pid)
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    wall = time.monotonic() - start
    cpu1, user1 = tree_cpu(pid)
    lines = done.stdout.split()
    good = sum(1 for code, got in zip(lines[::2], lines[1::2], strict=False)
               if code == "200" and int(got) == size)  # fmt: skip
    return Result(wall, cpu1 - cpu0, user1 - user0, machines - good)


@contextmanager
def namespace() -> Iterator[list[str]]:
    ns = f"pthttp{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        inside = ["ip", "netns", "exec", ns]
        subprocess.run([*inside, "ip", "link", "set", "lo", "up"], check=True)
        yield inside
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    proc.send_signal(sig)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=list(SCENARIOS), action="append")
    parser.add_argument(
        "--one-worker-nginx",
        action="store_true",
        help="also run nginx with worker_processes 1 (one process, like pxed's HTTP)",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("needs root (a network namespace; pxed binds ports 67, 69 and 4011)")
    for tool in ("ip", "curl", "nginx"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed")
    scenarios = {k: v for k, v in SCENARIOS.items() if not args.only or k in args.only}
    pxed = str(Path(sys.executable).with_name("pxed"))
    work = Path(tempfile.mkdtemp(prefix="http-bench-"))
    root = work / "root"
    root.mkdir()
    for name, size, _ in scenarios.values():
        make_file(root / name, size)
    os.chmod(work, 0o755)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with namespace() as inside:
            argv = [pxed, "--workers", "1", "--leases", str(work / "l.sqlite")]
            argv += ["--http-port", str(PXED_PORT), "--range", "127.0.0.10", "127.0.0.20"]
            argv += ["lo", str(root), next(iter(scenarios.values()))[0]]
            pxed_log = work / "pxed.log"
            with pxed_log.open("wb") as log:
                server = subprocess.Popen([*inside, *argv], stdout=log, stderr=subprocess.STDOUT)
            procs.append(server)
            probe = next(iter(scenarios.values()))[0]
            wait_http(inside, f"http://{HOST}:{PXED_PORT}/{probe}", server, pxed_log)
            servers = {"pxed": (server.pid, PXED_PORT)}
            nginxes = {"nginx": ("auto", NGINX_PORT)}
            if args.one_worker_nginx:
                nginxes["nginx 1 worker"] = ("1", NGINX_PORT + 1)
            for who, (workers, port) in nginxes.items():
                conf = work / f"nginx{port}.conf"
                conf.write_text(
                    NGINX_CONF.format(work=work, host=HOST, port=port, root=root, workers=workers)
                )
                with (work / f"nginx{port}.out").open("wb") as log:
                    nginx = subprocess.Popen(
                        [*inside, "nginx", "-c", str(conf), "-g", "daemon off;"],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                procs.append(nginx)
                error_log = work / f"nginx{port}-error.log"
                wait_http(inside, f"http://{HOST}:{port}/{probe}", nginx, error_log)
                # ip netns exec execs the server in place: these are the servers' pids.
                servers[who] = (nginx.pid, port)
            results: dict[tuple[str, str], list[Result]] = {}
            load_start = os.getloadavg()[0]
            for round_no in range(args.rounds):
                order = list(servers) if round_no % 2 == 0 else list(reversed(servers))
                for scenario, (name, size, machines) in scenarios.items():
                    for who in order:
                        pid, port = servers[who]
                        url = f"http://{HOST}:{port}/{name}"
                        result = storm(inside, url, size, machines, pid)
                        results.setdefault((scenario, who), []).append(result)
                        print(
                            f"round {round_no + 1} {scenario} {who}: wall {result.wall:.2f} s, "
                            f"CPU {result.cpu:.2f} s (user {result.user:.2f}), "
                            f"failures {result.failures}",
                            flush=True,
                        )
            load_end = os.getloadavg()[0]
    finally:
        for proc in procs:
            stop(proc, signal.SIGTERM if proc is procs[0] else signal.SIGQUIT)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.rounds} interleaved rounds; load average {load_start:.1f} -> {load_end:.1f}")
    print("| scenario | server | wall s median (best) | server CPU s median (best) "
          "| of it user s | failures | wall vs nginx | CPU vs nginx |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for scenario in scenarios:
        base = results[(scenario, "nginx")]
        base_wall = statistics.median(r.wall for r in base)
        base_cpu = statistics.median(r.cpu for r in base)
        for who in servers:
            rs = results[(scenario, who)]
            wall = statistics.median(r.wall for r in rs)
            cpu = statistics.median(r.cpu for r in rs)
            fails = sum(r.failures for r in rs)
            print(
                f"| {scenario} | {who} | {wall:.2f} ({min(r.wall for r in rs):.2f}) "
                f"| {cpu:.2f} ({min(r.cpu for r in rs):.2f}) "
                f"| {statistics.median(r.user for r in rs):.2f} | {fails} "
                f"| {wall / base_wall:.2f}x | {cpu / base_cpu:.2f}x |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
