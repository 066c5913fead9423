"""The library API (`ptftpd.tftp.TftpClient`: download/upload and their async twins)
against a real `ptftpd` process on loopback."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from ptftp_support import MIB, SIZES, TEXT, Server, content, make_root, start_ptftpd

from ptftpd.tftp import (
    RemoteError,
    TftpClient,
    TftpError,
    TransferOptions,
)

OPTIONS: dict[str, TransferOptions] = {
    "plain": TransferOptions(),
    "fast": TransferOptions(blksize=1428, windowsize=16, tsize=True),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = make_root(tmp_path_factory.mktemp("root"))
    srv = start_ptftpd(root, tmp_path_factory.mktemp("log") / "ptftpd.log")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def rfc1350_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = make_root(tmp_path_factory.mktemp("root1350"), [513, MIB])
    srv = start_ptftpd(root, tmp_path_factory.mktemp("log") / "ptftpd.log", "--rfc1350")
    yield srv
    srv.stop()


def no_leftovers(directory: Path) -> bool:
    return not any(p.name.endswith(".part") for p in directory.iterdir())


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("opts", sorted(OPTIONS))
def test_download_sizes(server: Server, tmp_path: Path, size: int, opts: str) -> None:
    out = tmp_path / "out.bin"
    result = TftpClient(server.host, server.port, OPTIONS[opts]).download(f"f{size}.bin", out)
    assert out.read_bytes() == content(size)
    assert result.bytes == result.wire_bytes == size
    assert not result.rfc1350_fallback
    if opts == "fast":
        assert (result.blksize, result.windowsize, result.tsize) == (1428, 16, size)
    else:
        assert (result.blksize, result.windowsize, result.options) == (512, 1, ())
    assert no_leftovers(tmp_path)


def test_rollover_with_windows_of_small_blocks(server: Server, tmp_path: Path) -> None:
    """40 MiB at blksize 512 crosses block 65535 -> 0 inside windows of 8."""
    out = tmp_path / "out.bin"
    client = TftpClient(server.host, server.port, TransferOptions(blksize=512, windowsize=8))
    result = client.download(f"f{40 * MIB}.bin", out)
    assert (result.blksize, result.windowsize) == (512, 8)
    assert out.read_bytes() == content(40 * MIB)


def test_download_to_file_object_with_progress(server: Server) -> None:
    calls: list[tuple[int, int | None]] = []
    buffer = io.BytesIO()
    client = TftpClient(server.host, server.port, TransferOptions(blksize=1024, tsize=True))
    result = client.download(
        f"f{MIB}.bin", buffer, progress=lambda done, total: calls.append((done, total))
    )
    assert buffer.getvalue() == content(MIB)
    assert result.tsize == MIB
    assert calls and calls[-1] == (MIB, MIB)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_netascii_round_trip(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "text.txt"
    client = TftpClient(server.host, server.port, TransferOptions(mode="netascii"))
    result = client.download("text.txt", out)
    assert out.read_bytes() == TEXT
    assert result.bytes == len(TEXT)
    assert result.wire_bytes == len(TEXT) + TEXT.count(b"\r") + TEXT.count(b"\n")
    client.upload(out, "uploads/text-back.txt")
    assert (server.root / "uploads" / "text-back.txt").read_bytes() == TEXT


@pytest.mark.parametrize("size", SIZES)
def test_upload_sizes(server: Server, tmp_path: Path, size: int) -> None:
    local = tmp_path / "local.bin"
    local.write_bytes(content(size))
    opts = OPTIONS["fast"] if size == SIZES[-1] else TransferOptions(blksize=1000, tsize=True)
    name = f"uploads/up{size}.bin"
    result = TftpClient(server.host, server.port, opts).upload(local, name)
    assert (server.root / name).read_bytes() == content(size)
    assert result.bytes == size
    if size == SIZES[-1]:
        assert result.windowsize == 16


def test_upload_from_file_object(server: Server) -> None:
    client = TftpClient(server.host, server.port)
    result = client.upload(io.BytesIO(b"x" * 700), "uploads/fileobj.bin")
    assert result.bytes == 700
    assert (server.root / "uploads" / "fileobj.bin").read_bytes() == b"x" * 700


def test_existing_remote_file_is_an_error(server: Server, tmp_path: Path) -> None:
    local = tmp_path / "f513.bin"
    local.write_bytes(b"other")
    with pytest.raises(RemoteError) as info:
        TftpClient(server.host, server.port).upload(local, "f513.bin")
    assert info.value.code == 6
    assert (server.root / "f513.bin").read_bytes() == content(513)


def test_missing_file_leaves_nothing(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "missing.bin"
    with pytest.raises(RemoteError) as info:
        client = TftpClient(server.host, server.port, TransferOptions(blksize=1428))
        client.download("no-such-file", out)
    assert info.value.code == 1
    assert "file not found" in str(info.value)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_no_overwrite(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "keep.bin"
    out.write_bytes(b"precious")
    with pytest.raises(TftpError, match="already exists"):
        TftpClient(server.host, server.port).download("f513.bin", out, overwrite=False)
    assert out.read_bytes() == b"precious"
    TftpClient(server.host, server.port).download("f513.bin", out)
    assert out.read_bytes() == content(513)


def test_server_without_options_falls_back(rfc1350_server: Server, tmp_path: Path) -> None:
    """A server that ignores options answers DATA 1 (get) or ACK 0 (put)."""
    srv = rfc1350_server
    out = tmp_path / "out.bin"
    asked = TransferOptions(blksize=1428, windowsize=16)
    result = TftpClient(srv.host, srv.port, asked).download(f"f{MIB}.bin", out)
    assert out.read_bytes() == content(MIB)
    assert result.rfc1350_fallback
    assert (result.blksize, result.windowsize) == (512, 1)
    asked = TransferOptions(blksize=1428, tsize=True)
    result = TftpClient(srv.host, srv.port, asked).upload(out, "uploads/back.bin")
    assert result.rfc1350_fallback
    assert (srv.root / "uploads" / "back.bin").read_bytes() == content(MIB)


def test_async_api_runs_transfers_concurrently(server: Server, tmp_path: Path) -> None:
    async def both() -> None:
        windowed = TftpClient(server.host, server.port, TransferOptions(windowsize=4))
        plain = TftpClient(server.host, server.port)
        first = windowed.download_async(f"f{MIB}.bin", tmp_path / "a.bin")
        second = plain.download_async("f513.bin", tmp_path / "b.bin")
        third = plain.upload_async(io.BytesIO(b"y" * 5000), "uploads/async.bin")
        await asyncio.gather(first, second, third)

    asyncio.run(both())
    assert (tmp_path / "a.bin").read_bytes() == content(MIB)
    assert (tmp_path / "b.bin").read_bytes() == content(513)
    assert (server.root / "uploads" / "async.bin").read_bytes() == b"y" * 5000


def test_ipv6(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    root = make_root(tmp_path_factory.mktemp("root6"), [513])
    srv = start_ptftpd(root, tmp_path / "ptftpd6.log", host="::1")
    try:
        out = tmp_path / "out.bin"
        asked = TransferOptions(blksize=1428, windowsize=4)
        result = TftpClient("::1", srv.port, asked).download("f513.bin", out)
        assert out.read_bytes() == content(513)
        assert result.blksize == 1428
        TftpClient("::1", srv.port).upload(out, "uploads/v6.bin")
        assert (root / "uploads" / "v6.bin").read_bytes() == content(513)
    finally:
        srv.stop()


def test_bad_arguments_are_one_line_errors(server: Server, tmp_path: Path) -> None:
    with pytest.raises(TftpError, match="unknown mode"):
        TransferOptions(mode="mail")
    with pytest.raises(TftpError, match="blksize"):
        TransferOptions(blksize=4)
    with pytest.raises(TftpError, match="cannot read"):
        TftpClient(server.host, server.port).upload(tmp_path / "absent", "x")
