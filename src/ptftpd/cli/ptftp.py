"""`ptftp`: the TFTP client command line.

Two distinct faces, so neither breaks the other:

- interactive, compatible with pTFTPd 1.x's `ptftp` (`-h HOST`, prompt `tftp> `);
  commands come from a terminal with line editing, or one per line from standard
  input, so `printf 'get f\\nquit\\n' | ptftp -h host` works in scripts;
- one-shot, for scripts: `ptftp get HOST REMOTE [LOCAL]`, `ptftp put HOST LOCAL
  [REMOTE]`, `ptftp tftp://host[:port]/path [LOCAL]`; exit status 0 on success.

Every failure is one line and a non-zero exit status (interactive mode reading a
script exits 1 when any command failed), never a traceback.

``--config FILE.toml`` takes the long flags as keys (``blksize = 1428``,
``windowsize = 16``...), from the file's top level or from its ``[ptftp]`` table when the
file is shared by the suite (`ptftpd.config`); flags win over it.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from dataclasses import dataclass, replace
from dataclasses import fields as dc_fields
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from ptftpd import __version__, config, fields
from ptftpd.cli.common import OneLineParser
from ptftpd.errors import bad_setting
from ptftpd.fields import Field
from ptftpd.log import setup_logging
from ptftpd.service.service_settings import LOG_FIELDS
from ptftpd.tftp import (
    TftpClient,
    TftpError,
    TftpUrl,
    TransferOptions,
    TransferResult,
    parse_url,
)
from ptftpd.tftp.client import DEFAULT_PORT
from ptftpd.tftp.errors import UsageError as TftpUsageError
from ptftpd.tftp.options import DEFAULT_RETRIES, WINDOWSIZE_MAX
from ptftpd.tftp.transfer_settings import RFC1350, blksize, timeout_seconds
from ptftpd.values import IntRange, port_number, positive_int

PROG = "ptftp"
DEFAULT_BLKSIZE = 1400  # what pTFTPd 1.x asked for: fits an Ethernet frame
MODE_ALIASES = {"octet": "octet", "binary": "octet", "netascii": "netascii", "ascii": "netascii"}


class UsageError(Exception):
    """A command typed wrongly: shown as one line, the transfer never starts; exit 2
    in one-shot mode (argparse's convention for usage errors)."""


def _url(text: str) -> TftpUrl:
    try:
        return parse_url(text)
    except TftpError as exc:
        raise UsageError(str(exc)) from None


@dataclass
class Settings:
    """What the next transfer uses: the server, the transfer's options (checked once,
    replaced as a whole by the interactive commands) and how much to say."""

    host: str | None
    port: int
    transfer: TransferOptions
    verbose: bool = False
    quiet: bool = False

    def options(self, mode: str | None) -> TransferOptions:
        """The options of the next transfer (`mode`, e.g. a URL's, overrides)."""
        return self.transfer if mode is None else replace(self.transfer, mode=mode)


TRANSFER_KEYS = dc_fields(TransferOptions)


def windowsize_value(text: str) -> int:
    value = positive_int(text)
    if value > WINDOWSIZE_MAX:
        raise argparse.ArgumentTypeError(f"must be 1..{WINDOWSIZE_MAX}")
    return value


def _mode(text: str) -> str:
    mode = MODE_ALIASES.get(text.lower())
    if mode is None:
        raise argparse.ArgumentTypeError(f"unknown mode {text!r}: use octet or netascii")
    return mode


_retries = IntRange(0, 1000)


# ptftp's settings, in --help's order: every one but --host is a key of its --config file.
FIELDS: tuple[Field, ...] = (
    Field("host", "server for interactive mode (localhost)", str, short="-h", in_file=False),
    Field("port", f"server UDP port ({DEFAULT_PORT})", port_number, "int", short="-p"),
    Field(
        "blksize",
        f"block size to ask for, RFC 2348 ({DEFAULT_BLKSIZE})",
        blksize,
        "int",
        DEFAULT_BLKSIZE,
        short="-b",
    ),
    Field(
        "windowsize",
        "blocks per window to ask for, RFC 7440 (1)",
        windowsize_value,
        "int",
        short="-w",
    ),
    Field("mode", "octet or netascii (octet)", _mode, "text", "octet", short="-m"),
    Field(
        "timeout",
        "retransmission timeout, also asked of the server (RFC 2349) (1, not sent)",
        timeout_seconds,
        "number",
        short="-t",
        metavar="SECONDS",
    ),
    Field(
        "retries",
        f"retransmissions before giving up ({DEFAULT_RETRIES})",
        _retries,
        "int",
        DEFAULT_RETRIES,
        metavar="N",
    ),
    Field(
        "tsize",
        "ask for the transfer size, RFC 2349 (the default); --no-tsize does not",
        negatable=True,
        default=True,
    ),
    Field("force", "one-shot get: overwrite an existing file", short="-f", default=False),
    Field("quiet", "one-shot: no summary, no progress bar", short="-q", default=False),
    RFC1350,
    *LOG_FIELDS,
)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        add_help=False,
        usage="%(prog)s [options] [HOST [PORT]]\n"
        "       %(prog)s [options] get HOST REMOTE [LOCAL]\n"
        "       %(prog)s [options] put HOST LOCAL [REMOTE]\n"
        "       %(prog)s [options] tftp://HOST[:PORT]/PATH [LOCAL]",
        description="TFTP client (RFC 1350, 2347, 2348, 2349, 7440). Without a command it "
        "is interactive (prompt 'tftp> ', type 'help'); commands are also read one per "
        "line from standard input when it is not a terminal. With get, put or a tftp:// "
        "URL it does that one transfer and exits 0 on success. LOCAL '-' is standard "
        "output (get) or standard input (put).",
        epilog="examples: ptftp -h 127.0.0.1 -p 6969;  "
        "ptftp -w 16 -b 1428 get 127.0.0.1 pxelinux.0;  "
        "ptftp put 127.0.0.1 report.txt;  ptftp tftp://[::1]:6969/hello.txt -",
    )
    parser.add_argument("-?", "--help", action="help", help="show this help and exit")
    fields.add_flags(parser, FIELDS)
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML settings file: keys are the long flags but --host (blksize = 1428, "
        "windowsize = 16, ...), at its top level or in its [ptftp] table when the file has "
        "one table per tool; flags win over it",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective settings (file, then flags) as TOML that --config (or a "
        "[ptftp] table) reads back, and exit",
    )
    parser.add_argument("--version", action="version", version=f"ptftp {__version__}")
    parser.add_argument("args", nargs="*", metavar="ARGS", help=argparse.SUPPRESS)
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Flags over the `--config` file over defaults; a bad setting exits 2 in one line."""
    args = parser.parse_intermixed_args(argv)
    try:
        file = fields.from_file(FIELDS, config.load_toml(args.config, PROG))
    except config.ConfigError as exc:
        bad_setting(PROG, str(exc))
    values = fields.resolve(FIELDS, file, fields.given(FIELDS, args))
    return fields.namespace(FIELDS, values, args)


# -- progress and output ---------------------------------------------------------------
class _Progress:
    """A tqdm bar on a terminal, shown only for transfers that last more than a moment;
    nothing at all when standard error is not a terminal."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label = label
        self.enabled = enabled and sys.stderr.isatty()
        self.bar: Any = None
        self.last = 0

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            import shutil

            from tqdm import tqdm

            # A terminal that reports no size (a fresh pty) would get no bar at all.
            size = shutil.get_terminal_size()
            self.bar = tqdm(
                total=total,
                desc=self.label,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                delay=0.5,
                leave=False,
                file=sys.stderr,
                ncols=min(size.columns, 120),
                nrows=size.lines,
            )
        elif total is not None and self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.last)
        self.last = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _describe(result: TransferResult, verb: str, verbose: bool) -> str:
    text = result.summary(verb)
    if verbose:
        details = [f"blksize {result.blksize}", f"windowsize {result.windowsize}"]
        if result.tsize is not None:
            details.append(f"tsize {result.tsize}")
        details.append(f"{result.retransmissions} retransmissions")
        text += "; " + ", ".join(details)
        if result.rfc1350_fallback:
            text += "; the server ignored or refused options (RFC 1350 transfer)"
    return text


def _local_name(remote: str) -> str:
    """Where `get NAME` saves by default: the last path component, in the current
    directory (a remote path must never choose a local directory)."""
    name = remote.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    if name in ("", ".", ".."):
        raise UsageError(f"cannot derive a local file name from {remote!r}: give LOCAL")
    return name


# -- transfers -------------------------------------------------------------------------
# A one-shot command's server, port and mode (None: the settings' own).
Where = tuple[str | None, int | None, str | None]
SETTINGS: Where = (None, None, None)


def _server(settings: Settings, where: Where) -> tuple[str, int, TransferOptions]:
    host, port, mode = where
    host = host or settings.host
    if not host:
        raise UsageError("no server: give one with 'connect HOST' or -h HOST")
    return host, port or settings.port, settings.options(mode)


def _target(remote: str, local: str | None, force: bool) -> tuple[str | BinaryIO, str]:
    """Where `get` writes (a path, or standard output for "-") and its label."""
    if local == "-":
        return sys.stdout.buffer, remote
    path = local if local is not None else _local_name(remote)
    if os.path.isdir(path):
        path = os.path.join(path, _local_name(remote))
    if not force and os.path.lexists(path):
        raise UsageError(f"local file {path} already exists (use -f to overwrite)")
    return path, os.path.basename(path)


def _source(local: str, remote: str | None) -> tuple[str | BinaryIO, str | None]:
    """What `put` reads (a path, or standard input for "-") and the remote name."""
    if local == "-":
        if not remote:
            raise UsageError("uploading standard input needs a REMOTE name")
        return sys.stdin.buffer, remote
    if not os.path.isfile(local):
        what = "is not a regular file" if os.path.exists(local) else "does not exist"
        raise UsageError(f"local file {local} {what}")
    return local, remote or os.path.basename(local)


def do_transfer(
    settings: Settings,
    command: str,
    first: str,
    second: str | None,
    *,
    force: bool = False,
    where: Where = SETTINGS,
    out: TextIO,
) -> TransferResult:
    """`get REMOTE [LOCAL]` or `put LOCAL [REMOTE]` ("-": standard output or input),
    with its progress bar, then its summary (unless quiet)."""
    server, port, options = _server(settings, where)
    if command == "get":
        target, label = _target(first, second, force)
    else:
        source, remote = _source(first, second)
        label = remote or first
    progress = _Progress(label, not settings.quiet)
    try:
        client = TftpClient(server, port, options)
        if command == "get":
            result = client.download(first, target, overwrite=force, progress=progress)
            if second == "-":
                sys.stdout.buffer.flush()
        else:
            result = client.upload(source, remote, progress=progress)
    finally:
        progress.close()
    if not settings.quiet:
        verb = "received" if command == "get" else "sent"
        print(_describe(result, verb, settings.verbose), file=out)
    return result


_OTHER_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


# -- one-shot --------------------------------------------------------------------------
def _where(
    settings: Settings, command: str, rest: list[str], host_flag: str | None
) -> tuple[Where, list[str]]:
    """Host, port, mode and the file names of a one-shot get/put, from a tftp:// URL
    (get's first name, put's second) or from HOST (or -h HOST) and plain names."""
    names = "REMOTE [LOCAL]" if command == "get" else "LOCAL [REMOTE]"
    at = 0 if command == "get" else 1
    if len(rest) > at and rest[at].lower().startswith("tftp://") and len(rest) in (at + 1, 2):
        url = _url(rest[at])
        files = list(rest)
        files[at] = url.path
        return (url.host, url.port or settings.port, url.mode), files
    if len(rest) > 2 and rest[0].lower().startswith("tftp://"):
        raise UsageError(f"usage: {command} tftp://HOST[:PORT]/PATH [LOCAL]")
    if host_flag is None:
        if not 2 <= len(rest) <= 3:
            raise UsageError(f"usage: {command} HOST {names}")
        return (rest[0], None, None), rest[1:]
    if not 1 <= len(rest) <= 2:
        raise UsageError(f"usage: -h HOST {command} {names}")
    return (host_flag, None, None), rest


def _one_shot(settings: Settings, words: list[str], force: bool, host_flag: str | None) -> int:
    command, rest = words[0], words[1:]
    if command not in ("get", "put"):  # a bare URL: get it
        command, rest = "get", words
    where, files = _where(settings, command, rest, host_flag)
    second = files[1] if len(files) > 1 else None
    out = sys.stderr  # stdout may carry the file itself
    do_transfer(settings, command, files[0], second, force=force, where=where, out=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse(parser, argv)
    if args.print_config:
        print(fields.dump(FIELDS, {f.key: getattr(args, f.dest) for f in FIELDS}), end="")
        return 0
    setup_logging(args.verbose, args.debug)
    logging.getLogger("ptftpd").debug("ptftp %s", __version__)
    words: list[str] = args.args
    try:
        # The transfer flags are spelled as TransferOptions' fields: one checked object.
        transfer = TransferOptions(**{f.name: getattr(args, f.name) for f in TRANSFER_KEYS})
        port = args.port or DEFAULT_PORT
        settings = Settings(args.host, port, transfer, args.verbose, args.quiet)
        for word in words:
            scheme = _OTHER_SCHEME.match(word)
            if scheme and scheme.group(1).lower() != "tftp":
                raise UsageError(f"only tftp:// URLs are supported, not {scheme.group(0)}")
        if words and (words[0] in ("get", "put") or words[0].lower().startswith("tftp://")):
            return _one_shot(settings, words, args.force, args.host)
        if len(words) > 2:
            parser.error("too many arguments")
        if words:
            if args.host:
                parser.error("give the host either with -h or as an argument, not both")
            settings.host = words[0]
            if len(words) == 2:
                try:
                    settings.port = port_number(words[1])
                except argparse.ArgumentTypeError as exc:
                    parser.error(f"port: {exc}")
        elif settings.host is None:
            settings.host = "localhost"
        from ptftpd.cli.ptftp_shell import interactive  # not needed by one-shot use

        return interactive(settings)
    except (UsageError, TftpUsageError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except TftpError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our standard output went away (e.g. `| head`).
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silences the exit flush
        except OSError:
            pass
        return 1


if __name__ == "__main__":
    sys.exit(main())
