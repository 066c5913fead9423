"""`ptftp`: the TFTP client command line.

Two distinct faces, so neither breaks the other:

- interactive, compatible with pTFTPd 1.x's `ptftp` (`-h HOST`, prompt `tftp> `);
  commands come from a terminal with line editing, or one per line from standard
  input, so `printf 'get f\\nquit\\n' | ptftp -h host` works in scripts;
- one-shot, for scripts: `ptftp get HOST REMOTE [LOCAL]`, `ptftp put HOST LOCAL
  [REMOTE]`, `ptftp tftp://host[:port]/path [LOCAL]`; exit status 0 on success.

Every failure is one line and a non-zero exit status (interactive mode reading a
script exits 1 when any command failed), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, ClassVar, TextIO

from ptftpd import __version__
from ptftpd.cli.common import (
    add_common_flags,
    blksize,
    port_number,
    positive_int,
    timeout_seconds,
)
from ptftpd.log import setup_logging
from ptftpd.tftp import TftpError, TftpUrl, TransferResult, download, parse_url, upload
from ptftpd.tftp.client import DEFAULT_PORT, DEFAULT_RETRIES, format_host
from ptftpd.tftp.errors import UsageError as TftpUsageError
from ptftpd.tftp.options import WINDOWSIZE_MAX

PROG = "ptftp"
DEFAULT_BLKSIZE = 1400  # what pTFTPd 1.x asked for: fits an Ethernet frame
_MODE_ALIASES = {"octet": "octet", "binary": "octet", "netascii": "netascii", "ascii": "netascii"}


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
    """What the next transfer uses; the interactive commands change it."""

    host: str | None = None
    port: int = DEFAULT_PORT
    mode: str = "octet"
    blksize: int | None = DEFAULT_BLKSIZE
    windowsize: int | None = None
    tsize: bool = True
    timeout: float | None = None
    retries: int = DEFAULT_RETRIES
    rfc1350: bool = False
    verbose: bool = False
    quiet: bool = False


def _windowsize(text: str) -> int:
    value = positive_int(text)
    if value > WINDOWSIZE_MAX:
        raise argparse.ArgumentTypeError(f"must be 1..{WINDOWSIZE_MAX}")
    return value


def _mode(text: str) -> str:
    mode = _MODE_ALIASES.get(text.lower())
    if mode is None:
        raise argparse.ArgumentTypeError(f"unknown mode {text!r}: use octet or netascii")
    return mode


def _retries(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    parser.add_argument("-h", "--host", help="server for interactive mode (localhost)")
    parser.add_argument("-p", "--port", type=port_number, help=f"server UDP port ({DEFAULT_PORT})")
    parser.add_argument(
        "-b",
        "--blksize",
        type=blksize,
        default=DEFAULT_BLKSIZE,
        help=f"block size to ask for, RFC 2348 ({DEFAULT_BLKSIZE})",
    )
    parser.add_argument(
        "-w", "--windowsize", type=_windowsize, help="blocks per window to ask for, RFC 7440 (1)"
    )
    parser.add_argument(
        "-m", "--mode", type=_mode, default="octet", help="octet or netascii (octet)"
    )
    parser.add_argument(
        "-t",
        "--timeout",
        type=timeout_seconds,
        metavar="SECONDS",
        help="retransmission timeout, also asked of the server (RFC 2349) (1, not sent)",
    )
    parser.add_argument(
        "--retries",
        type=_retries,
        default=DEFAULT_RETRIES,
        metavar="N",
        help=f"retransmissions before giving up ({DEFAULT_RETRIES})",
    )
    parser.add_argument(
        "--no-tsize", action="store_true", help="do not ask for the transfer size (RFC 2349)"
    )
    parser.add_argument(
        "-f", "--force", action="store_true", help="one-shot get: overwrite an existing file"
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="one-shot: no summary, no progress bar"
    )
    add_common_flags(parser)
    parser.add_argument("--version", action="version", version=f"ptftp {__version__}")
    parser.add_argument("args", nargs="*", metavar="ARGS", help=argparse.SUPPRESS)
    return parser


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
def do_get(
    settings: Settings,
    remote: str,
    local: str | None,
    *,
    force: bool,
    host: str | None = None,
    port: int | None = None,
    mode: str | None = None,
    out: TextIO,
) -> TransferResult:
    host = host or settings.host
    if not host:
        raise UsageError("no server: give one with 'connect HOST' or -h HOST")
    target: str | BinaryIO
    if local == "-":
        target = sys.stdout.buffer
        label = remote
    else:
        path = local if local is not None else _local_name(remote)
        if os.path.isdir(path):
            path = os.path.join(path, _local_name(remote))
        if not force and os.path.lexists(path):
            raise UsageError(f"local file {path} already exists (use -f to overwrite)")
        target = path
        label = os.path.basename(path)
    progress = _Progress(label, not settings.quiet)
    try:
        result = download(
            host,
            remote,
            target,
            port=port or settings.port,
            mode=mode or settings.mode,
            blksize=None if settings.rfc1350 else settings.blksize,
            windowsize=None if settings.rfc1350 else settings.windowsize,
            tsize=settings.tsize and not settings.rfc1350,
            timeout=settings.timeout,
            retries=settings.retries,
            rfc1350=settings.rfc1350,
            overwrite=force,
            progress=progress,
        )
    finally:
        progress.close()
    if local == "-":
        sys.stdout.buffer.flush()
    if not settings.quiet:
        print(_describe(result, "received", settings.verbose), file=out)
    return result


def do_put(
    settings: Settings,
    local: str,
    remote: str | None,
    *,
    host: str | None = None,
    port: int | None = None,
    mode: str | None = None,
    out: TextIO,
) -> TransferResult:
    host = host or settings.host
    if not host:
        raise UsageError("no server: give one with 'connect HOST' or -h HOST")
    source: str | BinaryIO
    if local == "-":
        if not remote:
            raise UsageError("uploading standard input needs a REMOTE name")
        source = sys.stdin.buffer
    else:
        if not os.path.isfile(local):
            what = "is not a regular file" if os.path.exists(local) else "does not exist"
            raise UsageError(f"local file {local} {what}")
        source = local
        remote = remote or os.path.basename(local)
    progress = _Progress(remote or local, not settings.quiet)
    try:
        result = upload(
            host,
            source,
            remote,
            port=port or settings.port,
            mode=mode or settings.mode,
            blksize=None if settings.rfc1350 else settings.blksize,
            windowsize=None if settings.rfc1350 else settings.windowsize,
            tsize=settings.tsize and not settings.rfc1350,
            timeout=settings.timeout,
            retries=settings.retries,
            rfc1350=settings.rfc1350,
            progress=progress,
        )
    finally:
        progress.close()
    if not settings.quiet:
        print(_describe(result, "sent", settings.verbose), file=out)
    return result


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
        if not 1 <= len(args) <= 2:
            raise UsageError("usage: get [-f] NAME [LOCAL]")
        do_get(
            self.settings,
            args[0],
            args[1] if len(args) > 1 else None,
            force=force,
            out=sys.stdout,
        )

    def cmd_put(self, args: list[str]) -> None:
        if not 1 <= len(args) <= 2:
            raise UsageError("usage: put LOCAL [REMOTE]")
        do_put(
            self.settings,
            args[0],
            args[1] if len(args) > 1 else None,
            out=sys.stdout,
        )

    def cmd_mode(self, args: list[str]) -> None:
        if len(args) > 1:
            raise UsageError("usage: mode [octet|netascii]")
        if args:
            mode = _MODE_ALIASES.get(args[0].lower())
            if mode is None:
                raise UsageError(f"unknown mode {args[0]!r}: use octet or netascii")
            self.settings.mode = mode
        print(f"Transfer mode: {self.settings.mode}")

    def cmd_binary(self, args: list[str]) -> None:
        self.cmd_mode(["octet"])

    def cmd_ascii(self, args: list[str]) -> None:
        self.cmd_mode(["netascii"])

    def _number(self, args: list[str], name: str, parse: Callable[[str], Any]) -> Any:
        if len(args) > 1:
            raise UsageError(f"usage: {name} [N|off]")
        if args[0].lower() in ("off", "none", "0"):
            return None
        try:
            return parse(args[0])
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"{name}: {exc}") from None

    def cmd_blksize(self, args: list[str]) -> None:
        if args:
            self.settings.blksize = self._number(args, "blksize", blksize)
        value = self.settings.blksize
        print(f"Block size: {value if value else '512 (not asked for)'}")

    def cmd_windowsize(self, args: list[str]) -> None:
        if args:
            self.settings.windowsize = self._number(args, "windowsize", _windowsize)
        value = self.settings.windowsize
        print(f"Window size: {value if value else '1 (not asked for)'}")

    def cmd_tsize(self, args: list[str]) -> None:
        if args:
            raise UsageError("usage: tsize (toggles)")
        self.settings.tsize = not self.settings.tsize
        print(f"Transfer size option: {'on' if self.settings.tsize else 'off'}")

    def cmd_timeout(self, args: list[str]) -> None:
        if args:
            self.settings.timeout = self._number(args, "timeout", timeout_seconds)
        value = self.settings.timeout
        print(f"Timeout: {f'{value:g} s' if value else '1 s (not asked for)'}")

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
        print(f"Mode: {s.mode}")
        print(f"Block size: {s.blksize or '512 (not asked for)'}")
        print(f"Window size: {s.windowsize or '1 (not asked for)'}")
        print(f"Transfer size option: {'on' if s.tsize else 'off'}")
        print(f"Timeout: {f'{s.timeout:g} s' if s.timeout else '1 s (not asked for)'}")
        print(f"Retries: {s.retries}")
        print(f"RFC 1350 only: {'on' if s.rfc1350 else 'off'}")
        print(f"Verbose: {'on' if s.verbose else 'off'}")

    def cmd_verbose(self, args: list[str]) -> None:
        self.settings.verbose = not self.settings.verbose
        print(f"Verbose: {'on' if self.settings.verbose else 'off'}")

    def cmd_help(self, args: list[str]) -> None:
        print(HELP)


def _interactive(settings: Settings) -> int:
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


# -- one-shot --------------------------------------------------------------------------
def _one_shot(settings: Settings, words: list[str], force: bool, host_flag: str | None) -> int:
    command, rest = words[0], words[1:]
    out = sys.stderr  # stdout may carry the file itself
    if command == "get":
        if rest and rest[0].lower().startswith("tftp://"):
            if len(rest) > 2:
                raise UsageError("usage: get tftp://HOST[:PORT]/PATH [LOCAL]")
            url = _url(rest[0])
            do_get(
                settings,
                url.path,
                rest[1] if len(rest) > 1 else None,
                force=force,
                host=url.host,
                port=url.port or settings.port,
                mode=url.mode,
                out=out,
            )
            return 0
        if host_flag is None:
            if not 2 <= len(rest) <= 3:
                raise UsageError("usage: get HOST REMOTE [LOCAL]")
            host, rest = rest[0], rest[1:]
        else:
            if not 1 <= len(rest) <= 2:
                raise UsageError("usage: -h HOST get REMOTE [LOCAL]")
            host = host_flag
        do_get(
            settings,
            rest[0],
            rest[1] if len(rest) > 1 else None,
            force=force,
            host=host,
            out=out,
        )
        return 0
    if command == "put":
        if len(rest) == 2 and rest[1].lower().startswith("tftp://"):
            url = _url(rest[1])
            do_put(
                settings,
                rest[0],
                url.path,
                host=url.host,
                port=url.port or settings.port,
                mode=url.mode,
                out=out,
            )
            return 0
        if host_flag is None:
            if not 2 <= len(rest) <= 3:
                raise UsageError("usage: put HOST LOCAL [REMOTE]")
            host, rest = rest[0], rest[1:]
        else:
            if not 1 <= len(rest) <= 2:
                raise UsageError("usage: -h HOST put LOCAL [REMOTE]")
            host = host_flag
        do_put(settings, rest[0], rest[1] if len(rest) > 1 else None, host=host, out=out)
        return 0
    # A bare URL: get it.
    if len(rest) > 1:
        raise UsageError("usage: ptftp tftp://HOST[:PORT]/PATH [LOCAL]")
    url = _url(command)
    do_get(
        settings,
        url.path,
        rest[0] if rest else None,
        force=force,
        host=url.host,
        port=url.port or settings.port,
        mode=url.mode,
        out=out,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    setup_logging(args.verbose, args.debug)
    logging.getLogger("ptftpd").debug("ptftp %s", __version__)
    settings = Settings(
        host=args.host,
        port=args.port or DEFAULT_PORT,
        mode=args.mode,
        blksize=args.blksize,
        windowsize=args.windowsize,
        tsize=not args.no_tsize,
        timeout=args.timeout,
        retries=args.retries,
        rfc1350=args.rfc1350,
        verbose=args.verbose,
        quiet=args.quiet,
    )
    words: list[str] = args.args
    try:
        if words and (words[0] in ("get", "put") or words[0].lower().startswith("tftp://")):
            return _one_shot(settings, words, args.force, args.host)
        if len(words) > 2:
            parser.error("too many arguments (see --help)")
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
        return _interactive(settings)
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
