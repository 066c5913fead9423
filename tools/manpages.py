"""Generate the six tools' man pages from their argparse parsers (argparse-manpage).

Pages are named as they are installed (``ptftpd.install.MAN_PAGES``): dhcpd's and
bootpd's are ptftpd-dhcpd.8 and ptftpd-bootpd.8, since ISC's dhcpd and bootp's bootpd
own the bare names; the commands keep theirs.

    python tools/manpages.py          # rewrite src/ptftpd/data/man/man{1,8}/*
    python tools/manpages.py --check  # exit 1 if a committed page differs from its parser

The pages are committed (and installed with the package data) so that a plain
``pip install`` ships them; tests/service/test_manpages.py runs --check, so a changed option
that nobody regenerated fails the tests. Run this after changing any parser in cli/.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from argparse_manpage.manpage import Manpage

from ptftpd.fields import Field
from ptftpd.install import MAN_PAGES, PROG

MAN_DIR = Path(__file__).resolve().parents[1] / "src" / "ptftpd" / "data" / "man"
SECTIONS = {"ptftpd": 8, "dhcpd": 8, "bootpd": 8, "pxed": 8, "ptftp": 1, PROG: 8}
SERVERS = ("ptftpd", "dhcpd", "bootpd", "pxed")  # they share tools/man/servers.roff
DATE = "2026"  # fixed, so regenerating an unchanged parser gives the same bytes


HAND = Path(__file__).resolve().parent / "man"  # hand-written sections, roff


def _roff(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in ".'" else text


def config_section(tool: str, fields: tuple[Field, ...]) -> str:
    """SETTINGS FILE KEYS: every key the tool's table lets a file hold, from the table."""
    out = [
        ".SH SETTINGS FILE KEYS",
        f"\\fB\\-\\-config\\fR FILE is TOML: at its top level, or in its [{tool}] table "
        "when one file holds a table per tool. Each key is a long flag without its dashes; "
        "flags win over the file; SIGHUP re-reads it. Keys:",
    ]
    for field in fields:
        if not field.in_file:
            continue
        what = field.toml if field.parse is not None else "bool"
        help_text = _roff(" ".join(field.help.split()))
        out += [".TP", f"\\fB{_roff(field.key)}\\fR ({what})", help_text]
    return "\n".join(out) + "\n"


def hand_sections(tool: str, fields: tuple[Field, ...]) -> str:
    """The sections a parser cannot say: the configuration file (from the table), then
    tools/man/TOOL.roff and tools/man/servers.roff (signals, files, exit status...)."""
    text = config_section(tool, fields) if fields else ""
    for name in (f"{tool}.roff", "servers.roff" if tool in SERVERS else ""):
        if name and (HAND / name).is_file():
            text += (HAND / name).read_text().replace("@TOOL@", tool)
    return text


def render(tool: str) -> str:
    module = importlib.import_module("ptftpd.install" if tool == PROG else f"ptftpd.cli.{tool}")
    parser: argparse.ArgumentParser = module.build_parser()
    parser.prog = tool
    section = SECTIONS[tool]
    data = {
        "project_name": "pTFTPd",
        "manual_section": section,
        "manual_title": "System Manager's Manual" if section == 8 else "User Commands",
        "date": DATE,
        "description": " ".join((parser.description or tool).split(". ")[0].split()).rstrip("."),
    }
    page = str(Manpage(parser, _data=data, format="pretty"))
    return page + hand_sections(tool, tuple(getattr(module, "FIELDS", ())))


def path_for(tool: str) -> Path:
    section = SECTIONS[tool]
    return MAN_DIR / f"man{section}" / f"{MAN_PAGES[tool]}.{section}"


def main() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    for tool in SECTIONS:
        text = render(tool)
        path = path_for(tool)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if stale:
        print(f"stale man pages (run python tools/manpages.py): {' '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
