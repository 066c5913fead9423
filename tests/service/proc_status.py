"""What /proc says about a process we started: the fields the privilege tests check."""

from __future__ import annotations

from pathlib import Path


def status_fields(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}
