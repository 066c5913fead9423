"""How good a reflector is each TFTP server? And does a boot storm still get through?

    .venv/bin/python bench/reflection_bench.py --update-docs      # as root, a few minutes

Servers: ours (one process), tftpd-hpa and atftpd (bench/peers.py sets them up), all
on 127.0.0.1, measured in the same run. Three measurements:

- Reflection factor per request form: one request from a socket that never answers
  (what a forged source looks like to the server); every byte that comes back within
  `--listen` seconds, divided by the request's size.
- Flood: `--flood` requests from one address (each from its own port, none answered)
  sent within a second; bytes sent back to that address, per request and in total.
- Boot storm: `--machines` clients of one /24 (127.0.5.1-250, four per address) each
  download a 64 KiB file at once, PXE style (blksize 1468, tsize), with the project's
  own client session and driver; failures and wall time.

Results go to bench/results/reflection-*.json; --update-docs rewrites the
"## Reflection" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import resource
import select
import socket
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import HOST, REPO, Peer, PeerUnavailable, RunningServer, build_peers
from ptftpd.tftp.driver import AsyncChannel, Channel
from ptftpd.tftp.options import TransferOptions
from ptftpd.tftp.packets import Opcode, Request
from ptftpd.tftp.session import ClientSession

RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "benchmarks.md"
SECTION = "## Reflection"
FILE = "abc"  # 3 letters: the plain RRQ is 12 bytes, as in issue 19
FILE_SIZE = 64 * 1024

FORMS: dict[str, Request] = {
    "RRQ, no options (12 B)": Request(Opcode.RRQ, FILE, "octet"),
    "RRQ, blksize 1468 + tsize": Request(
        Opcode.RRQ, FILE, "octet", (("blksize", "1468"), ("tsize", "0"))
    ),
    "RRQ, blksize 65464 + windowsize 64": Request(
        Opcode.RRQ, FILE, "octet", (("blksize", "65464"), ("windowsize", "64"))
    ),
    "RRQ of a missing file": Request(Opcode.RRQ, "nothere", "octet"),
}


def listen(sock: socket.socket, seconds: float) -> int:
    """Bytes received on `sock` within `seconds` (UDP payload), never answering."""
    total = 0
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            total += len(sock.recvfrom(65536)[0])
        except TimeoutError:
            break
    return total


def reflection(servers: dict[str, RunningServer], seconds: float) -> dict[str, dict[str, float]]:
    """Factor per (server, form), all requests sent at once and listened to together."""
    sockets: dict[tuple[str, str], socket.socket] = {}
    for name, server in servers.items():
        for i, (form, request) in enumerate(FORMS.items()):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((f"127.0.3.{i + 1}", 0))  # a fresh address per form: no budget shared
            sock.sendto(request.encode(), (HOST, server.port))
            sockets[(name, form)] = sock
    results: dict[str, dict[str, float]] = {name: {} for name in servers}

    def one(key: tuple[str, str]) -> None:
        got = listen(sockets[key], seconds)
        results[key[0]][key[1]] = got / len(FORMS[key[1]].encode())

    threads = [threading.Thread(target=one, args=(key,)) for key in sockets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for sock in sockets.values():
        sock.close()
    return results


def flood(server: RunningServer, count: int, seconds: float) -> dict[str, float]:
    """`count` never-answered requests from one address (one port each), within 1 s."""
    request = FORMS["RRQ, no options (12 B)"].encode()
    socks = []
    for i in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.4.1", 0))
        sock.setblocking(False)
        socks.append(sock)
        sock.sendto(request, (HOST, server.port))
        if i % 100 == 99:
            time.sleep(1.0 / max(1, count // 100))
    total = 0
    end = time.monotonic() + seconds
    poller = select.poll()
    by_fd = {sock.fileno(): sock for sock in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    while (left := end - time.monotonic()) > 0:
        for fd, _ in poller.poll(int(left * 1000) + 1):
            try:
                total += len(by_fd[fd].recvfrom(65536)[0])
            except BlockingIOError:
                pass
    for sock in socks:
        sock.close()
    sent = count * len(request)
    return {"requests": count, "request_bytes": sent, "reply_bytes": total, "factor": total / sent}


async def storm(port: int, machines: int) -> dict[str, float]:
    """`machines` PXE-style downloads from one /24 at once; failures and wall time."""
    loop = asyncio.get_running_loop()
    options = TransferOptions(blksize=1468, tsize=True, retries=5)
    failures: list[str] = []

    async def one(i: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((f"127.0.5.{i % 250 + 1}", 0))
        sock.setblocking(False)
        done = loop.create_future()
        session = ClientSession((HOST, port), FILE, is_read=True, options=options, now=loop.time())
        sink = io.BytesIO()
        channel = Channel(sock, session, sink)
        runner = AsyncChannel(channel, loop, on_closed=lambda: done.set_result(None))
        runner.start()
        try:
            await asyncio.wait_for(done, 120)
        except TimeoutError:
            runner.stop(cancel=True)
        if not session.succeeded or sink.tell() != FILE_SIZE:
            failures.append(f"{i}: {session.error or 'incomplete'}")

    started = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(machines)))
    wall = time.monotonic() - started
    return {"machines": machines, "failures": len(failures), "seconds": wall}


def run(args: argparse.Namespace) -> dict[str, Any]:
    peers: list[Peer] = build_peers(["ptftpd", "tftpd-hpa", "atftpd"])
    report: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.node()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
        "servers": {},
        "listen": args.listen,
    }
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        root = Path(tmp) / "root"
        root.mkdir()
        os.chmod(tmp, 0o755)
        os.chmod(root, 0o755)
        (root / FILE).write_bytes(os.urandom(FILE_SIZE))
        os.chmod(root / FILE, 0o644)
        running: dict[str, RunningServer] = {}
        for peer in peers:
            try:
                peer.setup()
                running[peer.label] = stack.enter_context(peer.running(root, Path(tmp) / "logs"))
            except PeerUnavailable as exc:
                report["servers"][peer.label] = {"unavailable": str(exc)}
                continue
            report["servers"][peer.label] = {"version": peer.version}
        factors = reflection(running, args.listen)
        for label, server in running.items():
            entry = report["servers"][label]
            entry["factors"] = factors[label]
            entry["flood"] = flood(server, args.flood, args.listen)
            entry["storm"] = asyncio.run(storm(server.port, args.machines))
            print(label, json.dumps(entry), flush=True)
    return report


def render(report: dict[str, Any], argv: list[str]) -> str:
    servers = {k: v for k, v in report["servers"].items() if "factors" in v}
    names = list(servers)
    lines = [
        SECTION,
        "",
        f"`{' '.join(['.venv/bin/python', 'bench/reflection_bench.py', *argv])}`, "
        f"{report['when']}, {report['machine']} (other helpers' tests ran in parallel).",
        "",
        "Bytes sent back for one request that is never answered (a forged source), divided "
        f"by the request's size, within {report['listen']:.0f} s (every retransmission "
        "included; tftpd-hpa backs off, so a longer wait adds its sixth DATA: 258x):",
        "",
        "| request | " + " | ".join(names) + " |",
        "| --- |" + " ---: |" * len(names),
    ]
    for form in FORMS:
        cells = [f"{servers[n]['factors'][form]:.1f}x" for n in names]
        lines.append(f"| {form} | " + " | ".join(cells) + " |")
    flood_row = []
    storm_row = []
    for n in names:
        f = servers[n]["flood"]
        flood_row.append(f"{f['reply_bytes'] / 1024:.0f} KiB ({f['factor']:.1f}x)")
        s = servers[n]["storm"]
        storm_row.append(f"{s['failures']} failed, {s['seconds']:.1f} s")
    count = next(iter(servers.values()))["flood"]["requests"] if servers else 0
    machines = next(iter(servers.values()))["storm"]["machines"] if servers else 0
    lines += [
        f"| flood: {count} plain RRQs from one address in about a second | "
        + " | ".join(flood_row)
        + " |",
        f"| boot storm: {machines} clients of one /24 at once (64 KiB, blksize 1468, tsize) | "
        + " | ".join(storm_row)
        + " |",
        "",
        "Ours sends one reply per request until the client answers (a repeated request is "
        "answered again), and a source (address, /24) that leaves too many first replies "
        "unanswered is dropped (README, Security). tftpd-hpa and atftpd have no such budget.",
        "",
    ]
    return "\n".join(lines)


def update_docs(text: str) -> None:
    doc = DOC.read_text()
    start = doc.find(SECTION + "\n")
    if start < 0:
        DOC.write_text(doc.rstrip("\n") + "\n\n" + text)
        return
    end = doc.find("\n## ", start + len(SECTION))
    DOC.write_text(doc[:start] + text + (doc[end + 1 :] if end >= 0 else ""))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=float, default=20.0, help="seconds to listen (20)")
    parser.add_argument("--flood", type=int, default=2000, help="flood requests (2000)")
    parser.add_argument("--machines", type=int, default=1000, help="boot storm size (1000)")
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args(argv)
    # one socket per flood request and per storm client
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    report = run(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"reflection-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    shown = [a for a in argv if a != "--update-docs"]
    text = render(report, shown)
    print(text)
    if args.update_docs:
        update_docs(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
