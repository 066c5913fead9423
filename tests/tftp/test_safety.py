"""Nothing escapes the root, nothing is half-written, bad packets never stop the server."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import RunningServer, digest, make_file, start_server
from ptftpd.tftp.packets import Ack, Data, Error, ErrorCode, Opcode, OptionAck, Request, decode
from support import require_tool


class RawClient:
    """A hand-driven client, to send what no real client would."""

    def __init__(self, server: RunningServer) -> None:
        self.server_addr = (server.host, server.port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(3)

    def send(self, datagram: bytes, addr: tuple[str, int] | None = None) -> None:
        self.sock.sendto(datagram, addr or self.server_addr)

    def recv(self) -> tuple[object, tuple[str, int]]:
        data, addr = self.sock.recvfrom(70000)
        return decode(data), addr

    def request(
        self,
        filename: str,
        *,
        write: bool = False,
        mode: str = "octet",
        options: tuple[tuple[str, str], ...] = (),
    ) -> tuple[object, tuple[str, int]]:
        op = Opcode.WRQ if write else Opcode.RRQ
        self.send(Request(op, filename, mode, options).encode())
        return self.recv()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(server: RunningServer) -> Iterator[RawClient]:
    client = RawClient(server)
    yield client
    client.close()


def assert_error(reply: object, code: ErrorCode) -> None:
    assert isinstance(reply, Error), reply
    assert reply.code == code, reply


def assert_still_serving(server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "check.bin"
    result = subprocess.run(
        [
            require_tool("curl"),
            "-sS",
            "--max-time",
            "20",
            "-o",
            str(out),
            f"tftp://{server.host}:{server.port}/f513.bin",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert digest(out) == digest(server.root / "f513.bin")


@pytest.mark.parametrize(
    "name",
    [
        "../etc/passwd",
        "/../../../../etc/passwd",
        "sub/../../x",
        "..\\..\\etc\\passwd",
        "sub/../../root2/secret",
    ],
)
def test_traversal_refused(raw: RawClient, name: str) -> None:
    reply, _ = raw.request(name)
    assert_error(reply, ErrorCode.ACCESS_VIOLATION)


def test_absolute_path_means_root(raw: RawClient) -> None:
    reply, _ = raw.request("/etc/passwd")
    assert_error(reply, ErrorCode.FILE_NOT_FOUND)  # root/etc/passwd, which does not exist


def test_sibling_directory_with_common_prefix(served_root: Path, raw: RawClient) -> None:
    sibling = served_root.parent / (served_root.name + "2")
    sibling.mkdir(exist_ok=True)
    (sibling / "secret").write_text("secret")
    reply, _ = raw.request(f"../{sibling.name}/secret")
    assert_error(reply, ErrorCode.ACCESS_VIOLATION)


def test_symlink_escape_refused_and_inner_symlink_served(served_root: Path, raw: RawClient) -> None:
    outside = served_root.parent / "outside.txt"
    outside.write_text("outside")
    escape = served_root / "escape"
    inner = served_root / "inner"
    if not escape.is_symlink():
        escape.symlink_to(outside)
    if not inner.is_symlink():
        inner.symlink_to(served_root / "sub" / "nested.txt")
    reply, _ = raw.request("escape")
    assert_error(reply, ErrorCode.ACCESS_VIOLATION)
    reply, addr = raw.request("inner")
    assert reply == Data(1, b"nested\n")
    raw.send(Ack(1).encode(), addr)


def test_directory_and_missing_file(raw: RawClient) -> None:
    assert_error(raw.request("sub")[0], ErrorCode.ACCESS_VIOLATION)
    assert_error(raw.request("")[0], ErrorCode.ACCESS_VIOLATION)
    assert_error(raw.request("nope.bin")[0], ErrorCode.FILE_NOT_FOUND)


def test_unknown_mode_gets_error(raw: RawClient) -> None:
    reply, _ = raw.request("f513.bin", mode="mail")
    assert_error(reply, ErrorCode.ILLEGAL_OPERATION)


def test_new_tid_per_transfer_and_wrong_tid_gets_error5(
    server: RunningServer, raw: RawClient
) -> None:
    reply, addr = raw.request("f1024.bin")
    assert addr[1] != server.port, reply  # the transfer answers from its own port
    assert reply == Data(1, (server.root / "f1024.bin").read_bytes()[:512])
    intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    intruder.bind(("127.0.0.1", 0))
    intruder.settimeout(3)
    intruder.sendto(Ack(1).encode(), addr)
    data, _ = intruder.recvfrom(1000)
    assert_error(decode(data), ErrorCode.UNKNOWN_TID)
    intruder.close()
    raw.send(Ack(1).encode(), addr)  # the real transfer continues undisturbed
    assert raw.recv()[0] == Data(2, (server.root / "f1024.bin").read_bytes()[512:1024])
    raw.send(Ack(2).encode(), addr)
    assert raw.recv()[0] == Data(3, b"")
    raw.send(Ack(3).encode(), addr)


def test_oack_only_lists_requested_options(raw: RawClient) -> None:
    reply, addr = raw.request("f513.bin", options=(("TSIZE", "0"), ("nonsense", "1")))
    assert reply == OptionAck((("TSIZE", "513"),))
    raw.send(Error(8, "just wanted the size").encode(), addr)  # what PXE ROMs do


def test_existing_file_untouched_by_wrq(served_root: Path, raw: RawClient) -> None:
    before = digest(served_root / "f512.bin")
    assert_error(raw.request("f512.bin", write=True)[0], ErrorCode.FILE_EXISTS)
    assert digest(served_root / "f512.bin") == before


def test_tsize_beyond_free_space_refused(raw: RawClient) -> None:
    reply, _ = raw.request("uploads/huge.bin", write=True, options=(("tsize", str(10**18)),))
    assert_error(reply, ErrorCode.DISK_FULL)


def test_abandoned_upload_leaves_nothing(served_root: Path, raw: RawClient) -> None:
    reply, addr = raw.request(
        "uploads/abandoned.bin", write=True, options=(("blksize", "512"), ("timeout", "1"))
    )
    assert reply == OptionAck((("blksize", "512"), ("timeout", "1")))
    raw.send(Data(1, b"x" * 512).encode(), addr)
    assert raw.recv()[0] == Ack(1)
    parts = [p for p in (served_root / "uploads").iterdir() if p.name.startswith(".abandoned")]
    assert parts, "the upload goes to a temporary file first"
    assert not (served_root / "uploads" / "abandoned.bin").exists()
    deadline = time.monotonic() + 20  # 5 retries of 1 s, then cleanup
    while time.monotonic() < deadline and any(p.exists() for p in parts):
        time.sleep(0.2)
    assert not any(p.exists() for p in parts)
    assert not (served_root / "uploads" / "abandoned.bin").exists()


def test_upload_aborted_by_client_error_leaves_nothing(served_root: Path, raw: RawClient) -> None:
    reply, addr = raw.request("uploads/aborted.bin", write=True)
    assert reply == Ack(0)
    raw.send(Data(1, b"y" * 512).encode(), addr)
    assert raw.recv()[0] == Ack(1)
    raw.send(Error(0, "user cancelled").encode(), addr)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
        p.name.startswith(".aborted") for p in (served_root / "uploads").iterdir()
    ):
        time.sleep(0.05)
    assert [p.name for p in (served_root / "uploads").iterdir() if "aborted" in p.name] == []


MALFORMED = [
    b"",
    b"\x00",
    b"\x00\x01",
    b"\x00\x01no-terminator",
    b"\x00\x01f\x00",
    b"\x00\x01f\x00octet\x00blksize\x00",
    b"\x00\x02\xff\xfe\x00octet\x00",
    b"\x00\x03\x00\x01data on the request port",
    b"\x00\x04\x00\x01",
    b"\x00\x05\x00\x00oops\x00",
    b"\x00\x09junk",
    b"\xff" * 600,
    os.urandom(1400),
    b"\x00\x01" + b"A" * 60000 + b"\x00octet\x00",
    b"\x00\x01f513.bin\x00octet\x00blksize\x00999999999999999999999\x00",
    b"\x00\x01f513.bin\x00octet\x00windowsize\x00-1\x00timeout\x00\x00",
]


@pytest.mark.parametrize("datagram", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_packets_do_not_stop_the_server(
    server: RunningServer, raw: RawClient, tmp_path: Path, datagram: bytes
) -> None:
    raw.send(datagram)
    time.sleep(0.05)
    assert server.process.proc.poll() is None
    assert_still_serving(server, tmp_path)


def test_truncated_packets_inside_a_transfer(
    server: RunningServer, raw: RawClient, tmp_path: Path
) -> None:
    reply, addr = raw.request("f1024.bin")
    assert isinstance(reply, Data)
    for junk in (b"", b"\x00", b"\x00\x04", b"\x00\x04\x00", b"\x00\x03", os.urandom(50)):
        raw.send(junk, addr)
    raw.send(Ack(1).encode(), addr)
    assert raw.recv()[0] == Data(2, (server.root / "f1024.bin").read_bytes()[512:])
    raw.send(Ack(2).encode(), addr)
    assert raw.recv()[0] == Data(3, b"")
    raw.send(Ack(3).encode(), addr)
    assert_still_serving(server, tmp_path)


def test_read_only_refuses_uploads(tmp_path: Path) -> None:
    root = tmp_path / "ro"
    root.mkdir()
    srv = start_server(root, tmp_path / "ro.log", "--read-only")
    try:
        client = RawClient(srv)
        assert_error(client.request("new.bin", write=True)[0], ErrorCode.ACCESS_VIOLATION)
        client.close()
        assert list(root.iterdir()) == []
    finally:
        srv.process.stop()


def test_rfc1350_flag_never_sends_oack(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    make_file(root / "a.bin", 700)
    srv = start_server(root, tmp_path / "r.log", "--rfc1350")
    try:
        client = RawClient(srv)
        reply, addr = client.request("a.bin", options=(("blksize", "1428"), ("tsize", "0")))
        assert isinstance(reply, Data) and reply.block == 1 and len(reply.data) == 512
        client.send(Error(0, "done").encode(), addr)
        client.close()
    finally:
        srv.process.stop()


def test_blksize_max_clamps(tmp_path: Path) -> None:
    root = tmp_path / "b"
    root.mkdir()
    make_file(root / "a.bin", 5000)
    srv = start_server(root, tmp_path / "b.log", "--blksize-max", "1468")
    try:
        client = RawClient(srv)
        reply, addr = client.request("a.bin", options=(("blksize", "65464"),))
        assert reply == OptionAck((("blksize", "1468"),))
        client.send(Ack(0).encode(), addr)
        data = client.recv()[0]
        assert isinstance(data, Data) and len(data.data) == 1468
        client.send(Error(0, "done").encode(), addr)
        client.close()
    finally:
        srv.process.stop()


def test_max_sessions_refuses_with_error_then_recovers(tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    make_file(root / "a.bin", 2000)
    srv = start_server(
        root, tmp_path / "m.log", "--max-sessions", "1", "--timeout", "1", "--retries", "1"
    )
    try:
        first, second = RawClient(srv), RawClient(srv)
        reply, addr = first.request("a.bin")
        assert isinstance(reply, Data)
        busy, _ = second.request("a.bin")
        assert_error(busy, ErrorCode.NOT_DEFINED)
        assert "busy" in busy.message  # type: ignore[attr-defined]
        first.send(Error(0, "bye").encode(), addr)
        time.sleep(0.2)
        reply, addr = second.request("a.bin")
        assert isinstance(reply, Data) and reply.block == 1
        second.send(Error(0, "bye").encode(), addr)
        first.close()
        second.close()
    finally:
        srv.process.stop()


def test_error_from_a_foreign_port_is_not_answered(server: RunningServer, raw: RawClient) -> None:
    reply, addr = raw.request("f1024.bin")
    assert isinstance(reply, Data)
    intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    intruder.bind(("127.0.0.1", 0))
    intruder.settimeout(0.5)
    intruder.sendto(Error(0, "not yours").encode(), addr)
    with pytest.raises(TimeoutError):
        intruder.recvfrom(1000)  # no ERROR 5 back: errors are never answered
    intruder.close()
    raw.send(Ack(1).encode(), addr)
    assert isinstance(raw.recv()[0], Data)
    raw.send(Error(0, "done").encode(), addr)
