"""A `ServerConfig` from settings in their TOML form (``blksize-max = 1468``, ...).

ptftpd and pxed both hold their settings as one mapping keyed like the long flags (the
``--config`` file, then the flags over it), already checked against each flag's type and
range; this turns the transfer limits of that mapping into the TFTP server's settings,
so both tools read them alike and no argparse Namespace reaches the TFTP layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ptftpd.tftp.server import ServerConfig

__all__ = ["transfer_config"]

_DEFAULTS = ServerConfig(root=Path("."))


def _int(settings: Mapping[str, object], key: str, default: int) -> int:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{key}: expected an integer, got {value!r}")
    return value


def _number(settings: Mapping[str, object], key: str, default: float) -> float:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{key}: expected a number, got {value!r}")
    return float(value)


def transfer_config(settings: Mapping[str, object], root: Path, *, read_only: bool) -> ServerConfig:
    """The TFTP limits of `settings` (keys ``rfc1350``, ``blksize-max``,
    ``windowsize-max``, ``timeout``, ``retries``, ``max-sessions``; absent ones keep the
    server's defaults) for serving `root`."""
    return ServerConfig(
        root=root,
        read_only=read_only,
        rfc1350=settings.get("rfc1350") is True,
        blksize_max=_int(settings, "blksize-max", _DEFAULTS.blksize_max),
        windowsize_max=_int(settings, "windowsize-max", _DEFAULTS.windowsize_max),
        timeout=_number(settings, "timeout", _DEFAULTS.timeout),
        retries=_int(settings, "retries", _DEFAULTS.retries),
        max_sessions=_int(settings, "max-sessions", _DEFAULTS.max_sessions),
    )
