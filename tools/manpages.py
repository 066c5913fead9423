"""Generate the five tools' man pages from their argparse parsers (argparse-manpage).

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

MAN_DIR = Path(__file__).resolve().parents[1] / "src" / "ptftpd" / "data" / "man"
SECTIONS = {"ptftpd": 8, "dhcpd": 8, "bootpd": 8, "pxed": 8, "ptftp": 1}
DATE = "2026"  # fixed, so regenerating an unchanged parser gives the same bytes


def render(tool: str) -> str:
    module = importlib.import_module(f"ptftpd.cli.{tool}")
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
    return str(Manpage(parser, _data=data, format="pretty"))


def path_for(tool: str) -> Path:
    section = SECTIONS[tool]
    return MAN_DIR / f"man{section}" / f"{tool}.{section}"


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
