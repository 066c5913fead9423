"""The library API (`ptftpd.tftp.download`/`upload` and their async twins) against a
real `ptftpd` process on loopback."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from ptftp_support import MIB, SIZES, TEXT, Server, content, make_root, start_ptftpd

from ptftpd.tftp import (
    RemoteError,
    TftpError,
    download,
    download_async,
    upload,
    upload_async,
)

OPTIONS: dict[str, dict[str, object]] = {
    "plain": {},
    "fast": {"blksize": 1428, "windowsize": 16, "tsize": True},
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
    result = download(server.host, f"f{size}.bin", out, port=server.port, **OPTIONS[opts])  # type: ignore[arg-type]
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
    result = download(
        server.host, f"f{40 * MIB}.bin", out, port=server.port, blksize=512, windowsize=8
    )
    assert (result.blksize, result.windowsize) == (512, 8)
    assert out.read_bytes() == content(40 * MIB)


def test_download_to_file_object_with_progress(server: Server) -> None:
    calls: list[tuple[int, int | None]] = []
    buffer = io.BytesIO()
    result = download(
        server.host,
        f"f{MIB}.bin",
        buffer,
        port=server.port,
        blksize=1024,
        tsize=True,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert buffer.getvalue() == content(MIB)
    assert result.tsize == MIB
    assert calls and calls[-1] == (MIB, MIB)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_netascii_round_trip(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "text.txt"
    result = download(server.host, "text.txt", out, port=server.port, mode="netascii")
    assert out.read_bytes() == TEXT
    assert result.bytes == len(TEXT)
    assert result.wire_bytes == len(TEXT) + TEXT.count(b"\r") + TEXT.count(b"\n")
    upload(server.host, out, "uploads/text-back.txt", port=server.port, mode="netascii")
    assert (server.root / "uploads" / "text-back.txt").read_bytes() == TEXT


@pytest.mark.parametrize("size", SIZES)
def test_upload_sizes(server: Server, tmp_path: Path, size: int) -> None:
    local = tmp_path / "local.bin"
    local.write_bytes(content(size))
    opts = OPTIONS["fast"] if size == SIZES[-1] else {"blksize": 1000, "tsize": True}
    name = f"uploads/up{size}.bin"
    result = upload(server.host, local, name, port=server.port, **opts)  # type: ignore[arg-type]
    assert (server.root / name).read_bytes() == content(size)
    assert result.bytes == size
    if size == SIZES[-1]:
        assert result.windowsize == 16


def test_upload_from_file_object(server: Server) -> None:
    result = upload(server.host, io.BytesIO(b"x" * 700), "uploads/fileobj.bin", port=server.port)
    assert result.bytes == 700
    assert (server.root / "uploads" / "fileobj.bin").read_bytes() == b"x" * 700


def test_existing_remote_file_is_an_error(server: Server, tmp_path: Path) -> None:
    local = tmp_path / "f513.bin"
    local.write_bytes(b"other")
    with pytest.raises(RemoteError) as info:
        upload(server.host, local, "f513.bin", port=server.port)
    assert info.value.code == 6
    assert (server.root / "f513.bin").read_bytes() == content(513)


def test_missing_file_leaves_nothing(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "missing.bin"
    with pytest.raises(RemoteError) as info:
        download(server.host, "no-such-file", out, port=server.port, blksize=1428)
    assert info.value.code == 1
    assert "file not found" in str(info.value)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_no_overwrite(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "keep.bin"
    out.write_bytes(b"precious")
    with pytest.raises(TftpError, match="already exists"):
        download(server.host, "f513.bin", out, port=server.port, overwrite=False)
    assert out.read_bytes() == b"precious"
    download(server.host, "f513.bin", out, port=server.port)
    assert out.read_bytes() == content(513)


def test_server_without_options_falls_back(rfc1350_server: Server, tmp_path: Path) -> None:
    """A server that ignores options answers DATA 1 (get) or ACK 0 (put)."""
    srv = rfc1350_server
    out = tmp_path / "out.bin"
    result = download(srv.host, f"f{MIB}.bin", out, port=srv.port, blksize=1428, windowsize=16)
    assert out.read_bytes() == content(MIB)
    assert result.rfc1350_fallback
    assert (result.blksize, result.windowsize) == (512, 1)
    result = upload(srv.host, out, "uploads/back.bin", port=srv.port, blksize=1428, tsize=True)
    assert result.rfc1350_fallback
    assert (srv.root / "uploads" / "back.bin").read_bytes() == content(MIB)


def test_async_api_runs_transfers_concurrently(server: Server, tmp_path: Path) -> None:
    async def both() -> None:
        first = download_async(
            server.host, f"f{MIB}.bin", tmp_path / "a.bin", port=server.port, windowsize=4
        )
        second = download_async(server.host, "f513.bin", tmp_path / "b.bin", port=server.port)
        third = upload_async(
            server.host, io.BytesIO(b"y" * 5000), "uploads/async.bin", port=server.port
        )
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
        result = download("::1", "f513.bin", out, port=srv.port, blksize=1428, windowsize=4)
        assert out.read_bytes() == content(513)
        assert result.blksize == 1428
        upload("::1", out, "uploads/v6.bin", port=srv.port)
        assert (root / "uploads" / "v6.bin").read_bytes() == content(513)
    finally:
        srv.stop()


def test_bad_arguments_are_one_line_errors(server: Server, tmp_path: Path) -> None:
    with pytest.raises(TftpError, match="unknown mode"):
        download(server.host, "f513.bin", tmp_path / "x", port=server.port, mode="mail")
    with pytest.raises(TftpError, match="blksize"):
        download(server.host, "f513.bin", tmp_path / "x", port=server.port, blksize=4)
    with pytest.raises(TftpError, match="cannot read"):
        upload(server.host, tmp_path / "absent", "x", port=server.port)
