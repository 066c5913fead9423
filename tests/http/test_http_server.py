"""HttpServer in this process (the way pxed will run it): callback, sendfile and its
fallback, timeouts, start-up errors, close. Clients are curl and raw sockets."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from http_support import http_root, make_file, sha256

from ptftpd.errors import StartError
from ptftpd.http import HttpConfig, HttpServer, Served
from ptftpd.http import sending as http_sending_module
from support import require_root, require_tool

__all__ = ["http_root"]


def config(root: Path, **kwargs: Any) -> HttpConfig:
    return HttpConfig(root=root, bind=(("127.0.0.1", 0), ("::1", 0)), **kwargs)


def run(body: Callable[[], Awaitable[None]], timeout: float = 120) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(body(), timeout)

    asyncio.run(bounded())


async def acurl(*args: str) -> tuple[int, bytes, bytes]:
    exe = require_tool("curl")
    proc = await asyncio.create_subprocess_exec(
        exe,
        "--noproxy",
        "*",
        "-sS",
        "--max-time",
        "60",
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out, err


def url(server: HttpServer, path: str, family: int = 4) -> str:
    host, port = server.bound[0] if family == 4 else server.bound[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{path}"


def test_on_served_records_every_request(http_root: Path) -> None:
    records: list[Served] = []

    async def body() -> None:
        server = HttpServer(config(http_root), on_served=records.append)
        await server.start()
        try:
            await acurl("-o", "/dev/null", url(server, "/small.bin"))
            await acurl("-o", "/dev/null", "-r", "10-19", url(server, "/boot/ipxe.efi", 6))
            await acurl("-o", "/dev/null", url(server, "/nope"))
            await acurl("-I", url(server, "/small.bin"))
        finally:
            server.close()
            await server.wait_closed()

    run(body)
    assert [(r.peer, r.method, r.path, r.status, r.bytes_sent, r.complete) for r in records] == [
        ("127.0.0.1", "GET", "/small.bin", 200, 1000, True),
        ("::1", "GET", "/boot/ipxe.efi", 206, 10, True),
        ("127.0.0.1", "GET", "/nope", 404, 0, True),
        ("127.0.0.1", "HEAD", "/small.bin", 200, 0, True),
    ]
    assert records[0].file == (http_root / "small.bin").resolve()
    assert records[2].file is None
    assert all(r.seconds >= 0 for r in records)


def test_a_failing_callback_does_not_hurt_the_client(http_root: Path) -> None:
    def broken(record: Served) -> None:
        raise ValueError("callback bug")

    async def body() -> None:
        server = HttpServer(config(http_root), on_served=broken)
        await server.start()
        try:
            _, out, _ = await acurl(
                "-w", "%{http_code}", "-o", "/dev/null", url(server, "/small.bin")
            )
            assert out == b"200"
        finally:
            server.close()

    run(body)


@pytest.fixture(scope="module")
def mid_file(http_root: Path) -> Path:
    path = http_root / "mid.bin"
    make_file(path, 9 * 1024 * 1024 + 17)  # several sendfile chunks, odd size
    return path


def test_files_go_out_with_sendfile(
    http_root: Path, mid_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Zero-copy and no per-chunk Python work: each sendfile call asks for everything
    left of the range, and the kernel moves what the socket buffer takes."""
    calls: list[tuple[int, int]] = []

    def spy(out: int, fd: int, offset: int, count: int) -> int:
        sent = os.sendfile(out, fd, offset, count)
        calls.append((count, sent))
        return sent

    monkeypatch.setattr(http_sending_module, "_sendfile", spy)
    out = tmp_path / "got"

    async def body() -> None:
        server = HttpServer(config(http_root))
        await server.start()
        try:
            await acurl("-o", str(out), url(server, "/mid.bin"))
        finally:
            server.close()

    run(body)
    size = mid_file.stat().st_size
    assert sha256(out) == sha256(mid_file)
    assert sum(sent for _, sent in calls) == size
    left = size
    for count, sent in calls:
        assert count == left  # never a fixed chunk: the whole rest each time
        left -= sent


@pytest.mark.parametrize("how", ["configured", "sendfile unavailable"])
def test_copy_fallback_is_byte_identical(
    http_root: Path, mid_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    refused: list[int] = []

    def unavailable(out: int, fd: int, offset: int, count: int) -> int:
        refused.append(count)
        raise OSError(errno.EINVAL, "not here")

    monkeypatch.setattr(http_sending_module, "_sendfile", unavailable)
    out = tmp_path / "got"
    part = tmp_path / "part"
    records: list[Served] = []

    async def body() -> None:
        cfg = config(http_root, sendfile=how != "configured")
        server = HttpServer(cfg, on_served=records.append)
        await server.start()
        try:
            await acurl("-o", str(out), url(server, "/mid.bin"))
            await acurl("-o", str(part), "-r", "1000-4999999", url(server, "/mid.bin"))
        finally:
            server.close()

    run(body)
    assert sha256(out) == sha256(mid_file)
    assert part.read_bytes() == mid_file.read_bytes()[1000:5000000]
    assert [(r.status, r.bytes_sent, r.complete) for r in records] == [
        (200, mid_file.stat().st_size, True),
        (206, 4999000, True),
    ]
    assert len(refused) == (0 if how == "configured" else 1)  # tried once, then copies


def test_idle_keep_alive_connection_is_closed(http_root: Path) -> None:
    async def body() -> None:
        server = HttpServer(config(http_root, idle_timeout=0.5))
        await server.start()
        try:
            reader, writer = await asyncio.open_connection(*server.bound[0])
            writer.write(b"GET /small.bin HTTP/1.1\r\nHost: a\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ")
            assert len(await reader.readexactly(1000)) == 1000
            # Kept alive, then closed by the server once idle: EOF, within our own bound.
            assert await asyncio.wait_for(reader.read(1), 30) == b""
            writer.close()
        finally:
            server.close()

    run(body)


def test_a_client_that_stops_reading_is_dropped(http_root: Path, tmp_path: Path) -> None:
    big = tmp_path / "root"
    big.mkdir()
    make_file(big / "big.bin", 64 * 1024 * 1024)
    records: list[Served] = []

    async def body() -> None:
        server = HttpServer(config(big, idle_timeout=1.0), on_served=records.append)
        await server.start()
        try:
            with socket.create_connection(server.bound[0]) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
                for _ in range(300):  # never read; wait (bounded) for the server to give up
                    if records:
                        break
                    await asyncio.sleep(0.1)
        finally:
            server.close()

    run(body)
    assert len(records) == 1
    assert records[0].status == 200
    assert not records[0].complete
    assert records[0].bytes_sent < 64 * 1024 * 1024


def test_close_drops_open_connections(http_root: Path) -> None:
    errors: list[dict[str, Any]] = []

    async def body() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        server = HttpServer(config(http_root))
        await server.start()
        reader, writer = await asyncio.open_connection(*server.bound[1][:2])
        writer.write(b"GET /small.bin HTTP/1.1\r\nHost: a\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(1000)
        assert server.active_connections == 1
        server.close()
        await server.wait_closed()
        assert await asyncio.wait_for(reader.read(1), 10) == b""
        assert server.active_connections == 0
        writer.close()
        await asyncio.sleep(0.1)  # let done-callbacks of the connection tasks run

    run(body)
    assert errors == []  # nothing logged as "Exception in callback" on close


def test_connections_have_nagle_off(http_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Head and file are separate sends; with Nagle on, each keep-alive response after
    the first waits ~40 ms for the client's delayed ACK (1000 requests: 45 s, not 1 s)."""
    seen: list[int] = []
    original = HttpServer._serve

    async def spy(self: HttpServer, sock: socket.socket, peer: str, client: Any) -> None:
        seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        await original(self, sock, peer, client)

    monkeypatch.setattr(HttpServer, "_serve", spy)

    async def body() -> None:
        server = HttpServer(config(http_root))
        await server.start()
        try:
            await acurl("-o", "/dev/null", url(server, "/small.bin"))
            await acurl("-o", "/dev/null", url(server, "/small.bin", 6))
        finally:
            server.close()

    run(body)
    assert len(seen) == 2 and all(seen), seen


# -- start-up errors -------------------------------------------------------------------
def start_error(cfg: HttpConfig) -> str:
    async def body() -> str:
        server = HttpServer(cfg)
        try:
            await server.start()
        except StartError as exc:
            return str(exc)
        server.close()
        return "started"

    return asyncio.run(body())


def test_port_in_use_is_one_line_and_nothing_stays_bound(
    http_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ptftpd.http")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
            free6 = probe.getsockname()[1]
        cfg = HttpConfig(root=http_root, bind=(("::1", free6), ("127.0.0.1", port)))
        message = start_error(cfg)
    assert message == f"TCP port {port} on 127.0.0.1 is already in use"
    # The first address was bound, yet nothing claimed HTTP was served (issue 21).
    assert "over HTTP" not in caplog.text, caplog.text
    with socket.socket(socket.AF_INET6) as again:  # the first address was released
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("::1", free6))


@pytest.mark.parametrize(
    ("root", "words"),
    [
        ("missing", "does not exist"),
        ("small.bin", "is not a directory"),
    ],
)
def test_bad_root_is_one_line(http_root: Path, root: str, words: str) -> None:
    message = start_error(HttpConfig(root=http_root / root, bind=(("127.0.0.1", 0),)))
    assert words in message and "\n" not in message


def test_bad_address_is_one_line(http_root: Path) -> None:
    message = start_error(HttpConfig(root=http_root, bind=(("300.1.2.3", 0),)))
    assert message.startswith("cannot use address 300.1.2.3")
    message = start_error(HttpConfig(root=http_root, bind=(("192.0.2.77", 0),)))
    assert message.startswith("cannot bind 192.0.2.77 TCP port 0")


def test_no_permission_for_port_80_is_one_line(http_root: Path) -> None:
    """Root without CAP_NET_BIND_SERVICE (same user, so the checkout stays readable)."""
    setpriv = require_tool("setpriv")
    require_root()
    code = (
        "import asyncio; from pathlib import Path\n"
        "from ptftpd.errors import StartError\nfrom ptftpd.http import HttpConfig, HttpServer\n"
        "async def main():\n"
        "    await HttpServer(HttpConfig(Path('/'), (('127.0.0.1', 80),))).start()\n"
        "try:\n    asyncio.run(main())\nexcept StartError as e:\n    print(e)\n"
    )
    drop = [setpriv, "--bounding-set=-net_bind_service", "--inh-caps=-all"]
    done = subprocess.run(
        [*drop, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == (
        "no permission to bind TCP port 80 on 127.0.0.1: run as root or choose a port above 1023"
    ), done.stderr


def test_out_of_descriptors_at_accept_keeps_the_connection_queued(
    http_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """EMFILE from accept(): the connection stays in the backlog and is served when the
    retry succeeds; one warning, not one per retry."""
    caplog.set_level(logging.INFO, logger="ptftpd.http")
    failures = [0]
    real_accept = socket.socket.accept

    def accept(self: socket.socket) -> tuple[socket.socket, Any]:
        if failures[0] < 5:
            failures[0] += 1
            raise OSError(errno.EMFILE, "Too many open files")
        return real_accept(self)

    monkeypatch.setattr(socket.socket, "accept", accept)

    result: list[tuple[int, bytes]] = []

    async def body() -> None:
        server = HttpServer(config(http_root))
        await server.start()
        try:
            code, out, _ = await acurl(url(server, "/small.bin"))
            result.append((code, out))
        finally:
            server.close()

    run(body)
    code, out = result[0]
    assert code == 0 and out == (http_root / "small.bin").read_bytes()
    assert failures[0] == 5  # retried after 0.1 s each time, then served
    assert caplog.text.count("HTTP accept failed") == 1, caplog.text
