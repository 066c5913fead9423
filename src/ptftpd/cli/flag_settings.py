"""A server's settings as ONE mapping: defaults, then the file, then the flags given.

dhcpd, bootpd and pxed take a ``--config`` TOML file whose keys are the fields of their
table (`ptftpd.fields`: the long flags, dnsmasq's convention, plus the keys only a file
can hold: ``[[subnet]]``, ``exclude``, ``[options]``); in a file shared by the suite
they are the keys of the tool's own ``[dhcpd]``, ``[bootpd]`` or ``[pxed]`` table
(`ptftpd.config.load_toml`). `read_command_line` parses the flags once (each default
None, so only the flags actually given count); `CommandLine.effective` reads the file
(again on SIGHUP) and lays defaults, file and flags over each other into the one
mapping the settings models turn into their configs and ``--print-config`` prints.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ptftpd import config, fields
from ptftpd.config import ConfigError
from ptftpd.fields import Field
from ptftpd.service.service_settings import SERVICE_KEYS

__all__ = ["CommandLine", "Effective", "Reloads", "located", "read_command_line"]


class Effective(dict[str, object]):
    """The effective settings (None values left out) and where each came from: `file`
    (with its lines) and the `flags` given (key -> the flag's spelling), so that an
    error the settings model finds in a value names its FILE:LINE or its flag."""

    def __init__(
        self, items: Mapping[str, object], file: config.FileSettings, flags: Mapping[str, str]
    ) -> None:
        super().__init__((k, v) for k, v in items.items() if v is not None)
        self.file = file
        self.flags = dict(flags)

    def explain(self, exc: ConfigError) -> str:
        return exc.located(self.file, self.flags)


def located(exc: ConfigError, settings: Mapping[str, object]) -> ConfigError:
    """`exc` with where its value was set, when `settings` know (`Effective`)."""
    if isinstance(settings, Effective) and exc.at:
        return ConfigError(settings.explain(exc))
    return exc


@dataclass(frozen=True)
class CommandLine:
    """A parsed command line of `tool` and how to (re)read the effective settings from
    it: the file (`tool`'s table of a shared one) is read again each time (SIGHUP), the
    flags given stay."""

    tool: str
    parser: argparse.ArgumentParser
    table: tuple[Field, ...]
    args: argparse.Namespace
    flags: dict[str, object]
    defaults: dict[str, object]

    def file(self) -> tuple[config.FileSettings, dict[str, object]]:
        toml = config.load_toml(self.args.config, self.tool)
        return toml, fields.from_file(self.table, toml)

    def effective(self) -> Effective:
        """Defaults, the ``--config`` file, then the flags; raises ConfigError."""
        toml, file = self.file()
        values = fields.resolve(self.table, file, self.flags, self.defaults)
        given = {f.key: f.flag for f in self.table if f.key in self.flags}
        return Effective(values, toml, given)

    def chosen(self) -> dict[str, object]:
        """Only what the file and the flags set (no defaults); raises ConfigError."""
        return {**self.file()[1], **self.flags}

    def namespace(self, settings: Mapping[str, object]) -> argparse.Namespace:
        """The flags' attributes as `settings` sets them (for the service runtime)."""
        return fields.namespace(self.table, settings, self.args)


class Reloads:
    """SIGHUP's re-read of a server whose own reload rule covers what it serves: it also
    names the service fields (user, group, metrics, drain, logging, workers) the file
    now changes, which are set up once at start and kept until a restart."""

    def __init__(self, read: CommandLine, start: Mapping[str, object]) -> None:
        self.read = read
        self.start = dict(start)
        self.service = [f for f in read.table if f.key in SERVICE_KEYS]
        self.names: list[str] = []

    def effective(self) -> Effective:
        values = self.read.effective()
        self.names = fields.kept(self.service, self.start, values)
        return values

    def kept(self) -> list[str]:
        return self.names

    def namespace(self, settings: Mapping[str, object]) -> argparse.Namespace:
        return self.read.namespace(settings)


def read_command_line(
    tool: str,
    parser: argparse.ArgumentParser,
    table: tuple[Field, ...],
    argv: list[str] | None,
    defaults: Callable[[argparse.Namespace], dict[str, object]],
) -> CommandLine:
    """Parse `tool`'s `argv` (usage errors exit 2); `defaults` gives the defaults that
    depend on the positional arguments (the lease file named after IFACE)."""
    args = parser.parse_args(argv)
    return CommandLine(tool, parser, table, args, fields.given(table, args), defaults(args))
