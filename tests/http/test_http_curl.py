"""The HTTP server as a real process, driven by curl and by raw sockets on 127.0.0.1 and ::1."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_support import (
    BIG,
    RunningHttp,
    curl,
    curl_status,
    http_root,
    http_server,
    make_file,
    sha256,
)

__all__ = ["http_root", "http_server"]  # fixtures used by name below

HOSTS = ["127.0.0.1", "::1"]


def test_curl_help_for_the_tool_exists() -> None:
    assert curl("--version").returncode == 0


@pytest.mark.parametrize("host", HOSTS)
def test_get_is_byte_identical(http_server: RunningHttp, tmp_path: Path, host: str) -> None:
    out = tmp_path / "got"
    done = curl("-o", str(out), "-w", "%{http_code}", http_server.url("/small.bin", host))
    assert done.stdout == b"200", done.stderr
    assert out.read_bytes() == (http_server.root / "small.bin").read_bytes()


@pytest.mark.parametrize("host", HOSTS)
def test_head_gives_the_length_and_no_body(http_server: RunningHttp, host: str) -> None:
    done = curl("-I", http_server.url("/boot/ipxe.efi", host))
    head = done.stdout.decode()
    size = (http_server.root / "boot" / "ipxe.efi").stat().st_size
    assert head.startswith("HTTP/1.1 200 OK\r\n"), head
    assert f"\r\nContent-Length: {size}\r\n" in head
    assert "\r\nAccept-Ranges: bytes\r\n" in head
    assert head.endswith("\r\n\r\n")  # nothing after the head


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize(("spec", "first", "last"), [("100-199", 100, 199), ("-10", 990, 999)])
def test_range_is_206_with_exactly_those_bytes(
    http_server: RunningHttp, tmp_path: Path, host: str, spec: str, first: int, last: int
) -> None:
    out = tmp_path / "part"
    done = curl("-r", spec, "-o", str(out), "-D", "-", http_server.url("/small.bin", host))
    head = done.stdout.decode()
    assert head.startswith("HTTP/1.1 206 "), head
    assert f"\r\nContent-Range: bytes {first}-{last}/1000\r\n" in head
    whole = (http_server.root / "small.bin").read_bytes()
    assert out.read_bytes() == whole[first : last + 1]


def test_unsatisfiable_range_is_416(http_server: RunningHttp) -> None:
    assert curl_status(http_server.url("/small.bin"), "-r", "5000-") == 416


def test_several_ranges_get_the_whole_file(http_server: RunningHttp, tmp_path: Path) -> None:
    out = tmp_path / "whole"
    done = curl(
        "-r", "0-1,5-6", "-o", str(out), "-w", "%{http_code}", http_server.url("/small.bin")
    )
    assert done.stdout == b"200"
    assert out.read_bytes() == (http_server.root / "small.bin").read_bytes()


@pytest.mark.parametrize("host", HOSTS)
def test_keep_alive_reuses_the_connection(http_server: RunningHttp, host: str) -> None:
    url = http_server.url("/small.bin", host)
    done = curl("-v", "-o", "/dev/null", "-o", "/dev/null", url, url)
    assert done.returncode == 0
    assert "Re-using existing connection" in done.stderr.decode()


def test_connection_close_is_honoured(http_server: RunningHttp) -> None:
    url = http_server.url("/small.bin")
    done = curl("-v", "-H", "Connection: close", "-o", "/dev/null", "-o", "/dev/null", url, url)
    assert done.returncode == 0
    assert "Re-using existing connection" not in done.stderr.decode()


@pytest.mark.parametrize("host", HOSTS)
def test_http10_client_gets_the_file(http_server: RunningHttp, tmp_path: Path, host: str) -> None:
    out = tmp_path / "got"
    done = curl("-0", "-o", str(out), "-w", "%{http_code}", http_server.url("/small.bin", host))
    assert done.stdout == b"200"
    assert out.read_bytes() == (http_server.root / "small.bin").read_bytes()


@pytest.fixture(scope="module")
def big_file(http_root: Path) -> Iterator[Path]:
    path = http_root / "big.bin"
    make_file(path, BIG)
    yield path
    path.unlink()


@pytest.mark.parametrize("host", HOSTS)
def test_64_mib_is_byte_identical(
    http_server: RunningHttp, big_file: Path, tmp_path: Path, host: str
) -> None:
    out = tmp_path / "big"
    done = curl("-o", str(out), "-w", "%{http_code}", http_server.url("/big.bin", host))
    assert done.stdout == b"200", done.stderr
    assert out.stat().st_size == BIG
    assert sha256(out) == sha256(big_file)
    logged = http_server.process.wait_output(" GET /big.bin 200 67108864 bytes in ")
    assert re.search(r" GET /big.bin 200 67108864 bytes in ", logged)


def test_empty_file(http_server: RunningHttp, tmp_path: Path) -> None:
    out = tmp_path / "empty"
    done = curl("-o", str(out), "-w", "%{http_code}", http_server.url("/empty.bin"))
    assert done.stdout == b"200"
    assert out.read_bytes() == b""


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/with%20space.txt", 200),
        ("/caf%C3%A9.txt", 200),
        ("/inside-link.bin", 200),  # a symlink that stays inside the root
        ("//small.bin", 200),  # an absolute-looking path is still inside the root
        ("/nope", 404),
        ("//etc/passwd", 404),
        ("/../etc/passwd", 403),
        ("/../../../../../../etc/passwd", 403),
        ("/boot/../../etc/passwd", 403),
        ("/%2e%2e/%2e%2e/etc/passwd", 403),
        ("/%2E%2E/etc/passwd", 403),
        ("/..%2f..%2fetc%2fpasswd", 404),
        ("/..%5c..%5cetc%5cpasswd", 404),
        ("/..\\..\\etc\\passwd", 403),
        ("/escape.txt", 403),  # symlink to a file outside
        ("/escape-dir/secret.txt", 403),  # through a symlinked directory outside
        ("/boot", 403),  # directory: no listing
        ("/boot/", 403),
        ("/", 403),
        ("/fifo", 403),
        ("/small.bin%00.txt", 400),
    ],
)
def test_paths_are_confined(http_server: RunningHttp, path: str, status: int) -> None:
    got = curl("--path-as-is", "-w", "\n%{http_code}", http_server.url(path))
    body, _, code = got.stdout.rpartition(b"\n")
    assert int(code) == status, got.stderr
    assert b"SECRET" not in body
    assert b"root:" not in body


def raw_exchange(port: int, data: bytes, host: str = "127.0.0.1") -> bytes:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect((host, port))
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "target",
    [
        b"http://127.0.0.1/../etc/passwd",
        b"http://127.0.0.1/%2e%2e/escape.txt",
        b"/escape.txt",
        b"/../outside/secret.txt",
    ],
)
def test_raw_traversal_targets_are_refused(http_server: RunningHttp, target: bytes) -> None:
    reply = raw_exchange(
        http_server.port, b"GET " + target + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    assert reply.split(b" ")[1] in (b"403", b"404"), reply[:100]
    assert b"SECRET" not in reply


def test_malformed_request_gets_400_and_the_server_keeps_serving(
    http_server: RunningHttp,
) -> None:
    for bad in (
        b"\x00\x01\x02 garbage\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n",
    ):
        reply = raw_exchange(http_server.port, bad)
        assert reply.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 405 ")), reply[:80]
    assert curl_status(http_server.url("/small.bin")) == 200


def split_response(data: bytes) -> tuple[bytes, bytes]:
    """(head, rest) of the first response in `data`."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, data[:200]
    return head + sep, rest


def test_a_head_reply_carries_no_body_bytes(http_server: RunningHttp) -> None:
    """curl cannot see bytes sent after a HEAD reply; a raw socket can: the next
    pipelined response must start right after the HEAD reply's head."""
    reply = raw_exchange(
        http_server.port,
        b"HEAD /small.bin HTTP/1.1\r\nHost: a\r\n\r\n"
        b"HEAD /small.bin HTTP/1.1\r\nHost: a\r\nRange: bytes=0-9\r\n\r\n"
        b"GET /small.bin HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    for _ in range(2):
        head, reply = split_response(reply)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n"), head
        assert b"\r\nContent-Length: 1000\r\n" in head
        assert reply.startswith(b"HTTP/1.1 200 OK\r\n"), reply[:80]
    head, body = split_response(reply)
    assert body == (http_server.root / "small.bin").read_bytes()


def test_smuggling_shape_is_400_and_the_pipelined_request_is_not_served(
    http_server: RunningHttp,
) -> None:
    reply = raw_exchange(
        http_server.port,
        b"GET /small.bin HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        b"GET /small.bin HTTP/1.1\r\nHost: a\r\n\r\n",
    )  # read to EOF: the server closes
    head, body = split_response(reply)
    assert head.startswith(b"HTTP/1.1 400 "), head
    assert b"\r\nConnection: close\r\n" in head
    assert body == b"400 Bad Request\n"  # and no second response


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /small.bin HTTP/1.1\r\nHost: a b/c\r\n\r\n", b"400"),
        (b"GET /small.bin HTTP/1.1\r\nHost: a\r\nX: " + b"y" * 40_000 + b"\r\n\r\n", b"431"),
    ],
)
def test_invalid_host_and_oversized_head_are_refused(
    http_server: RunningHttp, head: bytes, status: bytes
) -> None:
    reply = raw_exchange(http_server.port, head)  # one write
    assert reply.split(b" ")[1] == status, reply[:100]
    assert reply.count(b"HTTP/1.1 ") == 1


def test_slowloris_partial_head_is_closed_by_the_header_timeout(http_server: RunningHttp) -> None:
    """The module server has --header-timeout 2; the socket waits up to 30 s for EOF."""
    with socket.create_connection(("127.0.0.1", http_server.port), timeout=30) as s:
        s.sendall(b"GET /small.bin HTTP/1.1\r\nHost: a\r\n")
        assert s.recv(1024) == b""  # EOF from the server, not a reply and not our timeout


def test_trickling_head_is_closed_although_bytes_keep_coming(http_server: RunningHttp) -> None:
    head = b"GET /small.bin HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"z" * 200 + b"\r\n\r\n"
    closed = False
    with socket.create_connection(("127.0.0.1", http_server.port), timeout=30) as s:
        s.settimeout(0.25)
        for byte in head:  # 0.25 s per byte: 60 s for the head; bounded by its length
            try:
                s.sendall(bytes([byte]))
                data = s.recv(1024)
            except TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                closed = True
                break
            assert data == b"", data  # never an answer to half a request
            closed = True
            break
    assert closed


def test_one_request_is_one_log_line_even_with_encoded_newlines(
    http_server: RunningHttp,
) -> None:
    assert curl_status(http_server.url("/x%0d%0aFORGED%20line")) == 404
    logged = " GET /x\\r\\nFORGED line 404 0 bytes in "
    lines = http_server.process.wait_output(logged).splitlines()
    assert not any(line.startswith("FORGED") for line in lines)
    assert any(logged in line for line in lines)
