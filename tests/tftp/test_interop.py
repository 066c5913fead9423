"""Real clients (curl, tftp-hpa, atftp) against a real ptftpd process on loopback."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import SIZES, RunningServer, digest, make_file
from support import require_tool

TIMEOUT = 120


def curl(
    server: RunningServer, remote: str, out: Path, *opts: str
) -> subprocess.CompletedProcess[str]:
    exe = require_tool("curl")
    url = f"tftp://{server.host}:{server.port}/{remote}"
    return subprocess.run(
        [exe, "-sS", "--max-time", "100", *opts, "-o", str(out), url],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def tftp_hpa(
    server: RunningServer, cwd: Path, *command: str, mode: str = "binary"
) -> subprocess.CompletedProcess[str]:
    exe = require_tool("tftp")
    return subprocess.run(
        [exe, "-m", mode, server.host, str(server.port), "-c", *command],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
    )


def atftp(server: RunningServer, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = require_tool("atftp")
    return subprocess.run(
        [exe, *args, server.host, str(server.port)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
    )


def logged(server: RunningServer, *needles: str) -> str:
    """The server's log line holding every needle, waiting (bounded) for it: the server
    writes it when the transfer ends, which may be just after the client exits."""
    deadline = time.monotonic() + 15
    while True:
        for line in server.log().splitlines():
            if all(needle in line for needle in needles):
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no log line with {needles}:\n{server.log()[-2000:]}")
        time.sleep(0.05)


CURL_OPTS = {"default": (), "1428": ("--tftp-blksize", "1428"), "rfc1350": ("--tftp-no-options",)}
# curl 7.88 rejects an OACK with tsize 0 from any server (curl's limit, tftpd-hpa too), so
# the empty file goes without options; 40 MiB at 1428 adds nothing the 512 rows lack.
CURL_CASES = [
    (size, name)
    for size in SIZES
    for name in CURL_OPTS
    if not (size == 0 and name != "rfc1350") and not (size == SIZES[-1] and name == "1428")
]


@pytest.mark.parametrize(("size", "opts_name"), CURL_CASES)
def test_curl_download(server: RunningServer, tmp_path: Path, size: int, opts_name: str) -> None:
    opts = CURL_OPTS[opts_name]
    out = tmp_path / "out.bin"
    result = curl(server, f"f{size}.bin", out, *opts)
    assert result.returncode == 0, result.stderr
    assert digest(out) == digest(server.root / f"f{size}.bin")


@pytest.mark.parametrize("size", SIZES)
def test_tftp_hpa_download(server: RunningServer, tmp_path: Path, size: int) -> None:
    result = tftp_hpa(server, tmp_path, "get", f"f{size}.bin", "out.bin")
    assert result.returncode == 0 and "Error" not in result.stdout + result.stderr, result
    assert digest(tmp_path / "out.bin") == digest(server.root / f"f{size}.bin")


@pytest.mark.parametrize("size", [0, 512, 513, 1024 * 1024, 40 * 1024 * 1024])
@pytest.mark.parametrize("window", ["1", "16"])
def test_atftp_windowed_download(
    server: RunningServer, tmp_path: Path, size: int, window: str
) -> None:
    result = atftp(
        server,
        tmp_path,
        "--option",
        f"windowsize {window}",
        "--option",
        "blksize 1428",
        "--option",
        "tsize 0",
        "-g",
        "-r",
        f"f{size}.bin",
        "-l",
        "out.bin",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert digest(tmp_path / "out.bin") == digest(server.root / f"f{size}.bin")
    # The window was really granted (atftp would fall back to lock-step silently).
    logged(server, f"RRQ 'f{size}.bin'", f"windowsize={window}", "blksize=1428")


def test_netascii_download_round_trips_text(server: RunningServer, tmp_path: Path) -> None:
    result = tftp_hpa(server, tmp_path, "get", "text.txt", "out.txt", mode="ascii")
    assert result.returncode == 0, result
    assert (tmp_path / "out.txt").read_bytes() == (server.root / "text.txt").read_bytes()


def test_leading_slash_and_backslashes(server: RunningServer, tmp_path: Path) -> None:
    for name in ("/sub/nested.txt", "sub\\nested.txt", "\\sub\\nested.txt"):
        result = tftp_hpa(server, tmp_path, "get", name, "n.txt")
        assert result.returncode == 0, (name, result)
        assert (tmp_path / "n.txt").read_bytes() == b"nested\n"
        (tmp_path / "n.txt").unlink()


def _no_temp_left(directory: Path) -> None:
    assert [p.name for p in directory.iterdir() if p.name.endswith(".part")] == []


@pytest.mark.parametrize("size", [0, 513, 1024 * 1024])
def test_upload_tftp_hpa(server: RunningServer, tmp_path: Path, size: int) -> None:
    src = tmp_path / "src.bin"
    make_file(src, size)
    result = tftp_hpa(server, tmp_path, "put", "src.bin", f"uploads/hpa{size}.bin")
    assert result.returncode == 0, result
    stored = server.root / "uploads" / f"hpa{size}.bin"
    assert digest(stored) == digest(src)
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(stored.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    _no_temp_left(server.root / "uploads")


def test_upload_curl_with_options(server: RunningServer, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    make_file(src, 300_000)
    url = f"tftp://{server.host}:{server.port}/uploads/curl.bin"
    result = subprocess.run(
        [
            require_tool("curl"),
            "-sS",
            "--max-time",
            "60",
            "--tftp-blksize",
            "1024",
            "-T",
            str(src),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert digest(server.root / "uploads" / "curl.bin") == digest(src)


def test_upload_atftp_windowed(server: RunningServer, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    make_file(src, 2_000_000)
    result = atftp(
        server,
        tmp_path,
        "--option",
        "windowsize 8",
        "--option",
        "blksize 1428",
        "-p",
        "-l",
        "src.bin",
        "-r",
        "uploads/atftp.bin",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert digest(server.root / "uploads" / "atftp.bin") == digest(src)
    logged(server, "WRQ 'uploads/atftp.bin'", "windowsize=8", "blksize=1428")


def test_upload_netascii(server: RunningServer, tmp_path: Path) -> None:
    text = b"alpha\nbeta\r\ngamma\rdelta\n" * 100
    (tmp_path / "t.txt").write_bytes(text)
    result = tftp_hpa(server, tmp_path, "put", "t.txt", "uploads/t.txt", mode="ascii")
    assert result.returncode == 0, result
    assert (server.root / "uploads" / "t.txt").read_bytes() == text


def test_existing_file_not_overwritten(server: RunningServer, tmp_path: Path) -> None:
    before = digest(server.root / "f513.bin")
    (tmp_path / "other.bin").write_bytes(b"evil")
    result = tftp_hpa(server, tmp_path, "put", "other.bin", "f513.bin")
    assert "File already exists" in result.stdout + result.stderr or "exists" in (
        result.stdout + result.stderr
    ), result
    assert digest(server.root / "f513.bin") == before
    _no_temp_left(server.root)


def test_many_concurrent_curl_downloads(server: RunningServer, tmp_path: Path) -> None:
    exe = require_tool("curl")
    url = f"tftp://{server.host}:{server.port}/f1048576.bin"
    procs = [
        subprocess.Popen(
            [
                exe,
                "-sS",
                "--max-time",
                "100",
                "--tftp-blksize",
                "1428",
                "-o",
                str(tmp_path / f"c{i}.bin"),
                url,
            ],
            stderr=subprocess.PIPE,
        )
        for i in range(40)
    ]
    codes = [p.wait(timeout=TIMEOUT) for p in procs]
    assert codes == [0] * 40
    want = digest(server.root / "f1048576.bin")
    assert all(digest(tmp_path / f"c{i}.bin") == want for i in range(40))


def test_transfer_log_line(server: RunningServer, tmp_path: Path) -> None:
    """One line per transfer (its own transfer: no reliance on earlier tests)."""
    out = tmp_path / "out.bin"
    result = curl(server, "f1048576.bin", out, "--tftp-blksize", "1400")
    assert result.returncode == 0, result.stderr
    line = logged(server, "RRQ 'f1048576.bin' octet: sent 1048576 bytes", "blksize=1400")
    assert "MiB/s" in line
