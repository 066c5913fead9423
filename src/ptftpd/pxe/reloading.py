"""What a SIGHUP may change in a running pxed, and the one "reloaded:" line that says
what now applies and what waits for a restart (the reload rule every server follows)."""

from __future__ import annotations

import dataclasses

from ptftpd.dhcp.server_settings import keep_restart_only
from ptftpd.pxe.config import PxeConfig

# Settings bound or built once at start-up (name in the reload line: PxeConfig field).
_KEPT_PXE = {
    "proxy": "proxy",
    "tftp-port": "tftp_port",
    "boot server port": "boot_server_port",
    "http-port": "http_port",
    "http-max-connections": "http_max_connections",
    "http-rate-limit": "http_rate_limit",
    "http-total-rate-limit": "http_total_rate_limit",
    "ipv6": "ipv6",
    "ra": "ra",
    "api": "api",
}


def kept_settings(old: PxeConfig, new: PxeConfig) -> tuple[PxeConfig, list[str]]:
    """`new` with every setting that cannot change live put back to `old`'s, and the
    names of those that `new` wanted changed."""
    changed = [name for name, attr in _KEPT_PXE.items() if _differs(old, new, attr)]
    dhcp, dhcp_changed = keep_restart_only(old.dhcp, new.dhcp)
    changed += dhcp_changed
    if new.tftp.root != old.tftp.root:
        changed.append("root")
    tftp = dataclasses.replace(new.tftp, root=old.tftp.root, read_only=old.tftp.read_only)
    kept = dataclasses.replace(
        new, dhcp=dhcp, tftp=tftp, **{attr: getattr(old, attr) for attr in _KEPT_PXE.values()}
    )
    return kept, changed


def _differs(old: object, new: object, attr: str) -> bool:
    return bool(getattr(old, attr) != getattr(new, attr))


def reload_summary(config: PxeConfig, kept: list[str], dhcp: bool) -> str:
    """The reload line: what now applies, and what a restart would change."""
    parts = []
    if dhcp:
        hosts = len(config.dhcp.static_hosts)
        parts.append(f"{hosts} static host(s), lease time {config.dhcp.lease_time} s")
    parts.append("boot files " + ", ".join(f"{k}={v}" for k, v in config.files.configured()))
    parts.append(f"TFTP max sessions {config.tftp.max_sessions}")
    if kept:
        parts.append(f"kept until a restart: {', '.join(kept)}")
    return "; ".join(parts)
