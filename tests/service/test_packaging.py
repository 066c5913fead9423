"""Shipped service files: systemd units verified by systemd-analyze, man pages rendered by
man without warnings and in step with the parsers, and a wheel built without warnings."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ptftpd.install import MAN_PAGES
from support import REPO, VENV_BIN, require_tool

DATA = REPO / "src" / "ptftpd" / "data"
UNITS = sorted((DATA / "systemd").glob("*@.service"))
PAGES = sorted((DATA / "man").glob("man*/*.[18]"))
TOOLS = {"ptftpd", "dhcpd", "bootpd", "pxed"}


def test_every_server_has_a_unit_and_every_tool_a_page() -> None:
    assert {unit.name.split("@")[0] for unit in UNITS} == TOOLS
    # dhcpd's and bootpd's pages are ptftpd-dhcpd and ptftpd-bootpd (ISC and bootp own
    # the bare names), and the installer has its own
    assert {page.stem for page in PAGES} == {
        "ptftpd",
        "ptftpd-dhcpd",
        "ptftpd-bootpd",
        "pxed",
        "ptftp",
        "ptftpd-install",
    }
    assert set(MAN_PAGES.values()) == {page.stem for page in PAGES}


def with_venv_program(unit: Path, folder: Path) -> Path:
    """The unit as shipped, except that ExecStart names this venv's console script.

    Shipped units name the bare program (systemd finds /usr/bin or /usr/local/bin); here
    the program lives in the test venv. Nothing else is changed.
    """
    tool = unit.name.split("@")[0]
    text = unit.read_text()
    changed = text.replace(f"\nExecStart={tool} ", f"\nExecStart={VENV_BIN / tool} ", 1)
    assert changed != text, f"{unit.name}: ExecStart={tool} not found"
    copy = folder / unit.name
    copy.write_text(changed)
    return copy


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    analyze = require_tool("systemd-analyze")
    env = {**os.environ, "MANPATH": str(DATA / "man")}  # Documentation=man:... is checked
    return subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_unit_passes_systemd_analyze_verify(unit: Path, tmp_path: Path) -> None:
    done = verify(with_venv_program(unit, tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""  # unknown keys are only warnings: none allowed
    text = unit.read_text()
    for line in (
        "Type=notify",
        "DynamicUser=yes",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE CAP_NET_RAW",
        "ProtectSystem=strict",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):
        assert f"\n{line}\n" in text
    assert re.search(r"\nEnvironmentFile=/etc/ptftpd/\w+-%i\.env\n", text)
    assert "StateDirectory=" in text or "ReadWritePaths=" in text
    if unit.name in ("ptftpd@.service", "pxed@.service"):  # their --workers port lock
        assert "\nReadWritePaths=-/run/lock\n" in text


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: an unknown key and a missing program are both reported."""
    unit = with_venv_program(UNITS[0], tmp_path)
    unit.write_text(unit.read_text().replace("Type=notify", "Type=notify\nBogusKey=1"))
    assert "Unknown key 'BogusKey'" in verify(unit).stderr
    shipped = tmp_path / "shipped" / UNITS[0].name
    shipped.parent.mkdir()
    shipped.write_text(UNITS[0].read_text().replace("ExecStart=", "ExecStart=/nonexistent/"))
    assert verify(shipped).returncode != 0


def man_warnings(page: Path) -> str:
    man = require_tool("man")
    env = {**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8"}
    done = subprocess.run(
        [man, "--warnings", "-l", str(page)], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    return done.stderr


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_man_page_renders_without_warnings(page: Path) -> None:
    assert man_warnings(page) == ""


def test_man_warnings_are_seen(tmp_path: Path) -> None:
    broken = tmp_path / "broken.8"
    broken.write_text(PAGES[0].read_text() + "\n.NOSUCHMACRO\n")
    assert "NOSUCHMACRO" in man_warnings(broken)


def test_man_pages_match_the_parsers() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "manpages.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_man_page_lists_every_option(page: Path) -> None:
    tool = next(tool for tool, name in MAN_PAGES.items() if name == page.stem)
    module = importlib.import_module(
        "ptftpd.install" if tool == "ptftpd-install" else f"ptftpd.cli.{tool}"
    )
    text = page.read_text().replace("\\-", "-")
    for action in module.build_parser()._actions:
        if isinstance(action, argparse._HelpAction):
            continue  # argparse-manpage leaves --help out, as man pages do
        for flag in action.option_strings:
            assert flag in text, flag


def test_wheel_builds_without_warnings_and_ships_units_and_pages(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = (done.stdout + done.stderr).splitlines()
    noisy = [
        line
        for line in lines
        if re.search(r"deprecat|SetuptoolsWarning|license", line, re.IGNORECASE)
        and "is ignored" not in line
    ]
    assert noisy == []
    (wheel,) = tmp_path.glob("ptftpd-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for unit in UNITS:
        assert f"ptftpd/data/systemd/{unit.name}" in names
    for page in PAGES:
        assert any(
            name.endswith(f"data/share/man/{page.parent.name}/{page.name}") for name in names
        )
    # what `pip install` puts in PREFIX/share/man never takes ISC's or bootp's page names
    taken = ("share/man/man8/dhcpd.8", "share/man/man8/bootpd.8")
    assert not [n for n in names if n.endswith(taken)], names
