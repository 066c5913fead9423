"""Sums up the boot times the firmware tests recorded (fwlab.record_boot_time)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fwlab import BOOT_TIMES


def pytest_sessionstart(session: pytest.Session) -> None:
    BOOT_TIMES.unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not BOOT_TIMES.exists():
        return
    terminalreporter.section("firmware boot times")
    for line in BOOT_TIMES.read_text().splitlines():
        entry = json.loads(line)
        terminalreporter.write_line(f"{entry.pop('test')}: {entry.pop('seconds')} s {entry or ''}")
