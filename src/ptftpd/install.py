"""`ptftpd-install` (or `python -m ptftpd install`): install the servers as systemd services.

What the package ships in ``ptftpd/data`` is made to fit this installation:

- the units (``ptftpd@.service``, ``dhcpd@.service``, ``bootpd@.service``,
  ``pxed@.service``) go to ``ROOT/etc/systemd/system`` with ``ExecStart=`` naming this
  installation's absolute script path (a venv's ``.venv/bin/ptftpd`` works as well as
  ``/usr/local/bin/ptftpd``), run as a fixed system user (``User=``/``Group=`` instead
  of ``DynamicUser=``, so an upload ROOT can be given to it) with ``StateDirectory=`` for
  leases and ``RuntimeDirectory=`` for the workers' metrics files;
- the system user (``--user``, ``ptftpd``) is created with ``useradd --system`` unless
  it exists;
- the ``*.env.example`` files go to ``ROOT/etc/ptftpd`` (an existing file is kept);
- the man pages go to ``ROOT/PREFIX/share/man`` where `man` finds them, under
  ``ptftpd-dhcpd(8)`` and ``ptftpd-bootpd(8)`` where the bare name is another
  package's page (ISC's dhcpd, bootp's bootpd; `MAN_PAGES`, the names they are built
  and shipped with, so `pip install` uses them too); the commands keep their names.

``--root DIR`` installs into another tree (a package build, a test); nothing is started.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

PROG = "ptftpd-install"
DATA = Path(__file__).resolve().parent / "data"
TOOLS = ("ptftpd", "dhcpd", "bootpd", "pxed")
# Each command's man page; where another package owns the bare name (ISC's dhcpd(8),
# bootp's bootpd(8)) the page is ptftpd-NAME: so it is built (tools/manpages.py),
# shipped in the package data and installed by pip and by this installer.
MAN_PAGES = {
    "ptftpd": "ptftpd",
    "dhcpd": "ptftpd-dhcpd",
    "bootpd": "ptftpd-bootpd",
    "pxed": "pxed",
    "ptftp": "ptftp",
    PROG: PROG,
}


def script_path(tool: str) -> Path:
    """This installation's `tool` script: beside the interpreter (a venv, /usr/local),
    else the one on PATH."""
    here = Path(sys.executable).parent / tool
    if here.is_file():
        return here.absolute()
    found = shutil.which(tool)
    if found is None:
        raise SystemExit(f"{PROG}: cannot find the {tool} script of this installation")
    return Path(found).absolute()


def unit_text(tool: str, text: str, user: str) -> str:
    """A shipped unit made to fit this installation (see the module's documentation)."""
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            rest = line[len("ExecStart=") :]
            _, _, args = rest.partition(" ")
            line = f"ExecStart={script_path(tool)} {args}"
        elif line.startswith("Documentation=man:"):
            line = f"Documentation=man:{MAN_PAGES[tool]}(8) man:{PROG}(8)"
        elif line == "DynamicUser=yes":
            while lines and lines[-1].startswith("#"):
                lines.pop()  # the shipped comment speaks of DynamicUser=: replaced
            lines += _user_comment(tool, user)
            lines += [f"User={user}", f"Group={user}", f"RuntimeDirectory={tool}-%i"]
            continue
        lines.append(line)
    if not any(line.startswith("StateDirectory=") for line in lines):
        at = lines.index(f"Group={user}") + 1
        lines.insert(at, f"StateDirectory={tool}/%i")
    return "\n".join(lines) + "\n"


def _user_comment(tool: str, user: str) -> list[str]:
    said = [
        f"# Least privilege: the system user {user} (created by {PROG}), allowed to bind",
        "# ports 67/69/4011 and to tie sockets to the interface; the server drops even",
        "# these once its sockets are bound.",
    ]
    if tool == "ptftpd":
        said += [
            f"# Uploads: ROOT must be writable by {user} (e.g. chown {user} ROOT);",
            "# a ROOT outside /srv/tftp also needs ReadWritePaths=ROOT (systemctl edit);",
            "# otherwise add --read-only to OPTIONS.",
        ]
    return said


def has_user(root: Path, user: str) -> bool:
    passwd = root / "etc" / "passwd"
    if not passwd.is_file():
        return False
    return any(line.split(":", 1)[0] == user for line in passwd.read_text().splitlines())


def create_user(root: Path, user: str) -> str:
    if has_user(root, user):
        return f"user {user} exists"
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    argv = [useradd, "--system", "--user-group", "--no-create-home"]
    argv += ["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin"]
    if root != Path("/"):
        argv += ["--prefix", str(root)]
    try:
        subprocess.run([*argv, user], check=True, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise SystemExit(f"{PROG}: cannot create user {user}: {detail.strip()}") from None
    return f"created system user {user}"


def install(root: Path, prefix: Path, user: str, make_user: bool) -> list[str]:
    """Write everything under `root`; the lines saying what was done."""
    done: list[str] = []
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True, exist_ok=True)
    for tool in TOOLS:
        shipped = (DATA / "systemd" / f"{tool}@.service").read_text()
        target = units / f"{tool}@.service"
        target.write_text(unit_text(tool, shipped, user))
        done.append(f"unit {target}")
    etc = root / "etc" / "ptftpd"
    etc.mkdir(parents=True, exist_ok=True)
    for example in sorted((DATA / "systemd").glob("*.env.example")):
        target = etc / example.name
        if not target.exists():
            shutil.copyfile(example, target)
            done.append(f"example {target}")
    man_root = root / prefix.relative_to("/") / "share" / "man"
    for page in sorted((DATA / "man").glob("man*/*")):
        folder = man_root / page.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / page.name  # already ptftpd-dhcpd.8 where a name collides
        shutil.copyfile(page, target)
        done.append(f"man page {target}")
    if make_user:
        done.append(create_user(root, user))
    return done


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Install ptftpd, dhcpd, bootpd and pxed as systemd services: units "
        "naming this installation's scripts, the system user, the env examples in "
        "/etc/ptftpd and the man pages. Starts nothing.",
        epilog="then: systemctl daemon-reload && systemctl enable --now ptftpd@eth0",
    )
    for flag, default, text in (
        ("--root", "/", "install into this tree instead of / (packages, tests)"),
        ("--prefix", "/usr/local", "man pages go to PREFIX/share/man (/usr/local)"),
    ):
        parser.add_argument(flag, type=Path, default=Path(default), metavar="DIR", help=text)
    parser.add_argument(
        "--user",
        default="ptftpd",
        metavar="USER",
        help="the system user the services run as (ptftpd)",
    )
    parser.add_argument(
        "--no-create-user",
        action="store_true",
        help="do not create USER (it must exist where the units run)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.prefix.is_absolute():
        build_parser().error("--prefix must be an absolute path")
    root: Path = args.root.absolute()
    try:
        done = install(root, args.prefix, args.user, not args.no_create_user)
    except OSError as exc:
        print(f"{PROG}: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return 1
    for line in done:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
