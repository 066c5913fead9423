"""One configuration model: ptftpd reads a TOML file whose keys are its long flags (flags
win), every server's --print-config output is a file its --config reads back to the same
settings, and a TOML value of the wrong type for any ptftpd key is one line and exit 2."""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bad_settings import KINDS, toml_value

from ptftpd.cli import ptftpd as ptftpd_cli
from ptftpd.config import flag_keys
from support import Process, free_udp_port, require_tool, script, wait_udp_bound

FILE = bytes(range(256)) * 20 + b"end"

# What each ptftpd key accepts, as this test's own specification (kinds of TOML values).
KEY_KINDS = {
    ("read-only", "create", "verbose", "debug", "rfc1350"): {"bool"},
    ("port", "blksize-max", "windowsize-max", "retries", "max-sessions", "workers"): {"int"},
    ("timeout", "drain"): {"int", "float"},
    ("map-file", "port-range", "umask", "user", "group", "metrics"): {"str"},
}
PTFTPD_ACCEPTS = {key: kinds for keys, kinds in KEY_KINDS.items() for key in keys}


@pytest.fixture
def root() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="ptftpd-cfg-"))
    folder.chmod(0o777)
    (folder / "boot.bin").write_bytes(FILE)
    (folder / "boot.bin").chmod(0o644)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def print_config(tool: str, *args: str) -> str:
    res = subprocess.run(
        [script(tool), *args, "--print-config"], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def tftp_hpa(port: int, *command: str, cwd: Path) -> str:
    tftp = require_tool("tftp")
    argv = [tftp, "127.0.0.1", str(port), "-m", "octet", "-c", *command]
    res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60)
    return res.stdout + res.stderr


def test_ptftpd_reads_the_file_and_a_flag_wins(root: Path, tmp_path: Path) -> None:
    port = free_udp_port()
    settings_file = tmp_path / "ptftpd.toml"
    settings_file.write_text('port = 1\nread-only = true\nblksize-max = 1468\numask = "027"\n')
    argv = ["--config", str(settings_file), "-p", str(port)]

    shown = print_config("ptftpd", *argv, "127.0.0.1", str(root)).splitlines()
    assert f"port = {port}" in shown  # the flag, not the file's 1
    assert "read-only = true" in shown and "blksize-max = 1468" in shown
    assert 'umask = "027"' in shown

    server = Process([script("ptftpd"), "-v", *argv, "127.0.0.1", str(root)], tmp_path / "s.log")
    try:
        wait_udp_bound(port, proc=server.proc)
        work = tmp_path / "c"
        work.mkdir()
        tftp_hpa(port, "get", "boot.bin", cwd=work)
        assert (work / "boot.bin").read_bytes() == FILE
        (work / "up.bin").write_bytes(b"u" * 700)
        out = tftp_hpa(port, "put", "up.bin", cwd=work)
        assert "Error code" in out  # read-only = true from the file
        assert not (root / "up.bin").exists()
    finally:
        server.stop()


@pytest.mark.parametrize("tool", ["ptftpd", "dhcpd", "bootpd", "pxed"])
def test_print_config_reads_back_to_the_same_settings(
    tool: str, root: Path, tmp_path: Path
) -> None:
    (root / "pxelinux.0").write_bytes(b"boot")
    first = tmp_path / "first.toml"
    if tool == "ptftpd":
        first.write_text('timeout = 2\nport-range = "40000:40010"\nmetrics = "127.0.0.1:9469"\n')
        flags = ["--umask", "022", "--no-create", "--max-sessions", "9"]
        where = ["127.0.0.1", str(root)]
    else:
        first.write_text(
            'range = ["127.0.0.100", "127.0.0.200"]\nreply-delay = 0.5\n'
            'hosts = ["52:54:00:12:34:56=127.0.0.10,b1"]\n'
            '[options]\nntp-servers = ["127.0.0.5"]\n'
            '[[subnet]]\nnetwork = "10.1.7.0/24"\nrange = ["10.1.7.100", "10.1.7.200"]\n'
        )
        flags = ["-n", "127.0.0.53", "--host", "52:54:00:12:34:57=127.0.0.11"]
        where = ["127.0.0.1", str(root), "pxelinux.0"] if tool == "pxed" else ["lo", "x.0"]
    once = print_config(tool, "--config", str(first), *flags, *where)
    assert "127.0.0.53" in once or tool == "ptftpd"
    again = tmp_path / "again.toml"
    again.write_text(once)
    assert print_config(tool, "--config", str(again), *where) == once


def test_the_specification_covers_every_ptftpd_flag() -> None:
    assert set(PTFTPD_ACCEPTS) == set(flag_keys(ptftpd_cli.build_parser()))


@st.composite
def wrong_setting(draw: st.DrawFn) -> tuple[str, object]:
    key = draw(st.sampled_from(sorted(PTFTPD_ACCEPTS)))
    kind = draw(st.sampled_from(sorted(set(KINDS) - PTFTPD_ACCEPTS[key])))
    return key, draw(KINDS[kind])


def run_ptftpd(config_text: str, root: Path) -> tuple[int, str]:
    """ptftpd's main on a config file, in this process; it must never reach serving."""
    path = root.parent / f"{root.name}.toml"
    path.write_text(config_text)
    err = io.StringIO()
    code: object = None
    never = mock.Mock(side_effect=AssertionError("reached serving"))
    try:
        with (
            mock.patch.object(ptftpd_cli.runtime, "run", never),
            mock.patch.object(ptftpd_cli.tftp_pool, "run", never),
            contextlib.redirect_stderr(err),
        ):
            try:
                ptftpd_cli.main(["--config", str(path), "127.0.0.1", str(root)])
            except SystemExit as exc:
                code = exc.code
    finally:
        path.unlink()
    assert isinstance(code, int), f"no exit for {config_text!r}"
    return code, err.getvalue()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wrong_setting())
def test_a_wrong_type_for_any_ptftpd_key_is_one_line_exit_2(
    setting: tuple[str, object],
) -> None:
    key, value = setting
    folder = Path(tempfile.mkdtemp(prefix="ptftpd-cfg-"))
    try:
        code, err = run_ptftpd(f"{key} = {toml_value(value)}\n", folder)
    finally:
        shutil.rmtree(folder)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("ptftpd: error: "), err
    assert f"{key} = " in err and "expected" in err
    assert "Traceback" not in err


def test_an_unknown_ptftpd_key_lists_the_valid_ones(root: Path) -> None:
    code, err = run_ptftpd("port = 6969\nblocksize = 512\n", root)
    assert code == 2 and err.count("\n") == 1
    assert ".toml:2: unknown key(s) blocksize" in err and "blksize-max, create" in err
