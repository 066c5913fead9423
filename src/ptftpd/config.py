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

Which keys a tool takes, their types and checks are the tool's table of fields
(`ptftpd.fields`); this module reads files, finds each key's line and writes TOML.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import tomllib
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

Check = Callable[[object], bool]

# The suite's tools: a top-level table named after one of them makes a file shared.
TOOLS = ("ptftpd", "ptftp", "dhcpd", "bootpd", "pxed")


Where = tuple[str | int, ...]
"""A key's place in a file: ("subnet", 1, "options", "ntp-servers") is the ntp-servers
option of the second [[subnet]] table."""


class ConfigError(Exception):
    """A bad setting in a settings file or a flag: one line, exit 2.

    `at` names the setting the message is about (its place in the file, as `Where`),
    when the code that found the problem knows only the value: `located()` then says
    where the value came from (``FILE:LINE: key: what`` or ``--flag: what``)."""

    def __init__(self, message: str, at: Where = ()) -> None:
        super().__init__(message)
        self.message = message
        self.at = at

    def __str__(self) -> str:
        return f"{key_name(self.at)}: {self.message}" if self.at else self.message

    def located(self, file: FileSettings | None, flags: Mapping[str, str]) -> str:
        """The message with its origin: the flag that gave the value (`flags` maps a
        key given on the command line to its flag), else the file's line."""
        if not self.at:
            return self.message
        top = str(self.at[0])
        if top in flags:
            return f"{flags[top]}: {self.message}"
        if file is not None and file.path is not None:
            return f"{file.where(*self.at)}: {self}"
        return str(self)


def key_name(at: Where) -> str:
    """("subnet", 1, "range") -> "subnet.range" (the line says which subnet)."""
    return ".".join(str(part) for part in at if isinstance(part, str))


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
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**64:
        return f"an integer of {value.bit_length()} bits"
    try:
        text = repr(value)
    except (RecursionError, ValueError):
        text = "[...]"
    return text if len(text) <= 60 else text[:57] + "..."


MAX_FILE = 4 * 1024 * 1024  # a settings file is a few KiB; more is a mistake
MAX_DEPTH = 16  # no setting nests deeper (a [[subnet]]'s hosts' tables: 4)


class FileSettings(dict[str, Any]):
    """One tool's keys read from a settings file (``_`` spelled ``-``) and where they
    are, so that an error can name FILE:LINE: `table` is the tool's ``[TOOL]`` table in a
    shared file, None when the keys are the file's top level; `lines` maps each key's
    place in the file (`Where`, from the file's top) to its line."""

    def __init__(
        self,
        items: Mapping[str, Any],
        path: Path | None = None,
        table: str | None = None,
        lines: Mapping[Where, int] | None = None,
    ) -> None:
        super().__init__(items)
        self.path = path
        self.table = table
        self.lines: Mapping[Where, int] = lines or {}

    def where(self, *place: str | int) -> str:
        """``FILE:LINE`` of the key at `place` (inside the tool's table), or of the
        nearest enclosing key or table the file names; ``FILE`` alone if none."""
        full: Where = ((self.table,) if self.table else ()) + place
        for end in range(len(full), 0, -1):
            line = self.lines.get(full[:end])
            if line is not None:
                return f"{self.path}:{line}"
        return str(self.path)


def read_file(path: Path) -> tuple[dict[str, Any], dict[Where, int]]:
    """The TOML file at `path` and the line of each key; anything wrong with it (not
    readable, not UTF-8, bad TOML, an integer of thousands of digits, nesting deeper
    than any setting, one key spelled twice) is a one-line `ConfigError`."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror}") from None
    if len(raw) > MAX_FILE:
        raise ConfigError(f"{path}: larger than {MAX_FILE >> 20} MiB: not a settings file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte {raw[exc.start]:#04x})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}:{_decode_error(exc, text)}") from None
    except RecursionError:
        place = f"{path}:{_deepest_line(text)}"
        raise ConfigError(f"{place}: bad TOML: nested deeper than any setting") from None
    except ValueError:  # an integer past Python's digit limit (4300)
        big = re.search(r"\d{4000}", text)
        if big is None:
            raise ConfigError(f"{path}: bad TOML: an integer of too many digits") from None
        start = text.rfind("\n", 0, big.start()) + 1
        number = text.count("\n", 0, start) + 1
        key = ".".join(_parse_key(text[start : big.start()], 0)[0]) or "value"
        message = f"{path}:{number}: {key}: an integer of thousands of digits"
        raise ConfigError(message) from None
    lines = locate(text)
    return _normalized(data, (), lines, path), lines


def _deepest_line(text: str) -> int:
    """The first line where brackets nest deeper than `MAX_DEPTH`."""
    value = _Value()
    for number, line in enumerate(text.splitlines(), 1):
        value.feed(line, 0 if value.open else line.find("=") + 1)
        if value.depth > MAX_DEPTH:
            return number
    return 1


def _decode_error(exc: tomllib.TOMLDecodeError, text: str) -> str:
    """``LINE: key: bad TOML: what`` from tomllib's "what (at line L, column C)"."""
    message = str(exc)
    found = re.search(r"\(at line (\d+), column \d+\)$", message)
    if not found:
        return f" bad TOML: {message}"
    number = int(found.group(1))
    lines = text.splitlines()
    key = _parse_key(lines[number - 1], 0)[0] if number <= len(lines) else []
    name = f" {'.'.join(key)}:" if key else ""
    return f"{number}:{name} bad TOML: {message[: found.start()].strip()}"


def _normalized(value: Any, place: Where, lines: Mapping[Where, int], path: Path) -> Any:
    """`value` with every table key spelled with ``-`` (``map_file`` is ``map-file``);
    two spellings of one key, or nesting deeper than `MAX_DEPTH`, are errors."""
    if len(place) > MAX_DEPTH:
        raise ConfigError(f"{_at(path, lines, place)}: nested deeper than any setting")
    if isinstance(value, list):
        return [_normalized(v, (*place, i), lines, path) for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, item in value.items():
        name = key.replace("_", "-")
        if name in spelled:
            raise ConfigError(
                f"{_at(path, lines, (*place, name))}: {spelled[name]} and {key} are one key "
                "(- and _ are the same): keep one"
            )
        spelled[name] = key
        out[name] = _normalized(item, (*place, name), lines, path)
    return out


def _at(path: Path, lines: Mapping[Where, int], place: Where) -> str:
    return FileSettings({}, path, None, lines).where(*place)


# -- where each key is: tomllib reports no positions for what it parsed fine ----------

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_TRIPLE = ('"""', "'''")


def _skip_string(text: str, i: int) -> int:
    """The index after the one-line string that starts at `i`."""
    quote = text[i]
    j = i + 1
    while j < len(text) and text[j] != quote:
        j += 2 if quote == '"' and text[j] == "\\" else 1
    return j + 1


def _parse_key(text: str, at: int) -> tuple[list[str], int]:
    """The dotted key starting at `at` (bare or quoted parts) and where it ends."""
    parts: list[str] = []
    i = at
    while True:
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] in "\"'":
            end = _skip_string(text, i)
            parts.append(text[i + 1 : end - 1].replace("_", "-"))
            i = end
        else:
            bare = _BARE.match(text, i)
            if not bare:
                return parts, i
            parts.append(bare.group().replace("_", "-"))
            i = bare.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == ".":
            i += 1
            continue
        return parts, i


class _Value:
    """Follows a value across lines: open brackets and multi-line strings."""

    def __init__(self) -> None:
        self.depth = 0
        self.string: str | None = None  # the open multi-line string's delimiter

    @property
    def open(self) -> bool:
        return self.depth > 0 or self.string is not None

    def feed(self, text: str, i: int = 0) -> None:
        while i < len(text):
            if self.string is not None:
                end = text.find(self.string, i)
                if end < 0:
                    return
                i, self.string = end + 3, None
            elif text.startswith(_TRIPLE, i):
                self.string, i = text[i : i + 3], i + 3
            elif text[i] in "\"'":
                i = _skip_string(text, i)
            elif text[i] == "#":
                return
            else:
                if text[i] in "[{":
                    self.depth += 1
                elif text[i] in "]}":
                    self.depth = max(0, self.depth - 1)
                i += 1


def locate(text: str) -> dict[Where, int]:
    """The line of every key and table header of a TOML document, by its place: array
    tables get their index (``[[subnet]]`` twice: ("subnet", 0) and ("subnet", 1)), and a
    sub-table of one (``[subnet.options]``) belongs to the latest. Keys inside an inline
    table or array are found through the key that holds them."""
    found: dict[Where, int] = {}
    arrays: dict[tuple[str, ...], int] = {}
    table: Where = ()
    value = _Value()
    for number, line in enumerate(text.splitlines(), 1):
        if value.open:
            value.feed(line)
            continue
        stripped = line.lstrip()
        if stripped.startswith("["):
            double = stripped.startswith("[[")
            names, _ = _parse_key(stripped, 2 if double else 1)
            place: list[str | int] = []
            for k, name in enumerate(names):
                place.append(name)
                prefix = tuple(names[: k + 1])
                if prefix in arrays and not (double and k == len(names) - 1):
                    place.append(arrays[prefix])
            if double:
                key = tuple(names)
                arrays[key] = arrays.get(key, -1) + 1
                found.setdefault(tuple(place), number)
                place.append(arrays[key])
                for deeper in [a for a in arrays if a[: len(key)] == key and a != key]:
                    del arrays[deeper]  # a new element starts its own sub-arrays
            table = tuple(place)
            found.setdefault(table, number)
            continue
        names, end = _parse_key(line, 0)
        if not names or line[end : end + 1] != "=":
            continue
        for k in range(1, len(names) + 1):
            found.setdefault((*table, *names[:k]), number)
        value.feed(line, end + 1)
    return found


def load_toml(path: Path | None, tool: str) -> FileSettings:
    """`tool`'s settings in the file at `path` ({} without a file): the top-level keys of
    a tool's own file, or the ``[tool]`` table of a shared file (a file without that
    table sets nothing for `tool`). A shared file holds only ``[TOOL]`` tables: any
    other top-level key is a one-line error with its line."""
    if tool not in TOOLS:
        raise ValueError(f"not a tool of the suite: {tool!r}")
    if path is None:
        return FileSettings({})
    data, lines = read_file(path)
    if not any(k in TOOLS and is_table(v) for k, v in data.items()):
        return FileSettings(data, path, None, lines)
    tables = ", ".join(f"[{t}]" for t in TOOLS)
    for key, value in data.items():
        place = _at(path, lines, (key,))
        if key not in TOOLS:
            raise ConfigError(
                f"{place}: {key}: outside the tools' tables: in a file with [TOOL] tables "
                f"every setting goes inside one ({tables})"
            )
        if not is_table(value):
            raise ConfigError(f"{place}: {key}: expected a [{key}] table, got {shown(value)}")
    return FileSettings(data.get(tool, {}), path, tool, lines)


# dnsmasq's spelling of a setting -> ours: what its users will type first.
DNSMASQ_KEYS = {
    "dhcp-range": "range",
    "dhcp-host": "hosts",
    "dhcp-option": "[options]",
    "dhcp-boot": "BOOTFILE or [[subnet]] bootfile",
    "dhcp-authoritative": "authoritative",
    "dhcp-leasefile": "leases",
    "dhcp-lease-time": "lease-time",
    "tftp-root": "ROOT",
    "interface": "IFACE",
    "log-dhcp": "verbose",
    "domain-name": "domain",
    "router": "gateway",
    "dns-server": "dns",
}


def suggestion(word: str, known: Collection[str], aliases: Mapping[str, str] | None = None) -> str:
    """`` (did you mean X?)`` for a near miss of one of `known` (or a name another
    program uses for it, `aliases`), else ''."""
    if aliases and word in aliases:
        return f" (did you mean {aliases[word]}?)"
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.7)
    return f" (did you mean {close[0]}?)" if close else ""


def unknown_key(toml: FileSettings, key: str, known: Collection[str], *inside: str | int) -> str:
    """The one-line error for `key` (at `inside` in `toml`), which is none of `known`."""
    hint = suggestion(key, known, DNSMASQ_KEYS)
    place = toml.where(*inside, key)
    if hint:
        return f"{place}: {key}: unknown key{hint}"
    return f"{place}: {key}: unknown key; valid keys: {', '.join(sorted(known))}"


def as_file_settings(toml: Mapping[str, object], source: object) -> FileSettings:
    if isinstance(toml, FileSettings):
        return toml
    return FileSettings(toml, source if isinstance(source, Path) else None)


def check_types(
    toml: Mapping[str, object],
    source: object,
    key_types: Mapping[str, tuple[Check, str]],
    error: type[Exception] = ConfigError,
) -> None:
    """Raise `error` (one line) for an unknown key (with a "did you mean" for a near
    miss, else the valid ones), or for the first key whose value has the wrong type,
    naming what is expected."""
    settings = as_file_settings(toml, source)
    for key in toml:
        if key not in key_types:
            raise error(unknown_key(settings, key, key_types))
    for key, value in toml.items():
        check, expected = key_types[key]
        if not check(value):
            raise error(f"{settings.where(key)}: {key}: expected {expected}, got {shown(value)}")


def where(source: object, toml: Mapping[str, object], key: str) -> str:
    """``FILE:LINE`` of `key` of the settings `toml` read from `source`."""
    return as_file_settings(toml, source).where(key)


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
