"""Sums up the boot times the firmware tests recorded (fwlab.record_boot_time)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fwlab import boot_times_file


def pytest_sessionstart(session: pytest.Session) -> None:
    """A file of this session's own unless PTFTPD_BOOT_TIMES names one (kept, appended)."""
    if "PTFTPD_BOOT_TIMES" not in os.environ:
        os.environ["PTFTPD_BOOT_TIMES"] = f"/tmp/ptftpd-boot-times-{os.getpid()}.jsonl"
        boot_times_file().unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    path = boot_times_file()
    if not path.exists():
        return
    terminalreporter.section(f"firmware boot times (also in {path})")
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        terminalreporter.write_line(f"{entry.pop('test')}: {entry.pop('seconds')} s {entry or ''}")
