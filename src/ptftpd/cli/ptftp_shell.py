"""ptftp's interactive face: the classic `tftp>` prompt (tftp-hpa's commands), on a
terminal with readline, else reading commands from standard input."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar, TextIO

from ptftpd import __version__
from ptftpd.cli.ptftp import (
    MODE_ALIASES,
    Settings,
    UsageError,
    do_transfer,
    windowsize_value,
)
from ptftpd.tftp import TftpError, TransferOptions
from ptftpd.tftp.client import format_host
from ptftpd.tftp.transfer_settings import blksize, timeout_seconds
from ptftpd.values import port_number

# -- interactive -----------------------------------------------------------------------
HELP = """\
Commands:
  get [-f] NAME [LOCAL]   fetch NAME (to ./NAME); -f overwrites an existing file
  put LOCAL [REMOTE]      send LOCAL (as its own name)
  mode [octet|netascii]   show or set the transfer mode
  blksize [N|off]         show or set the block size to ask for (RFC 2348)
  windowsize [N|off]      show or set the window to ask for (RFC 7440)
  tsize                   toggle asking for the transfer size (RFC 2349)
  timeout [SECONDS|off]   show or set the retransmission timeout (RFC 2349)
  connect HOST [PORT]     choose the server
  status                  show the current settings
  verbose                 toggle details in transfer summaries
  help, ?                 this help
  quit, q                 leave"""


def _names(args: list[str], usage: str) -> tuple[str, str | None]:
    """get's or put's one or two file names."""
    if not 1 <= len(args) <= 2:
        raise UsageError(f"usage: {usage}")
    return args[0], args[1] if len(args) > 1 else None


def _shown(options: TransferOptions, name: str) -> str:
    """One transfer option as the shell says it (a value not asked for: its default)."""
    value = getattr(options, name)
    if name == "tsize":
        return f"Transfer size option: {'on' if value else 'off'}"
    if name == "timeout":
        return f"Timeout: {f'{value:g} s' if value else '1 s (not asked for)'}"
    label, default = {"blksize": ("Block size", 512), "windowsize": ("Window size", 1)}[name]
    return f"{label}: {value or f'{default} (not asked for)'}"


class Shell:
    """The interactive client: one command per line."""

    def __init__(self, settings: Settings, tty: bool) -> None:
        self.settings = settings
        self.tty = tty
        self.failures = 0

    def loop(self, stream: TextIO) -> int:
        while True:
            try:
                line = input("tftp> ") if self.tty else stream.readline()
            except EOFError:
                if self.tty:
                    print()
                break
            except KeyboardInterrupt:
                print()
                continue
            if not self.tty and not line:
                break
            try:
                if not self.execute(line):
                    break
            except KeyboardInterrupt:
                self.failures += 1
                print("Error: interrupted", file=sys.stderr)
        return 1 if self.failures and not self.tty else 0

    def execute(self, line: str) -> bool:
        """Run one command line; False means quit."""
        try:
            import shlex

            words = shlex.split(line, comments=True)
        except ValueError as exc:
            self.error(f"cannot parse the command: {exc}")
            return True
        if not words:
            return True
        command, args = words[0].lower(), words[1:]
        handler = self.COMMANDS.get(command)
        if handler is None:
            self.error(f"unknown command {words[0]!r} (type help)")
            return True
        if handler == "quit":
            return False
        try:
            getattr(self, f"cmd_{handler}")(args)
        except (UsageError, TftpError) as exc:
            self.error(str(exc))
        return True

    def error(self, message: str) -> None:
        self.failures += 1
        print(f"Error: {message}", file=sys.stderr)
        sys.stderr.flush()

    COMMANDS: ClassVar[dict[str, str]] = {
        "get": "get",
        "g": "get",
        "put": "put",
        "p": "put",
        "mode": "mode",
        "m": "mode",
        "binary": "binary",
        "ascii": "ascii",
        "blksize": "blksize",
        "b": "blksize",
        "windowsize": "windowsize",
        "w": "windowsize",
        "tsize": "tsize",
        "timeout": "timeout",
        "connect": "connect",
        "status": "status",
        "verbose": "verbose",
        "help": "help",
        "?": "help",
        "quit": "quit",
        "q": "quit",
        "exit": "quit",
    }

    def cmd_get(self, args: list[str]) -> None:
        force = False
        if args and args[0] == "-f":
            force, args = True, args[1:]
        first, second = _names(args, "get [-f] NAME [LOCAL]")
        do_transfer(self.settings, "get", first, second, force=force, out=sys.stdout)

    def cmd_put(self, args: list[str]) -> None:
        first, second = _names(args, "put LOCAL [REMOTE]")
        do_transfer(self.settings, "put", first, second, out=sys.stdout)

    def _change(self, **values: Any) -> None:
        self.settings.transfer = replace(self.settings.transfer, **values)

    def cmd_mode(self, args: list[str]) -> None:
        if len(args) > 1:
            raise UsageError("usage: mode [octet|netascii]")
        if args:
            mode = MODE_ALIASES.get(args[0].lower())
            if mode is None:
                raise UsageError(f"unknown mode {args[0]!r}: use octet or netascii")
            self._change(mode=mode)
        print(f"Transfer mode: {self.settings.transfer.mode}")

    def cmd_binary(self, args: list[str]) -> None:
        self.cmd_mode(["octet"])

    def cmd_ascii(self, args: list[str]) -> None:
        self.cmd_mode(["netascii"])

    def _number(self, args: list[str], name: str, parse: Callable[[str], Any]) -> None:
        """`blksize`, `windowsize`, `timeout`: with a value (or off) set it; then show it."""
        if len(args) > 1:
            raise UsageError(f"usage: {name} [N|off]")
        if args and args[0].lower() in ("off", "none", "0"):
            self._change(**{name: None})
        elif args:
            try:
                self._change(**{name: parse(args[0])})
            except argparse.ArgumentTypeError as exc:
                raise UsageError(f"{name}: {exc}") from None
        print(_shown(self.settings.transfer, name))

    def cmd_blksize(self, args: list[str]) -> None:
        self._number(args, "blksize", blksize)

    def cmd_windowsize(self, args: list[str]) -> None:
        self._number(args, "windowsize", windowsize_value)

    def cmd_tsize(self, args: list[str]) -> None:
        if args:
            raise UsageError("usage: tsize (toggles)")
        self._change(tsize=not self.settings.transfer.tsize)
        print(_shown(self.settings.transfer, "tsize"))

    def cmd_timeout(self, args: list[str]) -> None:
        self._number(args, "timeout", timeout_seconds)

    def cmd_connect(self, args: list[str]) -> None:
        if not 1 <= len(args) <= 2:
            raise UsageError("usage: connect HOST [PORT]")
        port = self.settings.port
        if len(args) == 2:
            try:
                port = port_number(args[1])
            except argparse.ArgumentTypeError as exc:
                raise UsageError(f"port: {exc}") from None
        self.settings.host, self.settings.port = args[0], port
        print(f"Server: {format_host(args[0], port)}")

    def cmd_status(self, args: list[str]) -> None:
        s = self.settings
        server = format_host(s.host, s.port) if s.host else "none (use connect)"
        print(f"Server: {server}")
        print(f"Mode: {s.transfer.mode}")
        for name in ("blksize", "windowsize", "tsize", "timeout"):
            print(_shown(s.transfer, name))
        print(f"Retries: {s.transfer.retries}")
        print(f"RFC 1350 only: {'on' if s.transfer.rfc1350 else 'off'}")
        print(f"Verbose: {'on' if s.verbose else 'off'}")

    def cmd_verbose(self, args: list[str]) -> None:
        self.settings.verbose = not self.settings.verbose
        print(f"Verbose: {'on' if self.settings.verbose else 'off'}")

    def cmd_help(self, args: list[str]) -> None:
        print(HELP)


def interactive(settings: Settings) -> int:
    tty = sys.stdin.isatty()
    if tty:
        try:
            import readline  # noqa: F401 - gives input() line editing and history
        except ImportError:
            pass
    shell = Shell(settings, tty)
    if tty:
        print(f"ptftp {__version__}: type help for commands, quit to leave.")
        if settings.host:
            print(f"Server: {format_host(settings.host, settings.port)}")
    return shell.loop(sys.stdin)
