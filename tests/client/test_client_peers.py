"""`ptftp` against other people's servers: tftpd-hpa on loopback, dnsmasq's TFTP in a
network namespace of the test's own (it binds port 69)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ptftp_support import (
    MIB,
    SIZES,
    TEXT,
    Server,
    content,
    dnsmasq_in_netns,
    make_root,
    ptftp,
    start_tftpd_hpa,
)


@pytest.fixture(scope="module")
def hpa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = make_root(tmp_path_factory.mktemp("hparoot"))
    srv = start_tftpd_hpa(root, tmp_path_factory.mktemp("log") / "tftpd-hpa.log")
    yield srv
    srv.stop()


@pytest.mark.parametrize("size", SIZES)
def test_tftpd_hpa_download(hpa: Server, tmp_path: Path, size: int) -> None:
    # Default options (blksize 1400, tsize) plus a window tftpd-hpa does not grant.
    result = ptftp(
        "-v", "-w", "16", "-p", str(hpa.port), "get", hpa.host, f"f{size}.bin", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / f"f{size}.bin").read_bytes() == content(size)
    assert b"windowsize 1" in result.stderr  # not granted: plain lock-step
    assert f"tsize {size}".encode() in result.stderr


def test_tftpd_hpa_rollover_at_512(hpa: Server, tmp_path: Path) -> None:
    name = f"f{40 * MIB}.bin"
    result = ptftp("-r", "-p", str(hpa.port), "get", hpa.host, name, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / name).read_bytes() == content(40 * MIB)


def test_tftpd_hpa_upload_and_netascii(hpa: Server, tmp_path: Path) -> None:
    for size in (0, 513, MIB):
        local = tmp_path / f"u{size}.bin"
        local.write_bytes(content(size))
        remote = f"uploads/u{size}.bin"
        result = ptftp("-p", str(hpa.port), "put", hpa.host, str(local), remote)
        assert result.returncode == 0, result.stderr
        assert (hpa.root / remote).read_bytes() == content(size)
    result = ptftp("-m", "netascii", "-p", str(hpa.port), "get", hpa.host, "text.txt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "text.txt").read_bytes() == TEXT
    local = tmp_path / "text.txt"
    result = ptftp(
        "-m", "netascii", "-p", str(hpa.port), "put", hpa.host, str(local), "uploads/t.txt"
    )
    assert result.returncode == 0, result.stderr
    assert (hpa.root / "uploads" / "t.txt").read_bytes() == TEXT


def test_tftpd_hpa_missing_file(hpa: Server, tmp_path: Path) -> None:
    result = ptftp("-p", str(hpa.port), "get", hpa.host, "absent.bin", cwd=tmp_path)
    assert result.returncode == 1
    err = result.stderr.decode()
    assert err.startswith("ptftp: error: server error 1") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_tftpd_hpa_refusing_options(tmp_path_factory: pytest.TempPathFactory) -> None:
    """tftpd-hpa -r drops the named options from its OACK; with all refused it answers
    DATA 1 and the client carries on in RFC 1350 mode."""
    root = make_root(tmp_path_factory.mktemp("hparefuse"), [MIB])
    log = tmp_path_factory.mktemp("log") / "tftpd-hpa.log"
    srv = start_tftpd_hpa(root, log, "-r", "blksize", "-r", "tsize")
    out = tmp_path_factory.mktemp("out")
    try:
        result = ptftp("-v", "-p", str(srv.port), "get", srv.host, f"f{MIB}.bin", cwd=out)
        assert result.returncode == 0, result.stderr
        assert b"blksize 512" in result.stderr
        assert b"RFC 1350 transfer" in result.stderr
        assert (out / f"f{MIB}.bin").read_bytes() == content(MIB)
    finally:
        srv.stop()


def test_dnsmasq_in_a_namespace(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = make_root(tmp_path_factory.mktemp("dnsroot"))
    root.chmod(0o755)
    log = tmp_path_factory.mktemp("log") / "dnsmasq.log"
    out = tmp_path_factory.mktemp("out")
    with dnsmasq_in_netns(root, log) as (ns, srv):
        for size in SIZES:
            result = ptftp("-v", "-w", "8", "get", srv.host, f"f{size}.bin", cwd=out, netns=ns)
            assert result.returncode == 0, result.stderr
            assert (out / f"f{size}.bin").read_bytes() == content(size)
        name = f"f{40 * MIB}.bin"
        result = ptftp("-f", "-b", "512", "get", srv.host, name, cwd=out, netns=ns)
        assert result.returncode == 0, result.stderr
        assert (out / name).read_bytes() == content(40 * MIB)
        result = ptftp("-m", "netascii", "get", srv.host, "text.txt", cwd=out, netns=ns)
        assert result.returncode == 0, result.stderr
        assert (out / "text.txt").read_bytes() == TEXT
        result = ptftp("get", srv.host, "absent.bin", cwd=out, netns=ns)
        assert result.returncode == 1
        assert b"server error 1" in result.stderr and b"Traceback" not in result.stderr
        assert not (out / "absent.bin").exists()
