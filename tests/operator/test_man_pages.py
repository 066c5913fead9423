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
from ptftpd.install import MAN_PAGES
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
    page = MAN / "man8" / f"{MAN_PAGES[tool]}.8"
    out = render(page)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    text = out.stdout
    for heading in (
        "SETTINGS FILE KEYS", "EXAMPLES", "SIGNALS", "FILES", "EXIT STATUS", "SEE ALSO"
    ):  # fmt: skip
        assert f"\n{heading}\n" in text, heading
    examples = text.split("\nEXAMPLES\n")[1].split("\n\n")[0]
    assert examples.strip().startswith(tool), examples  # its own, not another tool's
    for field in SERVERS[tool].FIELDS:
        if field.in_file:
            assert f"\n       {field.key} (" in text, field.key  # every key, with its type
    if tool in ("ptftpd", "pxed"):  # pxed's says it takes none, and what to use instead
        assert "\nMAP FILE\n" in text
    if tool in ("dhcpd", "bootpd"):  # the installed name, and why
        assert f"ptftpd-{tool}(8)" in text


def test_the_installer_has_its_own_page() -> None:
    out = render(MAN / "man8" / "ptftpd-install.8")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    for heading in ("WHAT IT WRITES", "EXAMPLES", "EXIT STATUS", "SEE ALSO"):
        assert f"\n{heading}\n" in out.stdout, heading
    for flag in ("--root", "--prefix", "--user", "--no-create-user"):
        assert flag in out.stdout, flag


def test_the_client_page_renders_without_warnings() -> None:
    out = render(MAN / "man1" / "ptftp.1")
    assert out.returncode == 0 and out.stderr == "", out.stderr
