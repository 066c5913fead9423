"""One settings file for every tool (Kea's one kea.conf, with a table per tool): each of
ptftpd, ptftp, dhcpd, bootpd and pxed reads only its own [TOOL] table, a key outside the
tables names its line, an unknown key names its line inside the right table; the example
file the repository ships is read by all five tools; and ptftp's own --config reaches a
real transfer against ptftpd (flags still winning). Flat per-tool files keep working:
test_config_files.py and test_bad_settings.py."""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import socket
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_bad_settings import is_setting_error, run_main
from test_tftp_reload import read_asking_blksize

from service.test_service_tftp import reload_and_wait
from support import (
    REPO,
    Netns,
    Process,
    free_udp_port,
    require_root,
    require_tool,
    script,
    wait_udp_bound,
    world_readable_dir,
)

TOOLS = ("ptftpd", "ptftp", "dhcpd", "bootpd", "pxed")
EXAMPLE = REPO / "examples" / "ptftpd.toml"

# One key every tool has, set to a different value in each tool's table: whichever a
# tool prints shows which table it read.
SHARED = """\
# one file, five tools
[ptftpd]
max-sessions = 11
rfc1350 = true

[ptftp]
retries = 12
rfc1350 = true

[dhcpd]
reply-delay = 0.25
all = true
[dhcpd.options]
ntp-servers = ["127.0.0.5"]
[[dhcpd.subnet]]
network = "10.1.7.0/24"

[bootpd]
reply-delay = 0.5

[pxed]
max-sessions = 13
reply-delay = 0.75
"""
OWN = {
    "ptftpd": ["max-sessions = 11", "rfc1350 = true"],
    "ptftp": ["retries = 12", "rfc1350 = true"],
    "dhcpd": [
        "reply-delay = 0.25",
        "all = true",
        'options = {ntp-servers = ["127.0.0.5"]}',
        'subnet = [{network = "10.1.7.0/24"}]',
    ],
    "bootpd": ["reply-delay = 0.5"],
    "pxed": ["max-sessions = 13", "reply-delay = 0.75"],
}


def printed(tool: str, text: str, flags: tuple[str, ...] = ()) -> list[str]:
    """`tool --config FILE --print-config` in this process on a file holding `text`."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code, err = run_main(tool, text, [*flags, "--print-config"])
    assert code == 0, err
    return out.getvalue().splitlines()


@pytest.mark.parametrize("tool", TOOLS)
def test_each_tool_reads_its_own_table_and_no_other(tool: str) -> None:
    lines = printed(tool, SHARED)
    for line in OWN[tool]:
        assert line in lines
    others = {line for other, own in OWN.items() if other != tool for line in own}
    assert not others & (set(lines) - set(OWN[tool]))


@pytest.mark.parametrize(
    ("tool", "flag", "shown"),
    [
        ("ptftpd", "--max-sessions=99", "max-sessions = 99"),
        ("ptftpd", "--no-rfc1350", "rfc1350 = false"),
        ("ptftp", "--retries=99", "retries = 99"),
        ("dhcpd", "--no-all", "all = false"),
        ("bootpd", "--reply-delay=2", "reply-delay = 2.0"),
        ("pxed", "--max-sessions=99", "max-sessions = 99"),
    ],
)
def test_a_flag_wins_over_the_tools_table(tool: str, flag: str, shown: str) -> None:
    assert shown in printed(tool, SHARED, (flag,))


@pytest.mark.parametrize("tool", TOOLS)
def test_a_shared_file_without_the_tools_table_sets_nothing(tool: str) -> None:
    others = "\n".join(
        f"[{other}]\nverbose = true\nfrom-{other} = 1\n" for other in TOOLS if other != tool
    )
    lines = printed(tool, others)
    assert "verbose = false" in lines  # the other tables' verbose = true is not this tool's


@pytest.mark.parametrize("tool", TOOLS)
def test_a_key_outside_the_tables_names_its_line(tool: str) -> None:
    """Even a key this tool would take in its own file: the file is a shared one."""
    text = "# shared\n[pxed]\nverbose = true\n" if tool == "ptftpd" else "[ptftpd]\n"
    code, err = run_main(tool, "# stray below\nverbose = true\n\n" + text)
    assert code == 2 and is_setting_error(tool, err), err
    assert "settings.toml:2: verbose: outside the tools' tables" in err
    assert "[ptftpd], [ptftp], [dhcpd], [bootpd], [pxed]" in err


@pytest.mark.parametrize("tool", TOOLS)
def test_a_tool_name_that_is_not_a_table_is_one_line(tool: str) -> None:
    code, err = run_main(tool, "ptftp = 5\n[dhcpd]\nall = true\n")
    assert code == 2 and err.count("\n") == 1, err
    assert "settings.toml:1: ptftp: expected a [ptftp] table, got 5" in err


def unknown_key_file() -> tuple[str, dict[str, int]]:
    """Every tool's table holds the unknown key `blocksize` on a line of its own: the file
    and the line each tool must name (its own table's, not the first in the file)."""
    text, lines = "# shared\n", {}
    for tool in TOOLS:
        text += f"\n[{tool}]\nverbose = true\n"
        lines[tool] = text.count("\n") + 1
        text += "tenant = 512\n"
        if tool == "dhcpd":
            text += "[dhcpd.options]\nntp-servers = []\n"
    return text, lines


@pytest.mark.parametrize("tool", TOOLS)
def test_an_unknown_key_in_a_table_names_its_line_there(tool: str) -> None:
    text, lines = unknown_key_file()
    code, err = run_main(tool, text)
    assert code == 2 and is_setting_error(tool, err), err
    assert f"settings.toml:{lines[tool]}: tenant: unknown key; valid keys: " in err
    assert ", verbose" in err


def test_an_unknown_key_in_a_dhcpd_subtable_header_names_its_line() -> None:
    """[dhcpd.optoins] is an unknown key optoins of [dhcpd]: its header is the line."""
    code, err = run_main("dhcpd", "[ptftpd]\n[dhcpd]\nall = true\n\n[dhcpd.optoins]\nx = 1\n")
    assert code == 2, err
    assert "settings.toml:5: optoins: unknown key (did you mean options?)" in err


# -- the example file the repository ships ----------------------------------------------


def test_the_readme_shows_the_example_file() -> None:
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```toml\n(# examples/ptftpd\.toml[^\n]*\n.*?)```", readme, re.S)
    assert len(blocks) == 1
    body = blocks[0].split("\n", 1)[1]
    assert body == EXAMPLE.read_text()


@pytest.fixture
def lab() -> Iterator[tuple[Netns, Path]]:
    """The example's lab: a namespace where eth1 is 10.0.0.2/24, and a TFTP root with
    the boot files the example names."""
    require_root()
    require_tool("ip")
    ns = Netns("psh")
    try:
        ns.run("ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p")
        ns.run("ip", "addr", "add", "10.0.0.2/24", "dev", "eth1")
        ns.run("ip", "link", "set", "eth1", "up")
        with world_readable_dir("ptftpd-shared-") as root:
            for name in ("pxelinux.0", "undionly.kpxe", "ipxe.efi", "boot.ipxe"):
                (root / name).write_bytes(b"boot")
            yield ns, root
    finally:
        ns.delete()


@pytest.fixture
def example_users() -> Iterator[None]:
    """The users the example file runs the servers as (--print-config checks that
    --user names someone, as a start does): created for the test when missing."""
    made = []
    for user in sorted(set(re.findall(r'^user = "([^"]+)"', EXAMPLE.read_text(), re.M))):
        if subprocess.run(["getent", "passwd", user], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--system", "--no-create-home", user], check=True)
            made.append(user)
    try:
        yield
    finally:
        for user in made:
            subprocess.run(["userdel", user], check=False)


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_reads_the_example_file(
    tool: str, lab: tuple[Netns, Path], example_users: None
) -> None:
    ns, root = lab
    where = {
        "ptftpd": ["eth1", str(root)],
        "ptftp": [],
        "pxed": ["eth1", str(root), "pxelinux.0"],
    }.get(tool, ["eth1", "pxelinux.0"])
    res = ns.run(script(tool), "--config", str(EXAMPLE), "--print-config", *where, check=False)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    table = tomllib.loads(EXAMPLE.read_text())[tool]
    shown = tomllib.loads(res.stdout)
    assert len(table) >= 5
    for key, value in table.items():
        assert shown[key] == value, key


# -- ptftp's own settings ---------------------------------------------------------------


@pytest.fixture
def boot_root() -> Iterator[Path]:
    """A TFTP root holding boot.bin."""
    with world_readable_dir("ptftpd-ptftp-") as root:
        (root / "boot.bin").write_bytes(bytes(range(256)) * 400)
        (root / "boot.bin").chmod(0o644)
        yield root


@pytest.fixture
def tftp_server(boot_root: Path, tmp_path: Path) -> Iterator[tuple[int, Process, Path]]:
    """A ptftpd on 127.0.0.1 logging one line per transfer, and its root."""
    port = free_udp_port()
    argv = [script("ptftpd"), "-v", "--workers", "1", "-p", str(port), "127.0.0.1"]
    server = Process([*argv, str(boot_root)], tmp_path / "ptftpd.log")
    try:
        wait_udp_bound(port, proc=server.proc)
        yield port, server, boot_root
    finally:
        server.stop()


def ptftp(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [script("ptftp"), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("shared", [False, True])
def test_ptftp_transfers_with_the_files_settings_and_a_flag_wins(
    shared: bool, tftp_server: tuple[int, Process, Path], tmp_path: Path
) -> None:
    port, server, root = tftp_server
    settings = f"blksize = 1428\nwindowsize = 4\nport = {port}\nverbose = true\n"
    if shared:
        settings = f"[ptftpd]\nport = 1\n\n[ptftp]\n{settings}[dhcpd]\nall = true\n"
    path = tmp_path / "ptftp.toml"
    path.write_text(settings)

    res = ptftp("--config", str(path), "get", "127.0.0.1", "boot.bin", "one.bin", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "one.bin").read_bytes() == (root / "boot.bin").read_bytes()
    assert "blksize 1428, windowsize 4" in res.stderr  # verbose = true: what was agreed
    log = server.wait_output("'boot.bin' octet: sent")
    assert "blksize=1428 windowsize=4" in log  # what the server granted: the OACK

    res = ptftp(
        "--config", str(path), "-b", "512", "get", "127.0.0.1", "boot.bin", "two.bin", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    assert "blksize 512, windowsize 4" in res.stderr
    assert "blksize=512 windowsize=4" in server.wait_output("blksize=512")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ('blksize = "1428"\n', "ptftp.toml:1: blksize: expected an integer"),
        ("[ptftp]\nwindowsize = 1.5\n", "ptftp.toml:2: windowsize: expected an integer"),
        ("[ptftp]\n\nblksize = 4\n", "ptftp.toml:3: blksize: must be 8..65464"),
        ('mode = "mail"\n', "ptftp.toml:1: mode: unknown mode 'mail'"),
        ('host = "10.0.0.2"\n', "ptftp.toml:1: host: unknown key; valid keys: blksize,"),
    ],
)
def test_a_bad_ptftp_setting_is_one_line_exit_2(text: str, shown: str, tmp_path: Path) -> None:
    path = tmp_path / "ptftp.toml"
    path.write_text(text)
    res = ptftp("--config", str(path), "get", "127.0.0.1", "boot.bin", cwd=tmp_path)
    assert res.returncode == 2
    assert is_setting_error("ptftp", res.stderr), res.stderr
    assert shown in res.stderr
    assert not (tmp_path / "boot.bin").exists()


def test_ptftp_print_config_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "ptftp.toml"
    path.write_text('[ptftp]\nblksize = 1428\nmode = "ascii"\ntsize = false\ntimeout = 3\n')
    res = ptftp("--config", str(path), "-w", "8", "--print-config", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    for line in ("blksize = 1428", 'mode = "netascii"', "tsize = false", "windowsize = 8"):
        assert line in lines
    again = tmp_path / "again.toml"
    again.write_text(res.stdout)
    assert ptftp("--config", str(again), "--print-config", cwd=tmp_path).stdout == res.stdout


def hosts(n: int) -> str:
    return "[" + ", ".join(f'"52:54:00:00:00:0{i}=10.0.0.1{i}"' for i in range(n)) + "]"


def test_sighup_rereads_the_tools_own_table(lab: tuple[Netns, Path]) -> None:
    """dhcpd reloads its [dhcpd] table: the static hosts it reports are that table's,
    not those of the [pxed] and [bootpd] tables around it."""
    ns, state = lab
    path = state / "lab.toml"

    def write(n: int) -> None:
        path.write_text(
            f"[pxed]\nhosts = {hosts(3)}\n\n[dhcpd]\nrange = ['10.0.0.100', '10.0.0.120']\n"
            f"leases = '{state / 'leases.sqlite'}'\nhosts = {hosts(n)}\n\n"
            f"[bootpd]\nhosts = {hosts(4)}\n"
        )

    write(1)
    argv = [script("dhcpd"), "-a", "-v", "--config", str(path), "eth1", "pxelinux.0"]
    server = Process(ns.popen_argv(argv), state / "dhcpd.log")
    try:
        wait_udp_bound(67, timeout=15, proc=server.proc, netns=ns.name)
        write(2)
        server.proc.send_signal(signal.SIGHUP)
        log = server.wait_output("reloaded:", timeout=15)
        assert "reloaded: 2 static host(s)" in log, log
        assert server.proc.poll() is None
    finally:
        assert server.stop() == 0


def test_sighup_makes_ptftpd_reread_its_own_table(
    boot_root: Path, tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    """ptftpd's reload reads [ptftpd] again: the blksize maximum granted is that
    table's, before and after, never the [pxed] table's beside it."""
    root = boot_root
    listener, notify = notify_socket
    path = tmp_path / "lab.toml"

    def write(mine: int) -> None:
        path.write_text(f"[pxed]\nblksize-max = 600\n\n[ptftpd]\nblksize-max = {mine}\n")

    write(512)
    port = free_udp_port()
    argv = [script("ptftpd"), "-v", "--workers", "1", "-p", str(port), "--config", str(path)]
    env = {**os.environ, "NOTIFY_SOCKET": notify}
    server = Process([*argv, "127.0.0.1", str(root)], tmp_path / "reload.log", env=env)
    try:
        assert listener.recv(4096) == b"READY=1"
        assert read_asking_blksize(port, "boot.bin", 1428).blksize == 512
        write(1024)
        reload_and_wait(server, listener)
        assert read_asking_blksize(port, "boot.bin", 1428).blksize == 1024
    finally:
        assert server.stop() == 0, server.output()
