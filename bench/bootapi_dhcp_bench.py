#!/usr/bin/env python3
"""200 real DHCP clients deciding at once against a slow decision API (issue 22 item 2:
"no client waits for another", measured with real DHCP traffic).

Kea's perfdhcp (avalanche scenario: all --clients DISCOVERs at once, each client then
retransmitting with its own back-off, 1 s, 2 s, 4 s ... +-1 s, until answered; full
DORA) plays --clients PXE machines (option 60 ``PXEClient:Arch:00000:UNDI:002001``,
option 93 arch 0; MACs 00:0c:01:02:03:04 + i, perfdhcp's sequential default) in one
network namespace; pxed (full DHCP mode, ``--boot-api`` with the default 2 s
deadline, ``--boot-api-default``, a settings file with a default profile) and the
pixiecore-format test API (tests/pxe/pixie_api.py) run in another. Three classes of
machines, one in three each, in the same avalanche:

- fast:    the API answers in 50 ms;
- cached:  the API answers in 5 s (past the deadline); the machine got a good answer
           in a warm-up avalanche first, so pxed's cache stands in at the deadline;
- default: the API answers 404 after 5 s and never gave this machine an answer: the
           settings file's default profile at the deadline.

Per round (a warm-up, then --rounds measured avalanches, each after the previous
round's answers have gone stale) tcpdump on the clients' side records every DHCP
packet; per machine: its wait (first DISCOVER -> first OFFER), how many DISCOVERs it
sent before that OFFER, pxed's reply delay (the DISCOVER that got the OFFER -> the
OFFER) and whether its DORA completed. pxed's decisions by source come from its
/metrics (ptftpd_pxe_decisions_total). "No client waits for another": a fast machine
is answered on the first DISCOVER it sends after its 50 ms answer, whatever the slow
machines beside it do; a slow one at its own deadline.

Tools: perfdhcp (Debian package kea-admin), tcpdump, tshark, curl.
Run as root:  .venv/bin/python bench/bootapi_dhcp_bench.py [--rounds 3] [--clients 200]
Every wait is bounded; the namespaces and processes go at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
API = HERE.parent / "tests" / "pxe" / "pixie_api.py"
SERVER_IP, CLIENT_IP, PREFIX = "10.89.0.1", "10.89.0.2", 16
RANGE = ("10.89.1.1", "10.89.4.250")
API_PORT, METRICS_PORT = 8099, 9199
BASE_MAC = 0x000C01020304  # perfdhcp's default -b mac=00:0c:01:02:03:04
CLASSES = ("fast", "cached", "default")
FAST, SLOW = 0.05, 5.0
DEADLINE = 2.0  # pxed's --boot-api-deadline default
MARGIN = 0.25  # the API's and pxed's own time, under this load, before "ready"
STALE = 10.0 + 1.0  # pxed's bootapi.FRESH (an answer serves one boot), and a margin
VENDOR = b"PXEClient:Arch:00000:UNDI:002001"
SCRIPT = json.dumps({"ipxe-script": "#!ipxe\necho from the API\n"})
SETTINGS = '[pxed.profile.default]\nipxe-script = """#!ipxe\necho the default\n"""\n'


def mac_of(i: int) -> str:
    return ":".join(f"{b:02x}" for b in (BASE_MAC + i).to_bytes(6, "big"))


def index(mac: str) -> int:
    return int(mac.replace(":", ""), 16) - BASE_MAC


def class_of(i: int) -> str:
    return CLASSES[i % len(CLASSES)]


def rules(clients: int, warm: bool) -> dict[str, list[object]]:
    """The test API's rules: MAC -> [delay, status, body]."""
    out: dict[str, list[object]] = {}
    for i in range(clients):
        kind = class_of(i)
        if kind == "fast":
            out[mac_of(i)] = [FAST, 200, SCRIPT]
        elif kind == "cached":
            out[mac_of(i)] = [FAST if warm else SLOW, 200, SCRIPT]
        else:
            out[mac_of(i)] = [FAST if warm else SLOW, 404, '{"error": "unknown"}']
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Lab:
    def __init__(self, tmp: Path) -> None:
        tag = uuid.uuid4().hex[:6]
        self.ns_s, self.ns_c = f"bads{tag}", f"badc{tag}"
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def sh(self, *argv: str) -> str:
        return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30).stdout

    def ns(self, ns: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv]

    def setup(self) -> None:
        for ns in (self.ns_s, self.ns_c):
            self.sh("ip", "netns", "add", ns)
            self.sh("ip", "-n", ns, "link", "set", "lo", "up")
        self.sh("ip", "link", "add", "vs", "netns", self.ns_s, "type", "veth",
                "peer", "name", "vc", "netns", self.ns_c)  # fmt: skip
        for ns, ifname, ip in ((self.ns_s, "vs", SERVER_IP), (self.ns_c, "vc", CLIENT_IP)):
            self.sh("ip", "-n", ns, "addr", "add", f"{ip}/{PREFIX}", "dev", ifname)
            self.sh("ip", "-n", ns, "link", "set", ifname, "up")

    def start(self, ns: str, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 (the process's lifetime)
        proc = subprocess.Popen(self.ns(ns, *argv), stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def output(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def wait_for(self, name: str, text: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output(name):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: {text!r} not seen:\n{self.output(name)[-2000:]}")
            time.sleep(0.05)

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def teardown(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)
        for ns in (self.ns_s, self.ns_c):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=30)

    def decisions(self) -> Counter[str]:
        """pxed's ptftpd_pxe_decisions_total by source."""
        url = f"http://127.0.0.1:{METRICS_PORT}/metrics"
        text = self.sh(*self.ns(self.ns_s, "curl", "-sS", "--max-time", "5", url))
        out: Counter[str] = Counter()
        for line in text.splitlines():
            found = re.match(r"ptftpd_pxe_decisions_total\{(.*)\} ([\d.e+]+)$", line)
            if found:
                source = re.search(r'source="([^"]*)"', found.group(1))
                out[source.group(1) if source else "?"] += int(float(found.group(2)))
        return out


def avalanche(lab: Lab, clients: int, name: str) -> dict[str, dict[str, float | int]]:
    """One avalanche of `clients` machines, recorded: per MAC (see the docstring)."""
    pcap = lab.tmp / f"{name}.pcap"
    argv = ["tcpdump", "-i", "vc", "--immediate-mode", "-B", "8192", "-n", "-w", str(pcap)]
    dump = lab.start(lab.ns_c, [*argv, "udp port 67 or udp port 68"], f"tcpdump-{name}")
    lab.wait_for(f"tcpdump-{name}", "listening on")
    argv = ["perfdhcp", "-4", "-l", "vc", "--scenario", "avalanche", "-R", str(clients)]
    argv += ["-o", f"60,{VENDOR.hex()}", "-o", "93,0000"]
    done = subprocess.run(lab.ns(lab.ns_c, *argv), capture_output=True, text=True, timeout=120)
    (lab.tmp / f"perfdhcp-{name}.log").write_text(done.stdout + done.stderr)
    time.sleep(0.3)
    lab.stop(dump, signal.SIGINT)
    fields = ["frame.time_epoch", "dhcp.hw.mac_addr", "dhcp.option.dhcp"]
    argv = ["tshark", "-r", str(pcap), "-Y", "dhcp", "-T", "fields", "-E", "occurrence=f"]
    for f in fields:
        argv += ["-e", f]
    text = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
    per: dict[str, dict[str, float | int]] = {}
    for line in text.splitlines():
        when_s, mac, kind_s = line.split("\t")
        when, kind = float(when_s), int(kind_s or 0)
        m = per.setdefault(mac, {"discovers": 0})
        if kind == 1 and "offer" not in m:  # DISCOVER before the first OFFER
            m.setdefault("first", when)
            m["discovers"] = int(m["discovers"]) + 1
            m["last"] = when
            ready = float(m["first"]) + (FAST if class_of(index(mac)) == "fast" else DEADLINE)
            if when >= ready + MARGIN:
                m.setdefault("chance", when)
        elif kind == 2 and "offer" not in m and "first" in m:
            m["offer"] = when
        elif kind == 5 and "ack" not in m:
            m["ack"] = when
    return per


def summary(per: dict[str, dict[str, float | int]], clients: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for kind in CLASSES:
        macs = [mac_of(i) for i in range(clients) if class_of(i) == kind]
        rows = [per[m] for m in macs if m in per and "offer" in per[m]]
        waits = [float(r["offer"]) - float(r["first"]) for r in rows]
        delays = [float(r["offer"]) - float(r["last"]) for r in rows]
        # answered on the first DISCOVER it sent once its own decision could be ready
        # (fast: first DISCOVER + 50 ms; slow: + the 2 s deadline; + MARGIN): it waited
        # for nobody else's decision
        first_chance = sum(1 for r in rows if r.get("chance", r["last"]) == r["last"])
        out[kind] = {
            "machines": len(macs),
            "offered": len(rows),
            "acked": sum(1 for m in macs if m in per and "ack" in per[m]),
            "first_chance": first_chance,
            "wait_p50": pct(waits, 0.5),
            "wait_p99": pct(waits, 0.99),
            "wait_max": max(waits, default=float("nan")),
            "reply_ms_p50": pct(delays, 0.5) * 1000,
            "reply_ms_p99": pct(delays, 0.99) * 1000,
            "discovers_mean": statistics.fmean([int(r["discovers"]) for r in rows] or [0]),
            "discovers_max": max((int(r["discovers"]) for r in rows), default=0),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces)")
    for tool in ("perfdhcp", "tcpdump", "tshark", "curl"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is missing")
    pxed = str(Path(sys.executable).with_name("pxed"))
    tmp = Path(tempfile.mkdtemp(prefix="bootapi-dhcp-"))
    lab = Lab(tmp)
    load = os.getloadavg()
    results: list[dict[str, dict[str, float]]] = []
    sources: list[Counter[str]] = []
    try:
        lab.setup()
        root = tmp / "root"
        root.mkdir()
        (root / "undionly.kpxe").write_bytes(b"x" * 100)
        (tmp / "pxed.toml").write_text(SETTINGS)
        rules_file = tmp / "rules.json"
        rules_file.write_text(json.dumps(rules(args.clients, warm=True)))
        lab.start(lab.ns_s, [sys.executable, str(API), str(API_PORT), str(rules_file)], "api")
        argv = [pxed, "-v", "--leases", str(tmp / "leases.sqlite"), "--range", *RANGE]
        argv += ["--config", str(tmp / "pxed.toml"), "--boot-idle", "5"]
        argv += ["--boot-api", f"http://127.0.0.1:{API_PORT}/", "--boot-api-default"]
        argv += ["--metrics", f"127.0.0.1:{METRICS_PORT}", "vs", str(root), "undionly.kpxe"]
        lab.start(lab.ns_s, argv, "pxed")
        lab.wait_for("pxed", "PXE DHCP on vs")
        warm = summary(avalanche(lab, args.clients, "warm"), args.clients)
        print("warm-up (the API answers every machine in 50 ms):", json.dumps(warm), flush=True)
        rules_file.write_text(json.dumps(rules(args.clients, warm=False)))
        last = time.monotonic()
        for n in range(args.rounds):
            time.sleep(max(0.0, last + SLOW + STALE - time.monotonic()))  # answers stale
            before = lab.decisions()
            last = time.monotonic()
            per = avalanche(lab, args.clients, f"round{n}")
            results.append(summary(per, args.clients))
            time.sleep(max(0.0, last + SLOW + 0.5 - time.monotonic()))  # late answers in
            sources.append(lab.decisions() - before)
            print(f"round {n}:", json.dumps(results[-1]), dict(sources[-1]), flush=True)
    finally:
        lab.teardown()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    end = os.getloadavg()
    print(f"\n{args.clients} clients per avalanche, {args.rounds} rounds; load average "
          f"{load[0]:.1f} at start, {end[0]:.1f} at the end")  # fmt: skip
    print("\n| Class | API answers | Offered | DORA done | At first chance | Wait p50 | Wait p99 "
          "| Wait max | DISCOVERs mean/max | pxed reply p50/p99 |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    what = {"fast": "in 50 ms", "cached": "in 5 s (cache)", "default": "404 in 5 s (default)"}
    for kind in CLASSES:
        rows = [r[kind] for r in results]
        waits50 = [r["wait_p50"] for r in rows]
        waits99 = [r["wait_p99"] for r in rows]
        print(
            f"| {kind} | {what[kind]} | {sum(int(r['offered']) for r in rows)}"
            f"/{sum(int(r['machines']) for r in rows)} "
            f"| {sum(int(r['acked']) for r in rows)} "
            f"| {sum(int(r['first_chance']) for r in rows)} "
            f"| {statistics.median(waits50):.2f} s | {statistics.median(waits99):.2f} s "
            f"| {max(r['wait_max'] for r in rows):.2f} s "
            f"| {statistics.fmean(r['discovers_mean'] for r in rows):.2f}"
            f"/{max(int(r['discovers_max']) for r in rows)} "
            f"| {statistics.median(r['reply_ms_p50'] for r in rows):.1f}"
            f"/{max(r['reply_ms_p99'] for r in rows):.1f} ms |"
        )
    print("\nper round, wait p50 fast/cached/default:",
          [tuple(round(r[k]["wait_p50"], 2) for k in CLASSES) for r in results])  # fmt: skip
    print("decisions by source per round (pxed /metrics):", [dict(s) for s in sources])
    return 0


if __name__ == "__main__":
    sys.exit(main())
