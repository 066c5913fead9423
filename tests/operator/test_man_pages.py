"""Issue 24: the man pages hold hand-written sections besides --help (every settings key,
the map-file syntax, signals, files, exit status, examples) and render without warnings."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import ptftpd
from ptftpd.cli import bootpd, dhcpd, pxed
from ptftpd.cli import ptftpd as ptftpd_cli
from support import require_tool

MAN = Path(ptftpd.__file__).parent / "data" / "man"
SERVERS = {"ptftpd": ptftpd_cli, "dhcpd": dhcpd, "bootpd": bootpd, "pxed": pxed}


def render(page: Path) -> subprocess.CompletedProcess[str]:
    man = require_tool("man")
    env = {**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8"}
    return subprocess.run(
        [man, "--warnings", "-l", str(page)], capture_output=True, text=True, timeout=60, env=env
    )


@pytest.mark.parametrize("tool", sorted(SERVERS))
def test_server_pages_have_the_hand_written_sections(tool: str) -> None:
    page = MAN / "man8" / f"{tool}.8"
    out = render(page)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    text = out.stdout
    for heading in ("SETTINGS FILE KEYS", "SIGNALS", "FILES", "EXIT STATUS", "SEE ALSO"):
        assert f"\n{heading}\n" in text, heading
    for field in SERVERS[tool].FIELDS:
        if field.in_file:
            assert f"\n       {field.key} (" in text, field.key  # every key, with its type
    if tool == "ptftpd":
        assert "\nMAP FILE\n" in text and "\nEXAMPLES\n" in text


def test_the_client_page_renders_without_warnings() -> None:
    out = render(MAN / "man1" / "ptftp.1")
    assert out.returncode == 0 and out.stderr == "", out.stderr
