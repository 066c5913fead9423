"""The `ptftp` command: one-shot forms, URLs, stdin/stdout, failures, and the
interactive mode driven through standard input and through a pseudo-terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ptftp_support import MIB, TEXT, Server, content, make_root, ptftp, start_ptftpd

from support import free_udp_port, script

SIZES = [0, 513, MIB]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = make_root(tmp_path_factory.mktemp("root"), [0, 512, 513, MIB, 40 * MIB])
    srv = start_ptftpd(root, tmp_path_factory.mktemp("log") / "ptftpd.log")
    yield srv
    srv.stop()


def one_line_error(result: subprocess.CompletedProcess[bytes]) -> str:
    """Failures print exactly one line on stderr, never a traceback, and exit non-zero."""
    err = result.stderr.decode()
    assert result.returncode != 0, err
    assert "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_one_shot_get(server: Server, tmp_path: Path) -> None:
    for size in SIZES:
        result = ptftp("-p", str(server.port), "get", server.host, f"f{size}.bin", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / f"f{size}.bin").read_bytes() == content(size)
        assert f"received {size} bytes in".encode() in result.stderr
        assert result.stdout == b""
        assert b"%|" not in result.stderr  # no progress bar without a terminal


def test_one_shot_get_windowed_with_rollover(server: Server, tmp_path: Path) -> None:
    name = f"f{40 * MIB}.bin"
    result = ptftp(
        "-v",
        "-b",
        "512",
        "-w",
        "16",
        "-p",
        str(server.port),
        "get",
        server.host,
        name,
        "big",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert b"blksize 512, windowsize 16" in result.stderr
    assert (tmp_path / "big").read_bytes() == content(40 * MIB)


def test_get_refuses_to_overwrite_unless_forced(server: Server, tmp_path: Path) -> None:
    target = tmp_path / "f513.bin"
    target.write_bytes(b"mine")
    result = ptftp("-p", str(server.port), "get", server.host, "f513.bin", cwd=tmp_path)
    assert "already exists" in one_line_error(result)
    assert target.read_bytes() == b"mine"
    result = ptftp("-f", "-p", str(server.port), "get", server.host, "f513.bin", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == content(513)


def test_missing_file_is_one_line_and_leaves_no_file(server: Server, tmp_path: Path) -> None:
    result = ptftp("-p", str(server.port), "get", server.host, "nothing.bin", cwd=tmp_path)
    err = one_line_error(result)
    assert result.returncode == 1
    assert "file not found" in err
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_times_out_quickly(tmp_path: Path) -> None:
    port = free_udp_port()
    started = time.monotonic()
    result = ptftp(
        "-t",
        "0.3",
        "--retries",
        "2",
        "get",
        "127.0.0.1",
        "x",
        "-p",
        str(port),
        cwd=tmp_path,
        timeout=30,
    )
    elapsed = time.monotonic() - started
    err = one_line_error(result)
    assert f"no answer from 127.0.0.1:{port} after 3 tries" in err
    assert elapsed < 10
    assert list(tmp_path.iterdir()) == []


def test_urls_stdout_and_stdin(server: Server, tmp_path: Path) -> None:
    url = f"tftp://{server.host}:{server.port}"
    result = ptftp(f"{url}/f513.bin", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "f513.bin").read_bytes() == content(513)
    result = ptftp("-q", f"{url}/f{MIB}.bin", "-", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == content(MIB)
    assert result.stderr == b""
    result = ptftp("get", f"{url}/text.txt;mode=netascii", "t.txt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "t.txt").read_bytes() == TEXT
    result = ptftp("put", "-", f"{url}/uploads/from-stdin.bin", stdin=b"piped" * 1000)
    assert result.returncode == 0, result.stderr
    assert (server.root / "uploads" / "from-stdin.bin").read_bytes() == b"piped" * 1000
    result = ptftp("-p", str(server.port), "put", server.host, "-", "uploads/s2.bin", stdin=b"")
    assert result.returncode == 0, result.stderr
    assert (server.root / "uploads" / "s2.bin").read_bytes() == b""


def test_one_shot_put_and_netascii(server: Server, tmp_path: Path) -> None:
    local = tmp_path / "notes.txt"
    local.write_bytes(TEXT)
    result = ptftp(
        "-m",
        "netascii",
        "-p",
        str(server.port),
        "put",
        server.host,
        str(local),
        "uploads/notes.txt",
    )
    assert result.returncode == 0, result.stderr
    assert (server.root / "uploads" / "notes.txt").read_bytes() == TEXT
    assert f"sent {len(TEXT)} bytes".encode() in result.stderr
    again = ptftp("-p", str(server.port), "put", server.host, str(local), "uploads/notes.txt")
    assert "exists" in one_line_error(again)


def test_usage_errors(server: Server, tmp_path: Path) -> None:
    for args, text in [
        (("get", server.host), "usage"),
        (("tftp://",), "invalid URL"),
        (("put", server.host, str(tmp_path / "no")), "does not exist"),
    ]:
        result = ptftp(*args)
        assert text in one_line_error(result)
        assert result.returncode == 2, args  # argparse's convention for usage errors
    bad = ptftp("-b", "3", "get", server.host, "x")
    assert bad.returncode == 2 and b"Traceback" not in bad.stderr
    helped = ptftp("-?")
    assert helped.returncode == 0 and b"tftp://HOST" in helped.stdout
    via_main = subprocess.run(
        [script("python"), "-m", "ptftpd", "ptftp", "--help"], capture_output=True, timeout=60
    )
    assert via_main.returncode == 0 and b"usage: ptftp" in via_main.stdout


def test_interactive_from_stdin(server: Server, tmp_path: Path) -> None:
    (tmp_path / "up.bin").write_bytes(content(MIB)[:5000])
    commands = "\n".join(
        [
            "status",
            "get f513.bin",
            "get f513.bin",  # exists: refused
            "get -f f513.bin other.bin",
            "blksize 1024",
            "windowsize 8",
            "verbose",
            f"get f{MIB}.bin",
            "mode netascii",
            "get text.txt",
            "mode octet",
            "put up.bin uploads/interactive.bin",
            "get missing.bin",
            "frobnicate",
            "quit",
            "get never.bin",  # after quit: not run
        ]
    )
    result = ptftp("-h", server.host, "-p", str(server.port), cwd=tmp_path, stdin=commands.encode())
    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 1, err  # some commands failed: scripts can tell
    assert "Traceback" not in err
    assert f"Server: {server.host}:{server.port}" in out
    status = ["Mode: octet", "Block size: 1400", "Window size: 1 (not asked for)"]
    status += ["Transfer size option: on", "Timeout: 1 s (not asked for)", "Retries: 5"]
    assert all(line in out.splitlines() for line in status), out
    assert "Block size: 1024" in out and "Window size: 8" in out
    assert "received 513 bytes" in out
    assert f"received {MIB} bytes" in out and "blksize 1024, windowsize 8" in out
    assert "sent 5000 bytes" in out
    assert "tftp> " not in out  # no prompt when reading a script
    assert err.count("Error: ") == 3, err
    assert "already exists" in err and "file not found" in err and "unknown command" in err
    assert (tmp_path / "f513.bin").read_bytes() == content(513)
    assert (tmp_path / "other.bin").read_bytes() == content(513)
    assert (tmp_path / f"f{MIB}.bin").read_bytes() == content(MIB)
    assert (tmp_path / "text.txt").read_bytes() == TEXT
    assert not (tmp_path / "missing.bin").exists() and not (tmp_path / "never.bin").exists()
    assert (server.root / "uploads" / "interactive.bin").read_bytes() == content(MIB)[:5000]


def test_interactive_script_success_exits_zero(server: Server, tmp_path: Path) -> None:
    result = ptftp(server.host, str(server.port), cwd=tmp_path, stdin=b"get f512.bin\n")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "f512.bin").read_bytes() == content(512)


class Terminal:
    """`ptftp` on a pseudo-terminal, as a person would use it."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        env = dict(os.environ, TERM="dumb", COLUMNS="100", LINES="30")
        self.proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.buffer = b""

    def expect(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        needle = text.encode()
        while needle not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} not seen; screen so far: {self.buffer!r}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"EOF before {text!r}; screen: {self.buffer!r}")
                self.buffer += chunk
        index = self.buffer.index(needle) + len(needle)
        seen, self.buffer = self.buffer[:index], self.buffer[index:]
        return seen.decode(errors="replace")

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def close(self) -> int:
        try:
            code = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(5)
        os.close(self.master)
        return code


def test_interactive_on_a_terminal(server: Server, tmp_path: Path) -> None:
    term = Terminal([script("ptftp")], tmp_path)
    try:
        term.expect("type help")
        term.expect("tftp> ")
        term.send(f"connect {server.host} {server.port}")
        assert f"Server: {server.host}:{server.port}" in term.expect("tftp> ")
        term.send("help")
        assert "windowsize [N|off]" in term.expect("tftp> ")
        term.send("blksize 512")
        term.expect("tftp> ")
        term.send(f"get f{40 * MIB}.bin")  # seconds long at blksize 512: shows a bar
        screen = term.expect("tftp> ", timeout=90)
        assert f"received {40 * MIB} bytes" in screen
        assert "%|" in screen or "B/s]" in screen, screen
        term.send("get nothing.bin")
        assert "Error: server error 1: file not found" in term.expect("tftp> ")
        term.send("quit")
    finally:
        code = term.close()
    assert code == 0
    assert (tmp_path / f"f{40 * MIB}.bin").read_bytes() == content(40 * MIB)
    assert not (tmp_path / "nothing.bin").exists()


def test_interrupted_download_leaves_nothing(server: Server, tmp_path: Path) -> None:
    argv = [script("ptftp"), "-r", "-p", str(server.port), "get", server.host, f"f{40 * MIB}.bin"]
    # SIGINT as a terminal gives it: a runner started in the background (`nohup ... &`)
    # passes SIGINT on ignored, and Python then keeps ignoring it (ptftp never hears ^C)
    proc = subprocess.Popen(
        argv,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 30
    while not any(tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)  # wait until the transfer has started writing
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err == b"ptftp: interrupted\n"
    assert list(tmp_path.iterdir()) == []
