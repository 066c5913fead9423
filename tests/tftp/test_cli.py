"""Start-up errors are one clear line and exit 1, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import start_server
from support import missing, require_tool, script


def run(*argv: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, **kw)  # type: ignore[call-overload]


def assert_one_line_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr


def test_help_everywhere() -> None:
    result = run(sys.executable, "-m", "ptftpd", "--help")
    assert result.returncode == 0 and "ptftpd" in result.stdout
    result = run(script("ptftpd"), "--help")
    assert result.returncode == 0 and "IFACE" in result.stdout and "--blksize-max" in result.stdout


@pytest.mark.parametrize(
    "argv", [("--bogus",), ("nosuchtool",), ("ptftpd", "--bogus"), ("ptftp", "--bogus")]
)
def test_usage_errors_exit_2(argv: tuple[str, ...]) -> None:
    """argparse's convention, in the suite launcher and in the TFTP tools (one line and
    "try --help" there, like every bad setting)."""
    result = run(sys.executable, "-m", "ptftpd", *argv)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    if argv[0] in ("ptftpd", "ptftp"):
        assert result.stderr.startswith(f"{argv[0]}: ") and result.stderr.count("\n") == 1
        assert result.stderr.endswith(" (try --help)\n"), result.stderr
    else:
        assert "usage" in result.stderr


def test_unknown_interface(tmp_path: Path) -> None:
    assert_one_line_error(
        run(script("ptftpd"), "-p", "6970", "nosuchif0", str(tmp_path)), "no such interface"
    )


def test_root_not_a_directory(tmp_path: Path) -> None:
    assert_one_line_error(
        run(script("ptftpd"), "-p", "6970", "127.0.0.1", str(tmp_path / "x")), "does not exist"
    )
    (tmp_path / "file").write_text("")
    assert_one_line_error(
        run(script("ptftpd"), "-p", "6970", "127.0.0.1", str(tmp_path / "file")), "not a directory"
    )


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert_one_line_error(
            run(script("ptftpd"), "-p", str(port), "127.0.0.1", str(tmp_path)), "already in use"
        )


def test_port_69_without_permission(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        setpriv = require_tool("setpriv")
        public = Path(tempfile.mkdtemp(prefix="ptftpd-public-"))
        public.chmod(0o755)
        argv = [
            setpriv,
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            script("ptftpd"),
            "--read-only",  # else nobody's unwritable ROOT is refused before the bind
            "127.0.0.1",
            str(public),
        ]
    else:
        argv = [script("ptftpd"), "--read-only", "127.0.0.1", str(tmp_path)]
    # setpriv drops privileges; the unprivileged port floor may still allow 69 on
    # some kernels (net.ipv4.ip_unprivileged_port_start), so check that first.
    floor = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    if floor <= 69:
        pytest.fail("this kernel lets anyone bind port 69; the test cannot check the error")
    assert_one_line_error(run(*argv), "no permission")


def test_unreadable_root(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        missing("needs root to switch to an unprivileged user")  # fails in CI
    hidden = Path(tempfile.mkdtemp(prefix="ptftpd-hidden-"))
    (hidden / "root").mkdir()
    argv = [
        require_tool("setpriv"),
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        script("ptftpd"),
        "-p",
        "6971",
        "127.0.0.1",
        str(hidden / "root"),
    ]
    assert_one_line_error(run(*argv), "permission denied")


def test_bad_option_value(tmp_path: Path) -> None:
    result = run(script("ptftpd"), "--blksize-max", "4", "127.0.0.1", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--blksize-max" in result.stderr


def test_ipv6_loopback(tmp_path: Path) -> None:
    (tmp_path / "six.txt").write_bytes(b"over IPv6\n")
    srv = start_server(tmp_path, tmp_path / "v6.log", host="::1")
    try:
        result = run(
            require_tool("curl"), "-sS", "--max-time", "20", f"tftp://[::1]:{srv.port}/six.txt"
        )
        assert result.returncode == 0 and result.stdout == "over IPv6\n", result
    finally:
        srv.process.stop()


def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    srv = start_server(tmp_path, tmp_path / "s.log")
    assert srv.process.stop() == 0
    assert "Traceback" not in srv.log()


@pytest.mark.parametrize("tool", ["ptftpd", "pxed"])
@pytest.mark.parametrize("value", ["0", "256", "soon"])
def test_timeout_checked_alike_by_ptftpd_and_pxed(tool: str, value: str, tmp_path: Path) -> None:
    argv = [script(tool), "--timeout", value, "127.0.0.1", str(tmp_path)]
    if tool == "pxed":
        argv.append("pxelinux.0")
    result = run(*argv)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--timeout" in result.stderr


def test_pxed_and_ptftpd_share_the_transfer_limits() -> None:
    ptftpd_help, pxed_help = (
        run(script("ptftpd"), "--help").stdout,
        run(script("pxed"), "--help").stdout,
    )
    for flag in ("--blksize-max", "--windowsize-max", "--timeout", "--retries", "--max-sessions"):
        assert flag in ptftpd_help and flag in pxed_help
