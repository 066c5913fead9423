"""Issue 17's size measures, checked on the source: how many settings-like classes there
are (by name, an AST walk of every module under src/ptftpd), that one module reads TOML,
and that no source file is over 600 lines.

The duplicate-code measure (pairs of places sharing 6+ similar lines) comes from the
`duplicates` tool, which is not a Debian package and must not be copied into the repo:
its figure and command are recorded in the issue status file instead.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import ptftpd

SRC = Path(ptftpd.__file__).parent
MAX_LINES = 600
# Classes whose name says "a bag of settings": issue 17 asks for at most 10.
SETTINGS_NAME = re.compile(r"(Config|Settings|Limits|Options|Args|Kinds|Schema)$")
TARGET = 10
# It went down from 19 on main @ bd0e329, then api/ added ApiConfig and
# ApiLimits (the latter merged into http's Limits); tftp's ServerLimits merged into
# ServerConfig; dhcp's PoolConfig merged into SubnetConfig (18); dhcp6's RaConfig and
# Limits merged into Dhcp6Config (16); http's Limits and the operator API's ApiConfig
# merged into HttpConfig, one settings object per HTTP listener (14); ptftpd's
# TftpSettings merged into the TFTP server's ServerConfig (13); PgSettings, a bag of
# the database link's tuning that no user setting feeds, became PgLink's keyword
# arguments (as psycopg_pool's own pool takes them), and dhcp6/codec.py's _Options, a
# mixin that finds options in a message (no settings), was named for what it does,
# _OptionLookup (11); tftp's OptionArgs, a TypedDict that declared TransferOptions'
# seven fields a second time as download()'s keywords, went with those keywords: the
# library takes the one TransferOptions object, as ptftp always did (10).
# What the 10 are. One model per tool family or layer: ServerConfig (TFTP server),
# TransferOptions (a TFTP client transfer), ptftp's Settings (its session: server,
# TransferOptions, verbosity), DhcpConfig and SubnetConfig (a DHCP server and each of
# its subnets), Dhcp6Config, HttpConfig (an HTTP listener), PxeConfig (pxed, made of
# the others), ServiceSettings (the service flags every server shares). Matched by
# name but no settings model: config.py's FileSettings (the TOML loader's values
# with their FILE:LINE).


def modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def settings_classes() -> list[str]:
    found = []
    for path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and SETTINGS_NAME.search(node.name):
                found.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}")
    return found


def test_no_source_file_is_over_600_lines() -> None:
    long = {}
    for path in modules():
        count = len(path.read_text(encoding="utf-8").splitlines())
        if count > MAX_LINES:
            long[str(path.relative_to(SRC))] = count
    assert not long, f"over {MAX_LINES} lines: {long}"


def test_settings_classes_meet_the_target() -> None:
    found = settings_classes()
    assert len(found) <= TARGET, "\n".join(found)


def test_one_toml_loader() -> None:
    readers = []
    for path in modules():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0] in ("tomllib", "tomli", "toml") for n in names):
                readers.append(str(path.relative_to(SRC)))
    assert readers == ["config.py"], readers
