"""Issue 24: `ptftpd-install` writes units naming this installation's scripts, creates
the system user, and puts the man pages where `man` finds them; the units it writes pass
`systemd-analyze verify` (systemd is not PID 1 here: nothing is started)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support import require_root, require_tool, script

TOOLS = ("ptftpd", "dhcpd", "bootpd", "pxed")


def verify(unit: Path, man: Path) -> subprocess.CompletedProcess[str]:
    analyze = require_tool("systemd-analyze")
    instance = unit.with_name(unit.name.replace("@.service", "@eth0.service"))
    env = {**os.environ, "MANPATH": str(man)}  # Documentation=man:... must be found
    return subprocess.run(
        [analyze, "verify", str(instance)], capture_output=True, text=True, timeout=120, env=env
    )


def test_install_into_a_root_then_verify(tmp_path: Path) -> None:
    require_root()
    require_tool("useradd")
    man_cmd = require_tool("man")
    root = tmp_path / "root"
    passwd_before = Path("/etc/passwd").read_text()
    res = subprocess.run(
        [script("ptftpd-install"), "--root", str(root), "--prefix", "/usr/local"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert Path("/etc/passwd").read_text() == passwd_before  # only ROOT's tree changed
    assert any(
        line.startswith("ptftpd:") for line in (root / "etc/passwd").read_text().splitlines()
    )
    units = root / "etc/systemd/system"
    man = root / "usr/local/share/man"
    for tool in TOOLS:
        text = (units / f"{tool}@.service").read_text()
        exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
        assert exec_start.startswith(f"ExecStart={Path(script(tool)).absolute()} "), exec_start
        assert "\nUser=ptftpd\n" in text and "DynamicUser" not in text  # comments too
        assert "# Least privilege: the system user ptftpd (created by ptftpd-install)" in text
        assert f"StateDirectory={tool}/%i" in text and f"RuntimeDirectory={tool}-%i" in text
        out = verify(units / f"{tool}@.service", man)
        assert out.returncode == 0 and out.stdout + out.stderr == "", out
    uploads = (units / "ptftpd@.service").read_text()
    assert "# Uploads: ROOT must be writable by ptftpd (e.g. chown ptftpd ROOT);" in uploads
    for page in ("ptftpd", "ptftpd-dhcpd", "ptftpd-bootpd", "pxed", "ptftpd-install"):
        found = subprocess.run(
            [man_cmd, "-M", str(man), "-w", "8", page], capture_output=True, text=True, timeout=30
        )
        assert found.stdout.strip() == str(man / "man8" / f"{page}.8"), found
    assert not (man / "man8" / "dhcpd.8").exists()  # ISC's page keeps its name
    assert (root / "etc/ptftpd/ptftpd.env.example").is_file()
    # again: the user exists, an edited example is kept
    (root / "etc/ptftpd/ptftpd.env.example").write_text("ROOT=/srv/mine\n")
    again = subprocess.run(
        [sys.executable, "-m", "ptftpd", "install", "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert "user ptftpd exists" in again.stdout
    assert (root / "etc/ptftpd/ptftpd.env.example").read_text() == "ROOT=/srv/mine\n"


def test_the_shipped_unit_alone_does_not_verify(tmp_path: Path) -> None:
    """Why the installer exists: the packaged unit names a bare `ptftpd`."""
    import ptftpd

    shipped = Path(ptftpd.__file__).parent / "data/systemd/ptftpd@.service"
    copy = tmp_path / "ptftpd@.service"
    copy.write_text(shipped.read_text())
    out = verify(copy, tmp_path)
    assert out.returncode != 0
