"""What /proc says about a process we started: the fields the privilege tests check."""

from __future__ import annotations

from pathlib import Path


def status_fields(pid: int, thread: int | None = None) -> dict[str, str]:
    """/proc/PID/status (or that of one `thread` of it) as {field: value}."""
    where = f"/proc/{pid}" if thread is None else f"/proc/{pid}/task/{thread}"
    text = Path(f"{where}/status").read_text()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def threads(pid: int) -> list[int]:
    return sorted(int(task.name) for task in Path(f"/proc/{pid}/task").iterdir())


def assert_unprivileged(pid: int, uid: int) -> dict[str, str]:
    """Check that `pid` runs as `uid` (real, effective, saved and file-system) with no
    effective capability, as a server that dropped root must; its fields, for more."""
    fields = status_fields(pid)
    assert fields["Uid"].split() == [str(uid)] * 4
    assert int(fields["CapEff"], 16) == 0
    return fields
