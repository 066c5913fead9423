"""One configuration model for every tool: a TOML file whose keys are the long flags.

Settings come from three places, later ones winning: built-in defaults, the TOML file
given with ``--config`` and the command-line flags. A file is either one tool's (its keys
at the top level) or shared by the whole suite, like Kea's one kea.conf with its Dhcp4
and Dhcp6 sections: a ``[ptftpd]``, ``[ptftp]``, ``[dhcpd]``, ``[bootpd]`` or ``[pxed]``
table at the top level makes it shared, and each tool then reads only its own table
(the same keys its own file takes). A TOML value is typed, so a value of
the wrong type is a one-line error naming the key, the value and what is expected, and
an unknown key is a one-line error listing the valid ones. ``--print-config`` writes the
effective settings back as ``key = value`` lines that ``--config`` reads again.

For a tool whose keys are exactly its flags (ptftpd) the keys, their types and their
checks come from the argparse parser itself, so a new flag is a new key for free.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import tomllib
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

Check = Callable[[object], bool]

# Flags that choose how to run, not what to serve: never keys of the file.
NOT_KEYS = frozenset({"help", "version", "config", "print-config", "init-db"})

# The suite's tools: a top-level table named after one of them makes a file shared.
TOOLS = ("ptftpd", "ptftp", "dhcpd", "bootpd", "pxed")


class ConfigError(Exception):
    """Bad setting in a config file or flag: one line, exit 2."""


def is_text(v: object) -> bool:
    return isinstance(v, str)


def is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_bool(v: object) -> bool:
    return isinstance(v, bool)


def is_table(v: object) -> bool:
    return isinstance(v, Mapping)


def list_of(check: Check) -> Check:
    return lambda v: isinstance(v, list) and all(check(item) for item in v)


def shown(value: object) -> str:
    """A value as the error shows it: short enough for one line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class FileSettings(dict[str, Any]):
    """One tool's keys read from a settings file (``_`` spelled ``-``) and where they
    are, so that an error can name FILE:LINE: `table` is the tool's ``[TOOL]`` table in a
    shared file, None when the keys are the file's top level."""

    def __init__(
        self, items: Mapping[str, Any], path: Path | None = None, table: str | None = None
    ) -> None:
        super().__init__((k.replace("_", "-"), v) for k, v in items.items())
        self.path = path
        self.table = table


def load_toml(path: Path | None, tool: str) -> FileSettings:
    """`tool`'s settings in the file at `path` ({} without a file): the top-level keys of
    a tool's own file, or the ``[tool]`` table of a shared file (a file without that
    table sets nothing for `tool`). A shared file holds only ``[TOOL]`` tables: any
    other top-level key is a one-line error with its line."""
    if tool not in TOOLS:
        raise ValueError(f"not a tool of the suite: {tool!r}")
    if path is None:
        return FileSettings({})
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"bad TOML in {path}: {exc}") from None
    if not any(k in TOOLS and is_table(v) for k, v in data.items()):
        return FileSettings(data, path)
    tables = ", ".join(f"[{t}]" for t in TOOLS)
    for key, value in data.items():
        line = key_line(path, key.replace("_", "-"))
        if key not in TOOLS:
            raise ConfigError(
                f"{path}{line}: {key} is outside the tools' tables: in a file with "
                f"[TOOL] tables every setting goes inside one ({tables})"
            )
        if not is_table(value):
            raise ConfigError(f"{path}{line}: {key} = {shown(value)}: expected a [{key}] table")
    return FileSettings(data.get(tool, {}), path, tool)


def check_types(
    toml: Mapping[str, object],
    source: object,
    key_types: Mapping[str, tuple[Check, str]],
    error: type[Exception] = ConfigError,
) -> None:
    """Raise `error` (one line) for an unknown key, listing the valid ones, or for the
    first key whose value has the wrong type, naming what is expected."""
    unknown = sorted(set(toml) - set(key_types))
    if unknown:
        raise error(
            f"{where(source, toml, unknown[0])}: unknown key(s) {', '.join(unknown)}; "
            f"valid keys: {', '.join(sorted(key_types))}"
        )
    for key, value in toml.items():
        check, expected = key_types[key]
        if not check(value):
            raise error(f"{where(source, toml, key)}: {key} = {shown(value)}: expected {expected}")


def where(source: object, toml: Mapping[str, object], key: str) -> str:
    """``FILE:LINE`` of `key` of the settings `toml` read from `source` (``FILE`` alone
    when the line is not found)."""
    return f"{source}{key_line(source, key, getattr(toml, 'table', None))}"


# A table header, [a.b] or [[a.b]], and the key of a ``key = value`` line.
_HEADER = re.compile(r"\s*\[\[?\s*([^\[\]#=,]+?)\s*\]\]?\s*(#.*)?")


def _dotted(text: str) -> list[str]:
    return [part.strip().strip("\"'").replace("_", "-") for part in text.split(".")]


def key_line(source: object, key: str, table: str | None = None) -> str:
    """``:LINE`` of the `key` of the top level (or of the top-level `table`) in the file
    `source`, '' when not found: tomllib reports no positions for keys it parsed fine.
    The key is a ``key = value`` line of that table (also a dotted ``key.sub = value``)
    or a ``[key]`` table header in it."""
    if not isinstance(source, (str, Path)):
        return ""
    try:
        lines = Path(source).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    inside = [] if table is None else [table]
    depth = len(inside)
    here: list[str] = []  # the table the lines that follow belong to
    for number, line in enumerate(lines, 1):
        header = _HEADER.fullmatch(line)
        if header:
            here = _dotted(header.group(1))
            full = here
        elif "=" in line:
            full = here + _dotted(line.split("=", 1)[0])  # dotted keys: a.b = 1
        else:
            continue
        if full[:depth] == inside and full[depth : depth + 1] == [key]:
            return f":{number}"
    return ""


# -- writing settings back (--print-config) ------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    # JSON string escapes are TOML basic-string escapes; TOML also forbids a raw DEL.
    return json.dumps(text).replace("\x7f", "\\u007f")


def toml_value(value: object) -> str:
    """`value` as TOML (inline tables and arrays): what `tomllib` reads back equal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return ("-" if value < 0 else "") + ("nan" if math.isnan(value) else "inf")
        return repr(value)
    if isinstance(value, (str, Path)):
        return _string(str(value))
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def dump(settings: Mapping[str, object]) -> str:
    """``key = value`` lines, sorted by key, for ``--print-config``."""
    return "".join(f"{_key(k)} = {toml_value(v)}\n" for k, v in sorted(settings.items()))


# -- keys taken from an argparse parser -------------------------------------------------


def address_text(value: tuple[str, int]) -> str:
    """``ADDR:PORT`` (``[v6]:PORT``) for a parsed address flag such as ``--metrics``."""
    host, port = value
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def flag_keys(
    parser: argparse.ArgumentParser, skip: Collection[str] = ()
) -> dict[str, argparse.Action]:
    """Each long flag's name (without ``--``) and its action: the file's keys (but the
    tool's own `skip` ones)."""
    keys: dict[str, argparse.Action] = {}
    for action in parser._actions:
        longs = [o[2:] for o in action.option_strings if o.startswith("--")]
        if longs and longs[0] not in NOT_KEYS and longs[0] not in skip:
            keys[longs[0]] = action
    return keys


class FlagKinds:
    """What TOML type each flag's value takes: a flag without a value is a boolean;
    `ints` and `numbers` are the flag types whose text is an integer or a number;
    every other flag takes a string (parsed by the flag's own type)."""

    def __init__(
        self,
        ints: Collection[object],
        numbers: Collection[object],
        render: Mapping[object, Callable[[Any], str]],
    ) -> None:
        self.ints = ints
        self.numbers = numbers
        self.render = render

    def expected(self, action: argparse.Action) -> tuple[Check, str]:
        if action.nargs == 0:
            return is_bool, "true or false"
        if action.type in self.ints:
            return is_int, f"an integer {action.metavar or ''}".rstrip()
        if action.type in self.numbers:
            return is_number, f"a number {action.metavar or ''}".rstrip()
        return is_text, f"a string {action.metavar or ''}".rstrip()

    def to_toml(self, action: argparse.Action, value: object) -> object:
        render = self.render.get(action.type)
        if render is not None:
            return render(value)
        return value if isinstance(value, (bool, int, float)) else str(value)


def apply_file(
    parser: argparse.ArgumentParser,
    toml: Mapping[str, object],
    source: object,
    kinds: FlagKinds,
    skip: Collection[str] = (),
) -> None:
    """Make the file's values the parser's defaults, so that flags still win; each value
    is type-checked, then parsed by its flag's own type (ranges, units). `skip`: flags
    that are not keys of this tool's file."""
    keys = flag_keys(parser, skip)
    check_types(toml, source, {k: kinds.expected(a) for k, a in keys.items()})
    defaults: dict[str, object] = {}
    for key, value in toml.items():
        action = keys[key]
        if action.nargs != 0 and action.type is not None:
            try:
                value = action.type(str(value))  # type: ignore[operator]
            except (argparse.ArgumentTypeError, ValueError) as exc:
                place = where(source, toml, key)
                raise ConfigError(f"{place}: {key} = {shown(value)}: {exc}") from None
        defaults[action.dest] = value
    parser.set_defaults(**defaults)


def config_path(argv: list[str] | None) -> Path | None:
    """``--config FILE`` from the command line, before the full parse needs its defaults."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path)
    known, _ = pre.parse_known_args(argv)
    path: Path | None = known.config
    return path


def effective(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    kinds: FlagKinds,
    skip: Collection[str] = (),
) -> dict[str, object]:
    """Every setting that has a value, in the file's form (a tool's own file, or the
    body of its ``[TOOL]`` table)."""
    settings: dict[str, object] = {}
    for key, action in flag_keys(parser, skip).items():
        value = getattr(args, action.dest, None)
        if value is not None:
            settings[key] = kinds.to_toml(action, value)
    return settings
