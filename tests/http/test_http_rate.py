"""Issue 21 item 3: the optional rate limits, measured with curl against the server
process. Per client address (all its connections together) and in total; the limited
download still goes out with sendfile, and keep-alive and Range work as without."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import pytest
from http_support import curl, make_file, sha256, start_http

from ptftpd.http.rate import MIN_BURST, TokenBucket

pytestmark = pytest.mark.timeout(120)

RATE = 2_000_000  # bytes/s
SIZE = 4 * 1024 * 1024
TOLERANCE = 0.15


@pytest.fixture(scope="module")
def rate_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rate") / "root"
    root.mkdir()
    make_file(root / "initrd", SIZE)
    return root


def timed_get(url: str, out: Path, *flags: str) -> float:
    started = time.monotonic()
    done = curl("-f", "-o", str(out), *flags, url, timeout=60)
    assert done.returncode == 0, done.stderr
    return time.monotonic() - started


def within(measured: float, expected: float) -> bool:
    return abs(measured - expected) <= TOLERANCE * expected


def test_per_client_rate_limit(rate_root: Path, tmp_path: Path) -> None:
    server = start_http(rate_root, tmp_path / "http.log", "--rate-limit", str(RATE))
    try:
        out = tmp_path / "one"
        seconds = timed_get(server.url("/initrd"), out)
        assert sha256(out) == sha256(rate_root / "initrd")
        assert within(SIZE / seconds, RATE), SIZE / seconds
        # Two connections of one client share its limit: both together take twice as long.
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            started = time.monotonic()
            runs = [
                pool.submit(timed_get, server.url("/initrd"), tmp_path / f"p{i}") for i in (1, 2)
            ]
            for run in runs:
                run.result()
            both = time.monotonic() - started
        assert within(2 * SIZE / both, RATE), 2 * SIZE / both
        # Keep-alive and Range as without a limit: one connection, two ranged requests.
        parts = [tmp_path / "r1", tmp_path / "r2"]
        url = server.url("/initrd")
        done = curl(
            "-f", "-v", "-r", "0-999999", "-o", str(parts[0]), url, "-o", str(parts[1]), url
        )
        assert done.returncode == 0, done.stderr
        assert b"Re-using existing connection" in done.stderr
        data = (rate_root / "initrd").read_bytes()
        assert parts[0].read_bytes() == parts[1].read_bytes() == data[:1000000]
    finally:
        assert server.process.stop() == 0
    assert ", rate limit 1.9 MiB/s per client\n" in server.log()


def test_total_rate_limit_is_shared_by_every_client(rate_root: Path, tmp_path: Path) -> None:
    server = start_http(rate_root, tmp_path / "http.log", "--total-rate-limit", str(RATE))
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            started = time.monotonic()
            runs = [
                pool.submit(
                    timed_get,
                    server.url("/initrd"),
                    tmp_path / f"c{i}",
                    "--interface",
                    f"127.0.0.{i}",
                )
                for i in (1, 2)
            ]
            for run in runs:
                run.result()
            both = time.monotonic() - started
        assert within(2 * SIZE / both, RATE), 2 * SIZE / both
    finally:
        assert server.process.stop() == 0
    log = server.log()
    assert "127.0.0.1 GET /initrd 200" in log
    assert "127.0.0.2 GET /initrd 200" in log


def test_unlimited_is_far_faster_than_the_limit(rate_root: Path, tmp_path: Path) -> None:
    """The control: without a limit the same download is not held to RATE."""
    server = start_http(rate_root, tmp_path / "http.log")
    try:
        seconds = timed_get(server.url("/initrd"), tmp_path / "free")
    finally:
        assert server.process.stop() == 0
    assert SIZE / seconds > 3 * RATE


def test_token_bucket() -> None:
    bucket = TokenBucket(1000, now=0.0)
    assert bucket.burst == MIN_BURST
    assert bucket.available(0.0) == MIN_BURST
    bucket.spend(MIN_BURST, 0.0)
    assert bucket.available(0.0) == 0
    assert bucket.wait(500, 0.0) == pytest.approx(0.5)
    assert bucket.available(0.25) == 250
    assert bucket.available(1000.0) == MIN_BURST  # never more than the burst
    big = TokenBucket(10_000_000, now=5.0)
    assert big.burst == 500_000  # 50 ms of the rate
