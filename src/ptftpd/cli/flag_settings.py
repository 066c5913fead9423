"""A server's settings as ONE mapping in TOML form: defaults, then the file, then flags.

dhcpd, bootpd and pxed take a ``--config`` TOML file whose keys are their long flags
(dnsmasq's convention), plus a few keys only a file can hold (``[[subnet]]`` tables,
``exclude``, ``[options]``); in a file shared by the suite they are the keys of the
tool's own ``[dhcpd]``, ``[bootpd]`` or ``[pxed]`` table (`ptftpd.config.load_toml`).
Everything about the file is derived from the argparse parser, so a new flag is a new
key, type-checked, for free:

- :class:`Schema` lists the keys and the TOML type each takes;
- :func:`parse_flags` parses the command line with every default set aside, so that
  only the flags actually given count (flags win over the file, but only when given);
- :func:`merged` loads and checks the file and lays defaults, file and flags over each
  other into the one mapping that the settings models turn into their configs and that
  ``--print-config`` prints (so that it reads back to the same settings).

The checks: an unknown key is one line with FILE:LINE and the valid keys; a value of the
wrong TOML type names the key, the value and the type expected; a value of the right
type goes through its flag's own parser (ranges, units) exactly as the flag would.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from ptftpd import config
from ptftpd.config import Check, ConfigError, FlagKinds

__all__ = [
    "CommandLine",
    "Schema",
    "as_namespace",
    "merged",
    "parse_flags",
    "read_command_line",
    "schema",
]


@dataclass(frozen=True)
class Schema:
    """A tool's file keys: `actions` maps each flag key to its argparse action, `types`
    every key (flags and file-only ones) to its check; `modelled` keys are checked by
    the settings model (their flag type is not the whole story: lists, tables);
    `joined` list keys add the flags' items to the file's (static hosts)."""

    actions: dict[str, argparse.Action]
    types: dict[str, tuple[Check, str]]
    defaults: dict[str, object]
    kinds: FlagKinds
    modelled: frozenset[str]
    joined: frozenset[str]


def schema(
    parser: argparse.ArgumentParser,
    kinds: FlagKinds,
    modelled: Mapping[str, tuple[Check, str]],
    *,
    renamed: Mapping[str, str] | None = None,
    file_only: Collection[str] = (),
    joined: Collection[str] = (),
) -> Schema:
    """The keys of `parser`'s tool: its long flags (``renamed`` where the file's name
    differs, e.g. ``--host`` -> ``hosts``), typed by `modelled` when listed there, else
    by the flag's kind; then the `file_only` keys of `modelled`."""
    renamed = renamed or {}
    actions = {renamed.get(k, k): a for k, a in config.flag_keys(parser).items()}
    types = {k: modelled[k] if k in modelled else kinds.expected(a) for k, a in actions.items()}
    types.update({k: modelled[k] for k in file_only})
    defaults = {
        k: to_toml(kinds, a, a.default)
        for k, a in actions.items()
        if a.default is not None and k not in modelled
    }
    return Schema(
        actions, types, defaults, kinds, frozenset(modelled) & set(types), frozenset(joined)
    )


def to_toml(kinds: FlagKinds, action: argparse.Action, value: object) -> object:
    """A parsed flag value in its file form (addresses and paths as strings)."""
    if action.type in kinds.render:
        return kinds.to_toml(action, value)
    if isinstance(value, (list, tuple)):
        return [kinds.to_toml(action, v) for v in value]
    return kinds.to_toml(action, value)


def parse_flags(
    parser: argparse.ArgumentParser, keys: Schema, argv: list[str] | None
) -> argparse.Namespace:
    """The command line with None for every key's flag that was not given."""
    parser.set_defaults(**{a.dest: None for a in keys.actions.values()})
    return parser.parse_args(argv)


def given(keys: Schema, args: argparse.Namespace) -> dict[str, object]:
    """The flags on the command line, in the file's form."""
    flags: dict[str, object] = {}
    for key, action in keys.actions.items():
        value = getattr(args, action.dest, None)
        if value is not None:
            flags[key] = to_toml(keys.kinds, action, value)
    return flags


def from_file(keys: Schema, path: Path | None, tool: str) -> config.FileSettings:
    """`tool`'s settings in the file (its own file, or its table of a shared one),
    checked: known keys, right types, and each flag-typed value through its flag's
    parser (ranges, units), kept in the form `--print-config` shows."""
    toml = config.load_toml(path, tool)
    config.check_types(toml, path, keys.types)
    for key, value in toml.items():
        action = keys.actions.get(key)
        if action is not None and key not in keys.modelled:
            toml[key] = _through_flag(keys, action, key, value, toml)
    return toml


def _through_flag(
    keys: Schema, action: argparse.Action, key: str, value: object, toml: config.FileSettings
) -> object:
    if action.nargs == 0 or action.type is None:
        return value
    return to_toml(keys.kinds, action, config.through_flag(action, key, value, toml))


class Effective(dict[str, object]):
    """The effective settings and where each came from: `file` (with its lines) and
    the `flags` given (key -> the flag's spelling), so that an error the settings model
    finds in a value names its FILE:LINE or its flag (`explain`)."""

    def __init__(
        self, items: Mapping[str, object], file: config.FileSettings, flags: Mapping[str, str]
    ) -> None:
        super().__init__(items)
        self.file = file
        self.flags = dict(flags)

    def explain(self, exc: ConfigError) -> str:
        return exc.located(self.file, self.flags)


def located(exc: ConfigError, settings: Mapping[str, object]) -> ConfigError:
    """`exc` with where its value was set, when `settings` know (`Effective`)."""
    if isinstance(settings, Effective) and exc.at:
        return ConfigError(settings.explain(exc))
    return exc


def flag_spelling(action: argparse.Action) -> str:
    longs = [o for o in action.option_strings if o.startswith("--")]
    return longs[0] if longs else action.option_strings[0]


def merged(
    keys: Schema,
    path: Path | None,
    tool: str,
    flags: Mapping[str, object],
    defaults: Mapping[str, object] | None = None,
) -> Effective:
    """Defaults (the parser's, then the model's `defaults`), `tool`'s settings in the
    file, then the flags: the effective settings. Raises ConfigError (one line) for a
    bad file."""
    file_settings = from_file(keys, path, tool)
    settings: dict[str, object] = {**keys.defaults, **(defaults or {}), **file_settings}
    for key, value in flags.items():
        before = file_settings.get(key)
        if key in keys.joined and isinstance(before, list) and isinstance(value, list):
            settings[key] = [*before, *value]
        else:
            settings[key] = value
    given = {key: flag_spelling(keys.actions[key]) for key in flags}
    return Effective(settings, file_settings, given)


def as_namespace(
    keys: Schema, settings: Mapping[str, object], args: argparse.Namespace
) -> argparse.Namespace:
    """`args` with each flag's attribute set from `settings`, parsed as the flag would
    be (``metrics = "127.0.0.1:9469"`` -> ("127.0.0.1", 9469)): what the service
    runtime reads (--user, --metrics, --drain, -v...)."""
    out = argparse.Namespace(**vars(args))
    for key, action in keys.actions.items():
        value = settings.get(key)
        if (
            value is not None
            and key not in keys.modelled
            and action.nargs != 0
            and action.type is not None
        ):
            value = action.type(str(value))  # type: ignore[operator]
        setattr(out, action.dest, value)
    return out


@dataclass(frozen=True)
class CommandLine:
    """A parsed command line of `tool` and how to (re)read the effective settings from
    it: the file (`tool`'s table of a shared one) is read again each time (SIGHUP), the
    flags given stay."""

    tool: str
    parser: argparse.ArgumentParser
    keys: Schema
    args: argparse.Namespace
    flags: dict[str, object]
    defaults: dict[str, object]

    def effective(self) -> Effective:
        """Defaults, the ``--config`` file, then the flags; raises ConfigError."""
        return merged(self.keys, self.args.config, self.tool, self.flags, self.defaults)

    def chosen(self) -> dict[str, object]:
        """Only what the file and the flags set (no defaults); raises ConfigError."""
        return {**from_file(self.keys, self.args.config, self.tool), **self.flags}

    def namespace(self, settings: Mapping[str, object]) -> argparse.Namespace:
        """The flags' attributes as `settings` sets them (for the service runtime)."""
        return as_namespace(self.keys, settings, self.args)


def read_command_line(
    tool: str,
    parser: argparse.ArgumentParser,
    keys: Schema,
    argv: list[str] | None,
    defaults: Callable[[argparse.Namespace], dict[str, object]],
) -> CommandLine:
    """Parse `tool`'s `argv` (usage errors exit 2); `defaults` gives the settings
    model's own defaults, which may depend on the positional arguments (IFACE)."""
    args = parse_flags(parser, keys, argv)
    return CommandLine(tool, parser, keys, args, given(keys, args), defaults(args))
