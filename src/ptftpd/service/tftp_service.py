"""A running `TftpServer` as the service runtime sees it: drain, reload, metrics, remap.

Everything hooks through the server's public surface (`on_started`, `on_finished`,
`accepting`, `remap`, `transfers`), so the TFTP core knows nothing of services.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path

from ptftpd.events import Failure, fan_out, ignore
from ptftpd.fields import Field
from ptftpd.service import metrics
from ptftpd.tftp import remap
from ptftpd.tftp.errors import LocalError
from ptftpd.tftp.packets import ErrorCode
from ptftpd.tftp.server import ServerConfig, TftpServer

log = logging.getLogger("ptftpd.service")


def count_transfers(server: TftpServer) -> None:
    """--metrics for a TFTP server whose callbacks may already be someone else's (pxed's
    boot tracker): each transfer event is counted, then passed on to them."""
    started, finished, refused = server.on_started, server.on_finished, server.on_refused
    server.on_started = fan_out(metrics.record_event, started or ignore)
    server.on_finished = fan_out(metrics.record_event, finished or ignore)
    server.on_refused = fan_out(metrics.record_event, refused or ignore)
    server.on_dropped = metrics.tftp_dropped


def remapper(rules: remap.RuleSet) -> Callable[[str, str, bool], str]:
    """The server's `remap` hook for a tftpd-hpa rule set: a refusal is ERROR 2."""

    def apply(filename: str, client_ip: str, is_read: bool) -> str:
        result = rules.apply(filename, client_ip, remap.Op.READ if is_read else remap.Op.WRITE)
        if isinstance(result, remap.Refused):
            log.info("%s %r refused by the map file: %s", client_ip, filename, result.message)
            raise LocalError(ErrorCode.ACCESS_VIOLATION, result.message, Failure.MAP_FILE)
        if result != filename:
            log.debug("%s %r remapped to %r", client_ip, filename, result)
        return result

    return apply


def reloaded(running: ServerConfig, new: ServerConfig) -> tuple[ServerConfig, list[str]]:
    """What a reload from `running` to `new` applies (ROOT and the restart-only settings
    stay the running ones), and the names of the restart-only settings `new` wanted
    changed."""
    keys = sorted(set(running.restart_only) | set(new.restart_only))
    kept = [k for k in keys if running.restart_only.get(k) != new.restart_only.get(k)]
    applied = dataclasses.replace(new, root=running.root, restart_only=running.restart_only)
    return applied, kept


def summary(config: ServerConfig, kept: list[str]) -> str:
    """The reload line: what now applies, and what a restart would change."""
    c = config
    parts = []
    if c.remap_rules is not None:
        parts.append(f"{len(c.remap_rules.rules)} rule(s) from {c.map_file}")
    parts.append(
        f"max sessions {c.max_sessions}, blksize max {c.blksize_max}, windowsize max "
        f"{c.windowsize_max}, timeout {c.timeout:g} s, retries {c.retries}, "
        f"{'read-only' if c.read_only else 'uploads allowed'}"
    )
    if kept:
        parts.append(f"kept until a restart: {', '.join(kept)}")
    return "; ".join(parts)


# Re-reads the settings for SIGHUP (the flags given at start, then the --config file and
# --map-file as they are now); raises with a one-line message when one is bad.
Reread = Callable[[], ServerConfig]


class TftpService:
    """Adapts a started `TftpServer` to `ptftpd.service.runtime.Running`: SIGHUP calls
    `reload`, which applies `reread()` to the server (running transfers keep the limits
    they started with) and `on_config` (a worker's shared session limit). The settings
    in force are the server's `config`."""

    def __init__(
        self,
        server: TftpServer,
        reread: Reread,
        on_config: Callable[[ServerConfig], None] | None = None,
    ) -> None:
        self.server = server
        self.reread = reread
        self.on_config = on_config
        server.on_started = server.on_finished = None
        count_transfers(server)
        if server.config.remap_rules is not None:
            server.remap = remapper(server.config.remap_rules)

    def active(self) -> int:
        return self.server.answered()

    def stop_accepting(self) -> None:
        self.server.accepting = False

    def reload(self) -> str:
        # a bad file raises: the running settings stay
        new, kept = reloaded(self.server.config, self.reread())
        apply_settings(self.server, new)
        if self.on_config is not None:
            self.on_config(new)
        return summary(new, kept)

    def close(self) -> None:
        self.server.close()


def port_range(text: str) -> tuple[int, int]:
    """``LOW:HIGH`` for ``--port-range`` (tftpd-hpa's spelling)."""
    low, sep, high = text.partition(":")
    if not (sep and low.isdigit() and high.isdigit()):
        raise argparse.ArgumentTypeError(f"expected LOW:HIGH, e.g. 40000:40999, not {text!r}")
    lo, hi = int(low), int(high)
    if not 1 <= lo <= hi <= 65535:
        raise argparse.ArgumentTypeError(f"need 1 <= LOW <= HIGH <= 65535, not {text!r}")
    return lo, hi


def umask_value(text: str) -> int:
    try:
        value = int(text, 8)
    except ValueError:
        msg = f"expected an octal umask such as 022, not {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError(f"a umask is 000..777, not {text!r}")
    return value


HPA = "tftpd-hpa compatibility"

# tftpd-hpa's operator knobs, spelled as its long options; all apply on SIGHUP.
HPA_FIELDS = (
    Field(
        "map-file",
        "rewrite or refuse requested names with tftpd-hpa remap rules (r g i e s a G P 4 6 ~ "
        "flags, \\i client address); re-read on SIGHUP",
        Path,
        metavar="FILE",
        group=HPA,
    ),
    Field(
        "port-range",
        "take transfer sockets' ports from LOW..HIGH (firewalls); default: any",
        port_range,
        metavar="LOW:HIGH",
        show=lambda v: f"{v[0]}:{v[1]}",
        group=HPA,
    ),
    Field(
        "umask",
        "octal umask for uploaded files (default: the inherited one)",
        umask_value,
        metavar="MASK",
        show=lambda v: f"{v:03o}",
        group=HPA,
    ),
    Field(
        "create",
        "uploads may create new files (default); an existing file is never overwritten. "
        "--no-create refuses every upload, like tftpd-hpa without -c",
        negatable=True,
        default=True,
        short="-c",
        group=HPA,
    ),
    Field(
        "secure",
        "tftpd-hpa's -s, accepted: requests are always confined to ROOT (no other mode)",
        short="-s",
        default=False,
        in_file=False,
        group=HPA,
    ),
    Field(
        "standalone",
        "tftpd-hpa's -l, accepted: ptftpd always listens by itself (no inetd mode)",
        short="-l",
        default=False,
        in_file=False,
        group=HPA,
    ),
)


def apply_settings(server: TftpServer, config: ServerConfig) -> None:
    """Switch a running server to `config`: new requests see it, running transfers
    keep the limits they started with (their sessions copied them)."""
    server.config = config
    server.rules.max_sessions = config.max_sessions
    server.rules.read_only = config.read_only
    server.remap = None if config.remap_rules is None else remapper(config.remap_rules)
    if config.umask is not None:
        os.umask(config.umask)
