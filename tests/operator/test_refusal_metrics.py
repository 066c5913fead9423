"""Issue 24: refused TFTP requests are counted in the metrics by why, from the typed
`TransferRefused` events: not found, access denied (outside ROOT), a --map-file rule,
an upload refused by --read-only, an upload onto an existing file, a malformed request.
Real ptftpd (with workers: the parent sums them), the real tftp-hpa client, /metrics
read with curl; the README's metrics table names the counter and every reason."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ptftpd.events import Failure
from support import Process, free_udp_port, require_tool, script, world_readable_dir

README = Path(__file__).resolve().parents[2] / "README.md"
REFUSED = "ptftpd_tftp_requests_refused_total"


def scrape(curl: str, port: int) -> dict[str, float]:
    text = subprocess.run(
        [curl, "-sf", f"http://127.0.0.1:{port}/metrics"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    pairs = re.findall(rf"^({REFUSED}\S*) (\S+)$", text, re.M)
    return {k: float(v) for k, v in pairs}


def tftp(port: int, work: Path, *commands: str) -> None:
    client = require_tool("tftp")
    for command in commands:  # each its own run: a new source port, one request
        subprocess.run(
            [client, "127.0.0.1", str(port), "-m", "octet", "-c", *command.split()],
            cwd=work, capture_output=True, timeout=30, check=False,
        )  # fmt: skip


def sample(direction: str, reason: str) -> str:
    return f'{REFUSED}{{direction="{direction}",reason="{reason}"}}'


@pytest.mark.parametrize("workers", ["1", "2"])
def test_refusals_are_counted_by_reason(tmp_path: Path, workers: str) -> None:
    curl = require_tool("curl")
    work = tmp_path / "client"
    work.mkdir()
    (work / "up.txt").write_bytes(b"upload\n")
    (work / "there.txt").write_bytes(b"again\n")
    rules = tmp_path / "map"
    rules.write_text("a ^secret\n")
    with world_readable_dir("ptftpd-ref-") as root:
        (root / "there.txt").write_bytes(b"there\n")
        (root / "secret").write_bytes(b"no\n")
        up = root / "up"
        up.mkdir()
        port, mport, mport2 = free_udp_port(), free_udp_port(), free_udp_port()
        common = ["-v", "--workers", workers, "--map-file", str(rules)]
        ro = Process(
            [script("ptftpd"), *common, "--read-only", "--metrics", f"127.0.0.1:{mport}",
             "-p", str(port), "127.0.0.1", str(root)], tmp_path / "ro.log",
        )  # fmt: skip
        port2 = free_udp_port()
        rw = Process(
            [script("ptftpd"), *common, "--metrics", f"127.0.0.1:{mport2}",
             "-p", str(port2), "127.0.0.1", str(root)], tmp_path / "rw.log",
        )  # fmt: skip
        try:
            ro.wait_output("INFO: serving", timeout=30)
            rw.wait_output("INFO: serving", timeout=30)
            tftp(port, work, "get missing.bin", "get ../../etc/passwd", "get secret",
                 "put up.txt", "get there.txt")  # fmt: skip
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
                raw.settimeout(5)
                raw.sendto(b"\x00\x01no-terminator", ("127.0.0.1", port))  # malformed RRQ
                assert raw.recvfrom(1024)[0][:4] == b"\x00\x05\x00\x04"  # ERROR 4
            tftp(port2, work, "put there.txt", "put up.txt up/new.txt")
            assert (up / "new.txt").read_bytes() == b"upload\n"  # uploads do work there
            want = {
                sample("read", "not_found"): 1,
                sample("read", "access_denied"): 1,  # outside ROOT
                sample("read", "map_file"): 1,
                sample("write", "read_only"): 1,
                sample("read", "illegal_operation"): 1,
            }
            counts = settled(lambda: scrape(curl, mport), want)
            counts2 = settled(lambda: scrape(curl, mport2), {sample("write", "exists"): 1})
        finally:
            assert ro.stop() == 0 and rw.stop() == 0
    assert counts == want, (counts, ro.output())
    assert counts2 == {sample("write", "exists"): 1}, (counts2, rw.output())


def settled(read: Callable[[], dict[str, float]], want: dict[str, float]) -> dict[str, float]:
    """The counts once they equal `want`, or after 5 s (a loaded machine may schedule a
    worker's count a moment after its ERROR reached the client)."""
    deadline = time.monotonic() + 5
    while True:
        got = read()
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_the_readme_lists_the_refusal_counter_and_its_reasons() -> None:
    row = next(line for line in README.read_text().splitlines() if REFUSED in line)
    for kind in Failure:
        if kind not in (Failure.TIMEOUT, Failure.UNANSWERED, Failure.FINAL_ACK_LOST,
                        Failure.PEER_ERROR, Failure.OPTION_REFUSED, Failure.SHUTDOWN,
                        Failure.DISK_FULL):  # fmt: skip
            assert kind.value in row, kind
