"""One configuration model: every server reads a TOML file whose keys are its long flags
(flags win, a --no- flag turns off what the file turned on), and every server's
--print-config output is a file its --config reads back to the same settings. (Wrong
types and unknown keys: test_bad_settings.py.)"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from test_bad_settings import run_main

from ptftpd import fields
from ptftpd.cli import pxed as pxed_cli
from ptftpd.config import load_toml
from ptftpd.dhcp.server_settings import dhcp_config
from ptftpd.pxe.settings import pxe_config
from support import Process, free_udp_port, require_tool, script, wait_udp_bound, world_readable_dir

FILE = bytes(range(256)) * 20 + b"end"


@pytest.fixture
def root() -> Iterator[Path]:
    with world_readable_dir("ptftpd-cfg-") as folder:
        folder.chmod(0o777)
        (folder / "boot.bin").write_bytes(FILE)
        (folder / "boot.bin").chmod(0o644)
        yield folder


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
        flags += ["--user", "nobody", "--metrics", "127.0.0.1:9470", "--drain", "3", "-v"]
        where = ["lo", "x.0"]
    if tool == "dhcpd":
        flags += ["--no-all", "--authoritative", "--lease-sync", "full"]
    if tool == "bootpd":
        flags += ["--root", str(root), "--port", "1067"]
        where = ["lo", "pxelinux.0"]
    if tool == "pxed":
        flags += ["--ipv6", "--no-ra", "--http-port", "8080", "--efi64-bootfile", "pxelinux.0"]
        flags += ["--blksize-max", "1468", "--boot-idle", "5", "--proxy", "-r"]
        where = ["127.0.0.1", str(root), "pxelinux.0"]
    once = print_config(tool, "--config", str(first), *flags, *where)
    assert "127.0.0.53" in once or tool == "ptftpd"
    assert 'user = "nobody"' in once or tool == "ptftpd"
    if tool == "bootpd":
        assert f'root = "{root}"' in once and "port = 1067" in once
    if tool == "pxed":
        assert "ra = false" in once and 'efi64-bootfile = "pxelinux.0"' in once
    again = tmp_path / "again.toml"
    again.write_text(once)
    assert print_config(tool, "--config", str(again), *where) == once


@pytest.mark.parametrize(
    ("tool", "argv", "shown"),
    [
        (
            "dhcpd",
            ["-t", "127.0.0.2", "-g", "127.0.0.1", "-n", "127.0.0.53", "-a", "-v", "-D"],
            ['tftp-server = "127.0.0.2"', 'gateway = "127.0.0.1"', 'dns = ["127.0.0.53"]'],
        ),
        ("bootpd", ["-t", "127.0.0.2", "-v"], ['tftp-server = "127.0.0.2"', "verbose = true"]),
        (
            "pxed",
            ["-r", "-g", "127.0.0.1", "-a", "-n", "127.0.0.53", "-v", "-D"],
            ["rfc1350 = true", "all = true", "debug = true", 'dns = ["127.0.0.53"]'],
        ),
        ("ptftpd", ["-p", "6969", "-r", "-v", "-D"], ["port = 6969", "rfc1350 = true"]),
    ],
)
def test_the_ptftpd_1x_command_lines_still_work(
    tool: str, argv: list[str], shown: list[str]
) -> None:
    """pTFTPd 1.x's short flags, before the positional arguments as its README had them."""
    printed = print_config_in_process(tool, "", argv)
    for line in shown:
        assert line in printed


@pytest.mark.parametrize(
    ("tool", "file_line", "flag", "shown"),
    [
        ("ptftpd", "read-only = true", "--no-read-only", "read-only = false"),
        ("ptftpd", "rfc1350 = true", "--no-rfc1350", "rfc1350 = false"),
        ("ptftpd", "rfc1350 = false", "-r", "rfc1350 = true"),
        ("dhcpd", "all = true", "--no-all", "all = false"),
        ("dhcpd", "all = false", "-a", "all = true"),
        ("dhcpd", "authoritative = true", "--no-authoritative", "authoritative = false"),
        ("bootpd", "authoritative = true", "--no-authoritative", "authoritative = false"),
        ("pxed", "proxy = true", "--no-proxy", "proxy = false"),
        ("pxed", "ipv6 = true", "--no-ipv6", "ipv6 = false"),
        ("pxed", "ipv6 = true\nra = true", "--no-ra", "ra = false"),
        ("pxed", "all = true", "--no-all", "all = false"),
        ("pxed", "rfc1350 = true", "--no-rfc1350", "rfc1350 = false"),
    ],
)
def test_a_flag_turns_off_what_the_file_turned_on(
    tool: str, file_line: str, flag: str, shown: str
) -> None:
    printed = print_config_in_process(tool, file_line, [])
    assert file_line.splitlines()[-1] in printed
    printed = print_config_in_process(tool, file_line, [flag])
    assert shown in printed and file_line.splitlines()[-1] not in printed


def print_config_in_process(tool: str, file_text: str, flags: list[str]) -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code, err = run_main(tool, file_text + "\n", [*flags, "--print-config"])
    assert code == 0, err
    return out.getvalue().splitlines()


def test_every_pxed_setting_from_its_file(root: Path, tmp_path: Path) -> None:
    """pxed's own keys (boot files, TFTP limits, HTTP, IPv6, service) from the file reach
    the settings it serves with; flags still win."""
    for name in ("pxelinux.0", "undionly.kpxe", "ipxe.efi", "boot.ipxe"):
        (root / name).write_bytes(b"boot")
    settings_file = tmp_path / "pxed.toml"
    settings_file.write_text(
        'bios-bootfile = "undionly.kpxe"\nefi64-bootfile = "ipxe.efi"\n'
        'ipxe-bootfile = "boot.ipxe"\ntftp-port = 1069\nblksize-max = 1468\n'
        "windowsize-max = 8\ntimeout = 2\nretries = 3\nmax-sessions = 10\n"
        "http-port = 8080\nipv6 = true\nra = false\nboot-idle = 5\nproxy = true\n"
        'user = "nobody"\nmetrics = "127.0.0.1:9469"\ndrain = 3\nlease-time = 600\n'
        'exclude = ["127.0.0.7"]\n[[subnet]]\nnetwork = "10.1.7.0/24"\n'
    )
    read = pxed_cli.read_settings(
        ["--config", str(settings_file), "--retries", "4", "127.0.0.1", str(root), "pxelinux.0"]
    )
    settings = read.effective()
    args = read.namespace(settings)
    dhcp = dhcp_config(settings, args.iface, args.bootfile, "pxed")
    config = pxe_config(settings, dhcp, args.root, args.bootfile)
    assert (config.files.bios, config.files.efi64) == ("undionly.kpxe", "ipxe.efi")
    assert config.files.ipxe == "boot.ipxe" == dhcp.ipxe_bootfile
    assert (config.tftp_port, config.http_port, config.boot_idle) == (1069, 8080, 5.0)
    assert config.ipv6 and not config.ra and config.proxy and config.tftp.read_only
    tftp = config.tftp
    assert (tftp.blksize_max, tftp.windowsize_max, tftp.timeout) == (1468, 8, 2.0)
    assert (tftp.retries, tftp.max_sessions) == (4, 10)  # the flag's 4, not the file's 3
    assert "HTTPClient" in config.dhcp.pxe_vendor_prefixes
    assert dhcp.lease_time == 600 and len(dhcp.subnets) == 1
    assert IPv4Address("127.0.0.7") in dhcp.exclude
    assert (args.user, args.metrics, args.drain) == ("nobody", ("127.0.0.1", 9469), 3.0)


def readme_settings_files() -> dict[str, str]:
    """The README's ```toml blocks that start with `# TOOL.toml`, by tool."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```toml\n# (\w+)\.toml[^\n]*\n(.*?)```", text, re.S)
    return {tool: body for tool, body in blocks}


@pytest.mark.parametrize("tool", ["ptftpd", "dhcpd", "bootpd", "pxed"])
def test_the_readme_settings_files_are_valid(tool: str, tmp_path: Path) -> None:
    """Every key of the README's example files exists for its tool, with a good value."""
    files = readme_settings_files()
    assert set(files) == {"ptftpd", "dhcpd", "pxed"}
    body = files["dhcpd" if tool == "bootpd" else tool]
    if tool == "bootpd":  # as the README says: without the DHCP-only keys, plus root
        body = re.sub(r"(?m)^(all|lease-time|pxe-vendor-class) = .*\n", "", body)
        body = 'root = "/srv/tftp"\n' + body
    path = tmp_path / f"{tool}.toml"
    path.write_text(body)
    table = importlib.import_module(f"ptftpd.cli.{tool}").FIELDS
    settings = fields.from_file(table, load_toml(path, tool))
    if tool == "ptftpd":
        assert len(settings) >= 5
        return
    assert len(settings) >= 14
