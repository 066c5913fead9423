"""The boot outcome rule (ptftpd.pxe.bootlog), sans-IO with a fake clock: completed when
a file went out in full, failed when none did and a download ended in error, else
abandoned; the line says which, and `on_boot` (metrics) hears the same. Transfers end
as typed events (`ptftpd.events`): their failure kind and TFTP code decide, never
their text. The boot log says when the next boot may end (`next_deadline`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptftpd.events import Failure, TransferRefused, TransferStarted
from ptftpd.http import Served
from ptftpd.pxe.bootlog import (
    BootLog,
    BootRecord,
    BootTracker,
    boot_outcome,
    download_failed,
)
from ptftpd.tftp.server import FinishedTransfer

MAC = "52:54:00:12:34:56"
IP = "10.78.0.20"
TIMED_OUT = f"transfer with {IP}:2070 timed out after 5 retries (6.2 s)"
Kind = tuple[Failure, int | None]
TIMEOUT: Kind = (Failure.TIMEOUT, None)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Boot:
    """A boot log with a fake clock, a tracker, and what it wrote."""

    def __init__(self, idle: float = 10.0) -> None:
        self.clock = Clock()
        self.lines: list[str] = []
        self.records: list[BootRecord] = []
        self.log = BootLog(idle=idle, emit=self.lines.append)
        self.log.on_boot = self.records.append
        self.tracker = BootTracker(self.log, self.clock)
        self.log.discover(MAC, "BIOS", 0, now=self.clock.now)
        self.log.address(MAC, IP, now=self.clock.now)

    def transfer(
        self, name: str, failure: str | None, seconds: float = 1.0, kind: Kind = TIMEOUT
    ) -> None:
        self.tracker.started(TransferStarted(IP, name))
        self.clock.now += seconds
        self.log.expire(self.clock.now, list(self.tracker.busy))  # busy: never the end
        size = 0 if failure else 1234
        failed, code = (None, None) if failure is None else kind
        done = FinishedTransfer(IP, name, True, size, seconds, failure, failed, code)
        self.tracker.finished(done)

    def end(self) -> list[str]:
        """Quiet for exactly the idle time: the boot's line is written, at the
        deadline the log gave."""
        deadline = self.log.next_deadline()
        assert deadline == self.clock.now + self.log.idle
        self.clock.now += self.log.idle - 0.001
        self.log.expire(self.clock.now, list(self.tracker.busy))
        assert self.lines == [], "written before --boot-idle of quiet"
        self.clock.now += 0.001
        self.log.expire(self.clock.now, list(self.tracker.busy))
        assert self.log.next_deadline() is None
        return self.lines


@pytest.mark.parametrize(
    ("served", "failed", "outcome"),
    [(0, False, "abandoned"), (0, True, "failed"), (1, False, "completed"), (2, True, "completed")],
)
def test_the_rule(served: int, failed: bool, outcome: str) -> None:
    assert boot_outcome(served, failed) == outcome


def test_a_timed_out_boot_file_is_a_failed_boot() -> None:
    boot = Boot()
    boot.transfer("pxelinux.0", TIMED_OUT, seconds=30.0)  # longer than idle: still busy
    assert boot.end() == [
        f"boot {MAC} arch=BIOS: failed: pxelinux.0 over tftp: {TIMED_OUT}",
    ]
    assert boot.records == [BootRecord(MAC, 0, "failed", None)]
    assert boot.log.sessions == {}


def test_a_file_whose_final_ack_never_came_is_served() -> None:
    """Under loss the client's final ACK can vanish (it moved on to the next file):
    every block went, so the boot log counts the file served, never a failed boot."""
    boot = Boot()
    lost = f"transfer with {IP}:2070: every block sent, the final ACK never came (5 retries, 7.3 s)"
    boot.transfer("pxelinux.0", lost, kind=(Failure.FINAL_ACK_LOST, None))
    boot.transfer("ldlinux.c32", None)
    [line] = boot.end()
    assert ": completed: served pxelinux.0 over tftp" in line and "ldlinux.c32" in line, line
    assert boot.records == [BootRecord(MAC, 0, "completed", 2.0)]


def test_the_peer_s_error_fails_and_the_last_failure_is_named() -> None:
    boot = Boot()
    boot.transfer("pxelinux.0", TIMED_OUT)
    peer_error = "server error 0 (not defined): out of memory"
    boot.transfer("ldlinux.c32", peer_error, kind=(Failure.PEER_ERROR, 0))
    [line] = boot.end()
    assert line.endswith(f": failed: ldlinux.c32 over tftp: {peer_error}")
    assert [r.outcome for r in boot.records] == ["failed"]


def test_a_refused_request_is_a_failed_download() -> None:
    """The TFTP server answered ERROR before any transfer began (`on_refused`)."""
    boot = Boot()
    boot.tracker.refused(TransferRefused(IP, "pxelinux.0", "file not found", Failure.NOT_FOUND, 1))
    [line] = boot.end()
    assert line.endswith(": failed: pxelinux.0 over tftp: refused: file not found"), line
    assert [r.outcome for r in boot.records] == ["failed"]


def test_a_size_probe_then_a_refusal_is_still_failed_and_a_file_served_wins() -> None:
    """A ROM's size probe (ERROR 8 after the OACK) is a transfer, not a refusal: alone
    it fails nothing; the refusal after it does; a file served after both wins."""
    boot = Boot()
    probe = (Failure.PEER_ERROR, 8)
    boot.transfer("pxelinux.0", "server error 8 (option refused): tsize", kind=probe)
    cfg = "pxelinux.cfg/01-52-54-00-12-34-56"
    boot.tracker.refused(TransferRefused(IP, cfg, "file not found", Failure.NOT_FOUND, 1))
    boot.transfer("pxelinux.0", None)
    [line] = boot.end()
    assert ": completed: " in line, line
    assert [r.outcome for r in boot.records] == ["completed"]


def test_a_file_served_wins_over_a_failure_before_or_after_it() -> None:
    boot = Boot()
    boot.transfer("pxelinux.0", TIMED_OUT)
    boot.transfer("pxelinux.0", None, seconds=2.0)
    boot.transfer("pxelinux.cfg/default", TIMED_OUT)
    [line] = boot.end()
    assert line == (
        f"boot {MAC} arch=BIOS: completed: served pxelinux.0 over tftp (1234 bytes); "
        "3.0 s from DISCOVER to the last byte"
    )
    assert boot.records == [BootRecord(MAC, 0, "completed", 3.0)]


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        # a ROM's size probe: it asks again
        ("server error 8 (option refused): tsize", (Failure.PEER_ERROR, 8)),
        ("transfer cancelled", (Failure.SHUTDOWN, 0)),  # pxed stopping, not the client
        ("server shutting down", (Failure.SHUTDOWN, None)),
        # the text no longer decides: the same words with a real failure's kind fail
        ("any text", (Failure.SHUTDOWN, None)),
    ],
)
def test_not_every_failed_transfer_is_a_failed_boot(failure: str, kind: Kind) -> None:
    done = FinishedTransfer(IP, "pxelinux.0", True, 0, 1.0, failure, *kind)
    assert not download_failed(done)
    boot = Boot()
    boot.transfer("pxelinux.0", failure, kind=kind)
    assert boot.end() == [f"boot {MAC} arch=BIOS: abandoned: no file served"]
    assert [r.outcome for r in boot.records] == ["abandoned"]


@pytest.mark.parametrize(
    "kind",
    [(Failure.PEER_ERROR, 0), (Failure.PEER_ERROR, 2), (Failure.NOT_FOUND, 1), TIMEOUT],
)
def test_a_size_probe_s_text_with_a_failure_s_kind_fails(kind: Kind) -> None:
    """What decides is the kind and code: text that reads like a size probe with any
    other code or kind is a failed download."""
    boot = Boot()
    boot.transfer("pxelinux.0", "server error 8 (option refused): tsize", kind=kind)
    [line] = boot.end()
    assert ": failed: pxelinux.0 over tftp: server error 8" in line, line


def test_dhcp_alone_is_abandoned() -> None:
    boot = Boot()
    assert boot.end() == [f"boot {MAC} arch=BIOS: abandoned: no file served"]
    assert boot.records == [BootRecord(MAC, 0, "abandoned", None)]


def test_an_upload_never_decides_a_boot() -> None:
    boot = Boot()
    boot.tracker.started(TransferStarted(IP, "log.txt", is_read=False))
    boot.tracker.finished(
        FinishedTransfer(IP, "log.txt", False, 0, 1.0, TIMED_OUT, Failure.TIMEOUT)
    )
    assert boot.end() == [f"boot {MAC} arch=BIOS: abandoned: no file served"]
    assert [r.outcome for r in boot.records] == ["abandoned"]


def served(status: int, complete: bool, sent: int) -> Served:
    return Served(IP, "GET", "/ipxe.efi", status, sent, 0.5, complete, Path("/srv/ipxe.efi"))


@pytest.mark.parametrize(
    ("record", "line_end", "outcome"),
    [
        (served(404, True, 0), "failed: ipxe.efi over http: HTTP status 404", "failed"),
        (served(200, False, 4096), "failed: ipxe.efi over http: connection cut", "failed"),
        (served(200, True, 8192), "completed: served ipxe.efi over http (8192 bytes); 0.0 s from "
         "DISCOVER to the last byte", "completed"),
    ],
)  # fmt: skip
def test_http_downloads(record: Served, line_end: str, outcome: str) -> None:
    boot = Boot()
    boot.tracker.http_served(record)
    [line] = boot.end()
    assert line == f"boot {MAC} arch=BIOS: {line_end}"
    assert [r.outcome for r in boot.records] == [outcome]


def test_flush_writes_the_outcome_too() -> None:
    boot = Boot()
    boot.transfer("pxelinux.0", TIMED_OUT)
    boot.log.flush()
    assert boot.lines == [f"boot {MAC} arch=BIOS: failed: pxelinux.0 over tftp: {TIMED_OUT}"]
    assert [r.outcome for r in boot.records] == ["failed"]
