"""The settings model: per tool, one table of fields, from which everything else is made.

A `Field` is one setting: its TOML key (the long flag is ``--KEY``), a short alias, the
TOML type a file must give it, how its text is parsed and checked (range, units), its
default, its help, and its reload class (`live`: a SIGHUP applies it; else it is kept
until a restart and named in the ``reloaded:`` line). From a tool's table come:

- the argparse flags (`add_flags`; every default is None so that the flags given are
  known, and win over the file);
- the checks of the ``--config`` file (`from_file`: known key or "did you mean", the
  TOML type, then the same parser as the flag, an error naming FILE:LINE);
- the effective settings (`resolve`: flags over the tool's table in the file over the
  defaults), the ``--print-config`` text (`dump`, which writes no machine-derived
  default: a field whose default is None is printed only when set) and the reload
  diff (`kept`);
- the man page and ``--help`` (through the parser).

Adding a setting is one entry in one table, plus its use.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ptftpd import config
from ptftpd.config import ConfigError, FileSettings, shown

__all__ = [
    "Field",
    "IntDefault",
    "add_flags",
    "dump",
    "from_file",
    "given",
    "int_value",
    "kept",
    "number_value",
    "resolve",
    "text_value",
]

_TOML_TYPES: dict[str, tuple[config.Check, str]] = {
    "bool": (config.is_bool, "true or false"),
    "int": (config.is_int, "an integer"),
    "number": (config.is_number, "a number"),
    "text": (config.is_text, "a string"),
}


@dataclass(frozen=True)
class Field:
    """One setting of a tool's table (see the module's documentation).

    `parse` checks the text of a flag (or of the file's value) and returns the value
    (raising `argparse.ArgumentTypeError` with what is wrong); None is a switch
    (``--KEY``, and ``--no-KEY`` when `negatable`). `toml` is the TOML type a file
    gives it: "bool", "int", "number" or "text". `show` writes a value back in the
    file's form (``--print-config``). A `default` of None means "not set" (or derived
    from the machine, as ``workers``): never printed. A field not `in_file` is a flag
    only (ptftp's --host: a file must not take a one-shot command's HOST's place).

    Lists: a `repeat` flag adds an item each time it is given (dhcpd's -n, --host), an
    `nargs` flag takes that many (--range START END); the file gives a list, and for a
    `join` field the flags' items are added to the file's (static hosts), else they
    replace it. `flag_name` spells the
    flag when it is not the key (--host for `hosts`), "" for a key only a file holds
    (`[[subnet]]`); `check` is the TOML check of a value the tool's model reads itself
    (lists, tables), which `parse` then leaves as it is."""

    key: str
    help: str
    parse: Callable[[str], Any] | None = None
    toml: str = "text"
    default: Any = None
    short: str | None = None
    metavar: str | tuple[str, ...] | None = None
    show: Callable[[Any], object] | None = None
    live: bool = True
    negatable: bool = False
    group: str | None = None
    in_file: bool = True
    flag_name: str | None = None
    repeat: bool = False
    nargs: int | None = None
    check: tuple[config.Check, str] | None = None
    join: bool = False

    @property
    def dest(self) -> str:
        return self.key.replace("-", "_")

    @property
    def flag(self) -> str:
        return f"--{self.flag_name if self.flag_name is not None else self.key}"

    def expected(self) -> tuple[config.Check, str]:
        if self.check is not None:
            return self.check
        check, what = _TOML_TYPES["bool" if self.parse is None else self.toml]
        metavar = self.metavar if isinstance(self.metavar, str) else None
        return check, f"{what} {metavar}" if metavar and self.parse else what

    def value_of(self, toml_value: object) -> object:
        """A file's value (of the right TOML type) through the flag's own parser."""
        if self.check is not None or self.parse is None:
            return toml_value
        if self.toml == "text" and self.parse is str:
            return toml_value
        if config.is_int(toml_value) and abs(toml_value) > 2**64:  # type: ignore[arg-type]
            raise ValueError(f"out of range: {shown(toml_value)}")
        return self.parse(str(toml_value))

    def file_form(self, value: object) -> object:
        """`value` as the settings file writes it."""
        if self.show is not None:
            return self.show(value)
        return _file_form(value)


def _file_form(value: object) -> object:
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_file_form(item) for item in value]
    if isinstance(value, Mapping):
        return {str(k): _file_form(v) for k, v in value.items()}
    return str(value)


def add_flags(parser: argparse.ArgumentParser, table: Iterable[Field]) -> None:
    """One flag per field, in its help group; defaults stay None (see `resolve`)."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for field in table:
        if field.flag_name == "":
            continue  # a key only a file holds
        where: argparse.ArgumentParser | argparse._ArgumentGroup = parser
        if field.group:
            if field.group not in groups:
                groups[field.group] = parser.add_argument_group(field.group)
            where = groups[field.group]
        names = [n for n in (field.short, field.flag) if n]
        if field.parse is None:
            action: Any = argparse.BooleanOptionalAction if field.negatable else "store_true"
            where.add_argument(
                *names, dest=field.dest, action=action, default=None, help=field.help
            )
        else:
            where.add_argument(
                *names,
                dest=field.dest,
                type=field.parse,
                default=None,
                metavar=field.metavar,
                help=field.help,
                action="append" if field.repeat else "store",
                nargs=field.nargs,
            )


def given(table: Iterable[Field], args: argparse.Namespace) -> dict[str, object]:
    """The fields set on the command line (parsed values)."""
    out: dict[str, object] = {}
    for field in table:
        value = getattr(args, field.dest, None)
        if value is not None:
            out[field.key] = value
    return out


def from_file(table: Sequence[Field], toml: FileSettings) -> dict[str, object]:
    """The fields a settings file sets, checked and parsed: an unknown key (with a
    "did you mean"), a wrong TOML type or a value its parser refuses is a one-line
    ConfigError naming FILE:LINE and the key."""
    fields = {field.key: field for field in table if field.in_file}
    config.check_types(toml, toml.path, {key: f.expected() for key, f in fields.items()})
    out: dict[str, object] = {}
    for key, value in toml.items():
        try:
            out[key] = fields[key].value_of(value)
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise ConfigError(f"{toml.where(key)}: {key}: {exc}") from None
    return out


def resolve(
    table: Iterable[Field],
    file: Mapping[str, object],
    flags: Mapping[str, object],
    defaults: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """Every field's effective value: the flag given, else the file's, else the default
    (`defaults` first: those that depend on the command line, such as a lease file
    named after IFACE; None: not set). A `join` field's flags add to the file's list."""
    extra = defaults or {}
    values: dict[str, object] = {}
    for f in table:
        value = file.get(f.key, extra.get(f.key, f.default))
        given = flags.get(f.key)
        if given is not None:
            joined = f.join and isinstance(value, list) and isinstance(given, list)
            value = [*value, *given] if joined else given  # type: ignore[misc]
        values[f.key] = value
    return values


def namespace(
    table: Iterable[Field], values: Mapping[str, object], args: argparse.Namespace
) -> argparse.Namespace:
    """`args` (the positional arguments...) with every field's effective value."""
    out = argparse.Namespace(**vars(args))
    for field in table:
        setattr(out, field.dest, values.get(field.key))
    return out


def dump(table: Iterable[Field], values: Mapping[str, object]) -> str:
    """``--print-config``: every field that has a value, in the file's form, sorted."""
    shown_values = {
        f.key: f.file_form(values[f.key])
        for f in table
        if f.in_file and values.get(f.key) is not None
    }
    return config.dump(shown_values)


def kept(table: Iterable[Field], old: Mapping[str, object], new: Mapping[str, object]) -> list[str]:
    """The restart-only fields a reload from `old` to `new` would change (they keep
    their running values; the ``reloaded:`` line names them)."""
    return sorted(f.key for f in table if not f.live and old.get(f.key) != new.get(f.key))


def restart_only(table: Iterable[Field], values: Mapping[str, object]) -> dict[str, object]:
    return {f.key: values.get(f.key) for f in table if not f.live}


# -- reading the effective settings into a settings model ------------------------------
# The mapping's values were checked by their fields (flag or file) before; a TypeError
# here means a caller passed a mapping that did not come through them (a bug, not a
# user's mistake), so it names the key and the value without FILE:LINE.

IntDefault = TypeVar("IntDefault", int, None)


def int_value(
    settings: Mapping[str, object],
    key: str,
    default: IntDefault,
    *,
    least: int | None = None,
    what: str = "an integer",
) -> int | IntDefault:
    """The integer at `key` (at least `least`), `default` when unset."""
    value = settings.get(key)
    if value is None:
        return default
    low = least is not None and isinstance(value, int) and value < least
    if isinstance(value, bool) or not isinstance(value, int) or low:
        raise TypeError(f"{key}: expected {what}, got {value!r}")
    return value


def number_value(
    settings: Mapping[str, object], key: str, default: float, *, what: str = "a number"
) -> float:
    """The number at `key` as a float, `default` when unset."""
    value = settings.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{key}: expected {what}, got {value!r}")
    return float(value)


def text_value(settings: Mapping[str, object], key: str) -> str | None:
    """The text at `key`, None when unset."""
    value = settings.get(key)
    return None if value is None else str(value)
