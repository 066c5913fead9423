"""The boot log: one line per boot, fed by DHCP, DHCPv6, TFTP and HTTP events.

A network boot is one conversation spread over several protocols; the line says which
firmware(s) asked (architecture labels), which files went out and over what (TFTP or
HTTP), and how long from the first DISCOVER to the last byte.

Each boot ends with one outcome (`boot_outcome`, and `ptftpd_pxe_boots_total`):

- ``completed``: at least one file went out in full (TFTP or HTTP). A later download
  that failed does not undo it (pxelinux asking for config files it may not find).
- ``failed``: no file went out in full, and a download the client asked for failed:
  the TFTP server refused the read request before any transfer began (file not found,
  access denied, server busy), a transfer ended in error (the client sent ERROR or
  stopped answering: TFTP timeout), or an HTTP GET was cut or answered with an error
  status (4xx, 5xx). The line names the last such failure. Not failures: a PXE ROM
  ending a transfer after the OACK to learn the size (ERROR 8, it asks again: a
  transfer that began, not a refusal), and requests refused or transfers cut because
  pxed itself stopped.
- ``abandoned``: neither: the client asked DHCP (or the boot server) and then fetched
  nothing before `--boot-idle`.

What the log remembers is bounded, since any host on the link can make it learn: at
most `max_sessions` boots in progress (a new one ends the oldest early, with its line)
and `max_addresses` address-to-client entries, each forgotten `address_ttl` seconds
after it was last learned (or pushed out, oldest first, by a new one). Over DHCPv6 it
learns only from what this server answered, what names this server, and a client it
answered (see `BootTracker`), never from anyone else's exchanges with another server.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from ptftpd.dhcp6.duid import identity
from ptftpd.events import (
    Dhcp6Message,
    Event,
    Failure,
    TransferFinished,
    TransferRefused,
    TransferStarted,
)
from ptftpd.http import Served

__all__ = [
    "BootLog",
    "BootRecord",
    "BootTracker",
    "boot_outcome",
    "client_label",
    "download_failed",
]

log = logging.getLogger("ptftpd.pxe")

TransferEvent = TransferStarted | TransferFinished | TransferRefused


def client_label(duid: bytes) -> str:
    """The MAC inside an Ethernet DUID-LLT or DUID-LL, so IPv6 boots line up with IPv4
    ones in the boot log; else `duid xx:xx...`."""
    mac, _ = identity(duid)
    return mac or f"duid {duid.hex(':') or '-'}"


@dataclass(frozen=True)
class BootRecord:
    """One finished boot, as its log line says it, for `BootLog.on_boot` (metrics).

    `arch` is the first firmware's option 93 code (None: no DHCP seen or not sent);
    `outcome` is "completed", "failed" or "abandoned" (see the module docstring);
    `seconds` runs from the first DISCOVER to the last byte, None without a file."""

    mac: str
    arch: int | None
    outcome: str
    seconds: float | None


@dataclass
class _Session:
    mac: str
    started: float
    last_event: float
    stages: list[str] = field(default_factory=list)
    arch: int | None = None
    files: list[tuple[str, int, str]] = field(default_factory=list)
    last_byte: float | None = None
    # The last download that ended in error: (filename, via, why).
    failure: tuple[str, str, str] | None = None
    # What pxed decided for the machine and why (issue 22), when an inventory decides.
    decision: str | None = None


def boot_outcome(files_served: int, download_failed: bool) -> str:
    """The rule of the module docstring: a file served wins, then a failed download."""
    if files_served:
        return "completed"
    return "failed" if download_failed else "abandoned"


def download_failed(transfer: TransferFinished) -> bool:
    """Whether a finished TFTP transfer is a failed download: it failed, and neither
    as a PXE ROM's size probe (ERROR 8 after the OACK: it asks again) nor because
    pxed itself stopped it."""
    if transfer.delivered:
        return False
    return not (transfer.size_probe or transfer.kind is Failure.SHUTDOWN)


class BootLog:
    """One line per boot: MAC, architecture(s), files served, DISCOVER to last byte.

    A boot is everything one MAC does from its first DISCOVER until it has been quiet
    for `idle` seconds, so a chain (firmware -> ipxe.efi -> iPXE script) is one line.
    TFTP and HTTP know only IP addresses: DHCP REQUESTs (option 50 or ciaddr), our ACKs
    and the 4011 exchange tell which MAC an address belongs to.

    Sans-IO: every event comes with its `now` (monotonic seconds); `next_deadline()`
    says when the next boot may end, like a session's deadline, and the owner calls
    `expire(now)` then (and `flush()` on shutdown).
    """

    def __init__(
        self,
        idle: float = 30.0,
        emit: Callable[[str], None] | None = None,
        max_sessions: int = 4096,
        max_addresses: int = 8192,
        address_ttl: float = 3600.0,
    ) -> None:
        self.idle = idle
        self.emit = emit or (lambda line: log.info("%s", line))
        # Told of each boot as its line is written (pxed --metrics sets it).
        self.on_boot: Callable[[BootRecord], None] | None = None
        self.max_sessions = max_sessions
        self.max_addresses = max_addresses
        self.address_ttl = address_ttl
        self.sessions: dict[str, _Session] = {}
        # IP -> MAC (or DUID label), oldest learned first; `_learned` says when.
        self.mac_of_ip: dict[str, str] = {}
        self._learned: dict[str, float] = {}

    def _session(self, mac: str, now: float) -> _Session:
        session = self.sessions.get(mac)
        if session is None:
            while len(self.sessions) >= self.max_sessions:
                oldest = next(iter(self.sessions))
                self._finish(self.sessions.pop(oldest))
            session = _Session(mac, now, now)
            self.sessions[mac] = session
        session.last_event = now
        return session

    def discover(self, mac: str, stage: str, arch: int | None = None, *, now: float) -> None:
        session = self._session(mac, now)
        if session.arch is None:
            session.arch = arch
        if not session.stages or session.stages[-1] != stage:
            session.stages.append(stage)

    def decided(self, mac: str, decision: str) -> None:
        """The machine's decision (``boot debian (inventory machine #2)``): its line
        ends with it. Only for a boot already open (after `discover`)."""
        session = self.sessions.get(mac)
        if session is not None:
            session.decision = decision

    def address(self, mac: str, ip: IPv4Address | IPv6Address | str | None, *, now: float) -> None:
        if ip is None or str(ip) in ("0.0.0.0", "::"):
            return
        key = str(ip)
        # Re-learned: to the end of the line (the oldest entry goes first).
        self._forget(key)
        while len(self.mac_of_ip) >= self.max_addresses:
            self._forget(next(iter(self.mac_of_ip)))
        self.mac_of_ip[key] = mac
        self._learned[key] = now
        if mac in self.sessions:
            self.sessions[mac].last_event = now

    def _forget(self, ip: str) -> None:
        self.mac_of_ip.pop(ip, None)
        self._learned.pop(ip, None)

    def _session_of_ip(self, ip: str, filename: str, now: float) -> _Session:
        mac = self.mac_of_ip.get(ip)
        if mac is None:
            log.debug("download of %s by %s, which no DHCP exchange named", filename, ip)
            mac = f"ip {ip}"
        return self._session(mac, now)

    def served(self, ip: str, filename: str, nbytes: int, via: str = "tftp", *, now: float) -> None:
        """`filename` went to `ip` in full over `via` ("tftp" or "http")."""
        session = self._session_of_ip(ip, filename, now)
        session.files.append((filename, nbytes, via))
        session.last_byte = now

    def failed(self, ip: str, filename: str, why: str, via: str = "tftp", *, now: float) -> None:
        """A download of `filename` by `ip` over `via` ended in error (`why`)."""
        session = self._session_of_ip(ip, filename, now)
        session.failure = (filename, via, why)

    @staticmethod
    def outcome(session: _Session) -> str:
        return boot_outcome(len(session.files), session.failure is not None)

    @staticmethod
    def describe(session: _Session) -> str:
        """The boot's line: `boot MAC arch=STAGES: OUTCOME: what happened`, and
        `; decision: WHAT (SOURCE RULE)` when an inventory decided."""
        line = BootLog._describe(session)
        if session.decision is not None:
            return f"{line}; decision: {session.decision}"
        return line

    @staticmethod
    def _describe(session: _Session) -> str:
        stages = " -> ".join(session.stages) or "no DHCP seen"
        head = f"boot {session.mac} arch={stages}: {BootLog.outcome(session)}"
        if session.files:
            files = ", ".join(
                f"{name} over {via} ({size} bytes)" for name, size, via in session.files
            )
            assert session.last_byte is not None
            seconds = session.last_byte - session.started
            return f"{head}: served {files}; {seconds:.1f} s from DISCOVER to the last byte"
        if session.failure is not None:
            name, via, why = session.failure
            return f"{head}: {name} over {via}: {why}"
        return f"{head}: no file served"

    def next_deadline(self) -> float | None:
        """When the quietest boot reaches `idle` seconds of quiet (None: no boot open).
        A client still downloading at that moment is not quiet: `expire` then moves
        its boot on, and the next deadline is later."""
        if not self.sessions:
            return None
        return min(s.last_event for s in self.sessions.values()) + self.idle

    def expire(self, now: float, busy_ips: Collection[str] = ()) -> None:
        """Write and forget the boots that have been quiet for `idle` seconds; a client
        still downloading (its address in `busy_ips`) is not quiet."""
        busy = {self.mac_of_ip.get(ip, f"ip {ip}") for ip in busy_ips}
        for ip, learned in list(self._learned.items()):
            if now - learned < self.address_ttl:
                break  # oldest first: the rest are younger
            if ip not in busy_ips:
                self._forget(ip)
        for mac, session in list(self.sessions.items()):
            if mac in busy:
                session.last_event = now
                continue
            if now - session.last_event >= self.idle:
                del self.sessions[mac]
                self._finish(session)

    def flush(self) -> None:
        for session in self.sessions.values():
            self._finish(session)
        self.sessions.clear()

    def _finish(self, session: _Session) -> None:
        self.emit(self.describe(session))
        if self.on_boot is not None:
            seconds = None
            if session.last_byte is not None:
                seconds = session.last_byte - session.started
            record = BootRecord(session.mac, session.arch, self.outcome(session), seconds)
            self.on_boot(record)


_ANSWERED = 4096  # DHCPv6 clients remembered as answered by us


class BootTracker:
    """Tells the boot log about downloads from the TFTP and HTTP servers' typed events
    (`ptftpd.events`): a client with a TFTP transfer running is busy (its boot is not
    over), each completed download is a file served, and each failed one a failed
    download. The tracker is the driver's side of the boot log: it reads the clock
    (`clock`, monotonic) once per event and hands the log its `now`; `changed` is
    called after each event (pxed arms its boot-log timer there). `observe` hears
    every TFTP event and HTTP record first, as it came (pxed's boot timeline)."""

    def __init__(
        self,
        boot_log: BootLog,
        clock: Callable[[], float] = time.monotonic,
        changed: Callable[[], None] | None = None,
        observe: Callable[[TransferEvent | Served], None] | None = None,
    ) -> None:
        self.boot_log = boot_log
        self.clock = clock
        self.changed = changed or (lambda: None)
        self.observe = observe or (lambda event: None)
        self.busy: Counter[str] = Counter()
        # Clients (DUIDs) we answered lately, oldest first, at most `_ANSWERED`.
        self._answered: dict[bytes, None] = {}

    def started(self, event: TransferStarted) -> None:
        self.observe(event)
        self.busy[event.peer_ip] += 1

    def finished(self, transfer: TransferFinished) -> None:
        self.observe(transfer)
        self.busy[transfer.peer_ip] -= 1
        if self.busy[transfer.peer_ip] <= 0:
            del self.busy[transfer.peer_ip]
        if not transfer.is_read:
            return
        now = self.clock()
        if transfer.delivered:
            self.boot_log.served(transfer.peer_ip, transfer.filename, transfer.bytes, now=now)
        elif transfer.failure is not None and download_failed(transfer):
            self.boot_log.failed(transfer.peer_ip, transfer.filename, transfer.failure, now=now)
        self.changed()

    def refused(self, refusal: TransferRefused) -> None:
        """The TFTP server answered a read request with ERROR before any transfer
        began: a failed download (the server's `on_refused`). A refused upload or a
        malformed request is no download."""
        if not refusal.is_read or not refusal.filename:
            return
        self.observe(refusal)
        why = f"refused: {refusal.reason}"
        self.boot_log.failed(refusal.peer_ip, refusal.filename, why, now=self.clock())
        self.changed()

    def dhcp6(self, event: Event) -> None:
        """The DHCPv6 engine's messages (`Dhcp6Message`, subscribed as its events sink):
        our Reply names the client (DUID) and its address (IA_NA, or where a boot
        service answer goes), so TFTP and HTTP peers are then known. A client's Request,
        Renew or Rebind names the address it takes: learnt when it is addressed to us
        (`ours`), or comes from a client we answered (in proxy mode, EDK2 takes its
        address from the site's server after our Advertise and downloads from it).
        Anything else on the link is not ours to learn from: anyone can send it, naming
        any address (issue 19 item 2)."""
        if not isinstance(event, Dhcp6Message) or not event.duid:
            return
        if event.direction == "out":
            self._answered.pop(event.duid, None)
            if len(self._answered) >= _ANSWERED:
                del self._answered[next(iter(self._answered))]
            self._answered[event.duid] = None
            if event.type != "reply":
                return
            addresses = list(event.addresses)
            if event.peer is not None and not event.peer.is_link_local:
                addresses.append(event.peer)
        else:
            if not event.ours and event.duid not in self._answered:
                return
            if event.type not in ("request", "renew", "rebind"):
                return
            addresses = list(event.addresses)
        label = client_label(event.duid)
        now = self.clock()
        for address in addresses:
            self.boot_log.address(label, address, now=now)
        self.changed()

    def http_served(self, record: Served) -> None:
        """A complete GET (not HEAD, not an error, not a cut connection) is a file
        served; ranges count as what they sent. A GET answered with an error status, or
        cut before its end, is a failed download."""
        self.observe(record)
        if record.method != "GET":
            return
        name = record.path.lstrip("/")
        now = self.clock()
        if record.status >= 400:
            why = f"HTTP status {record.status}"
            self.boot_log.failed(record.peer, name, why, "http", now=now)
        elif not record.complete:
            self.boot_log.failed(record.peer, name, "connection cut", "http", now=now)
        elif record.status in (200, 206):
            self.boot_log.served(record.peer, name, record.bytes_sent, "http", now=now)
        self.changed()
