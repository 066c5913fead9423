"""The boot timeline: one record per boot attempt per machine, with a verdict (issue 23).

Sans-IO, like a protocol session: `Timeline.feed(event, now)` takes the typed events of
`ptftpd.events` (and the HTTP server's `Served`) with the time they happened;
`get_timer()` says when the next attempt may be declared stalled and `handle_timer(now)`
does it. No clock reads, no sockets.

An attempt belongs to a MAC: DHCP messages name it, TFTP and HTTP only know the peer's
address, which an ACK, a bound lease or a REQUEST (option 50 / ciaddr) tie to the MAC.
A DISCOVER after an attempt completed or failed starts a new attempt.

Verdicts (`state`): ``in_progress``; ``completed`` (a file went out in full; a later
failure does not undo it, as in the boot log); ``failed`` (a download failed, or the
address was NAKed or declined; `reason` says which); ``stalled`` (no step for `stall`
seconds while in progress and no transfer running; `stalled_at` names the last step).

Bounded: at most `max_attempts` attempts (oldest dropped first), `max_steps` steps per
attempt (later steps are counted in `steps_dropped`), `max_addresses` address-to-MAC
entries (oldest dropped first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ptftpd.events import (
    BootDecided,
    Dhcp6Message,
    DhcpMessage,
    Event,
    Failure,
    Lease6Event,
    LeaseEvent,
    LeaseKind,
    RouterAdvertised,
    RouterSolicited,
    TransferFinished,
    TransferRefused,
    TransferStarted,
)
from ptftpd.http import Served
from ptftpd.pxe.bootlog import client_label

__all__ = ["Attempt", "Step", "Timeline"]

IN_PROGRESS = "in_progress"
COMPLETED = "completed"
FAILED = "failed"
STALLED = "stalled"


@dataclass(slots=True)
class Step:
    time: float
    kind: str
    details: dict[str, Any]

    def view(self, offset: float = 0.0) -> dict[str, Any]:
        return {"time": self.time + offset, "kind": self.kind, **self.details}


@dataclass(slots=True)
class Attempt:
    """One boot attempt of one machine."""

    mac: str
    number: int  # this machine's attempts, counted from 1
    started: float
    last_progress: float
    steps: list[Step] = field(default_factory=list)
    steps_dropped: int = 0
    state: str = IN_PROGRESS
    reason: str | None = None
    stalled_at: str | None = None
    running: int = 0  # transfers started and not finished
    # Set when this attempt began after a completed one: (its last file, seconds from
    # that file's end to this attempt's DISCOVER).
    after: tuple[str, float] | None = None
    http_port: int | None = None

    def add(self, step: Step, max_steps: int) -> None:
        if len(self.steps) < max_steps:
            self.steps.append(step)
        else:
            self.steps_dropped += 1

    def view(self, offset: float = 0.0) -> dict[str, Any]:
        """The JSON form the API answers with (`GET /v1/machines/<mac>`); `offset` is
        added to every time (the driver's monotonic clock to wall-clock seconds)."""
        from ptftpd.pxe.diagnosis import diagnose

        return {
            "mac": self.mac,
            "attempt": self.number,
            "started": self.started + offset,
            "updated": self.last_progress + offset,
            "state": self.state,
            "reason": self.reason,
            "stalled_at": self.stalled_at,
            "diagnosis": diagnose(self),
            "steps": [s.view(offset) for s in self.steps],
            "steps_dropped": self.steps_dropped,
        }


def _rate(nbytes: int, seconds: float) -> float | None:
    return round(nbytes / seconds, 1) if seconds > 0 else None


@dataclass(eq=False, kw_only=True)
class Timeline:
    """The attempts of every machine, bounded as the module doc says."""

    stall: float = 30.0
    max_attempts: int = 4096
    max_steps: int = 256
    max_addresses: int = 8192
    http_port: int | None = None
    # Every attempt kept, oldest first (dict as an ordered set, keyed by identity).
    _attempts: dict[int, Attempt] = field(default_factory=dict, init=False, repr=False)
    # MAC -> its latest attempt; MAC -> attempts seen (bounded with _current)
    _current: dict[str, Attempt] = field(default_factory=dict, init=False, repr=False)
    _numbers: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _mac_of_ip: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    # Attempts that took a step or changed state since `take_changed` (by identity).
    _changed: dict[int, Attempt] = field(default_factory=dict, init=False, repr=False)

    # -- reading -----------------------------------------------------------------

    def attempts(self, mac: str | None = None) -> list[Attempt]:
        """Attempts kept, newest first; only `mac`'s when given."""
        found = reversed(self._attempts.values())
        return [a for a in found if mac is None or a.mac == mac]

    def machine(self, mac: str) -> list[dict[str, Any]]:
        return [a.view() for a in self.attempts(mac)]

    def current(self, mac: str) -> Attempt | None:
        """`mac`'s latest attempt, if kept."""
        return self._current.get(mac)

    def __len__(self) -> int:
        return len(self._attempts)

    def bound(self, max_attempts: int) -> None:
        """Keep at most `max_attempts` from now on (a reload): the oldest go at once."""
        self.max_attempts = max_attempts
        while len(self._attempts) > max_attempts:
            self._drop(next(iter(self._attempts.values())))

    def take_changed(self) -> list[Attempt]:
        """The attempts kept that took a step or changed state since the last call,
        in the order they first changed (what a live view sends again)."""
        changed = list(self._changed.values())
        self._changed.clear()
        return changed

    # -- timers --------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When the quietest attempt in progress becomes stalled (None: none can)."""
        times = [a.last_progress + self.stall for a in self._current.values() if self._can_stall(a)]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        for attempt in self._current.values():
            if self._can_stall(attempt) and now - attempt.last_progress >= self.stall:
                attempt.state = STALLED
                attempt.stalled_at = attempt.steps[-1].kind if attempt.steps else None
                self._changed[id(attempt)] = attempt

    @staticmethod
    def _can_stall(attempt: Attempt) -> bool:
        return attempt.state == IN_PROGRESS and attempt.running == 0

    # -- feeding -------------------------------------------------------------------

    def feed(self, event: Event | Served, now: float) -> None:
        if isinstance(event, DhcpMessage):
            self._dhcp(event, now)
        elif isinstance(event, LeaseEvent):
            self._learn(str(event.address), event.mac)
            attempt = self._current.get(event.mac)
            if attempt is not None:
                step = Step(now, f"lease.{event.kind.value}", {"address": str(event.address)})
                self._step(attempt, step, now)
                if event.kind is LeaseKind.DECLINED:
                    self._fail(attempt, f"address {event.address} declined")
        elif isinstance(event, TransferStarted):
            attempt = self._of_ip(event.peer_ip, now)
            attempt.running += 1
            details: dict[str, Any] = {"file": event.filename, "options": dict(event.options)}
            self._step(attempt, Step(now, "tftp.request", details), now)
        elif isinstance(event, TransferFinished):
            self._finished(event, now)
        elif isinstance(event, TransferRefused):
            attempt = self._of_ip(event.peer_ip, now)
            details = {
                "file": event.filename,
                "error": event.reason,
                "failure": event.kind.value,
                "code": event.code,
            }
            self._step(attempt, Step(now, "tftp.refused", details), now)
            if event.kind is not Failure.SHUTDOWN:
                self._fail(attempt, f"{event.filename} over tftp: refused: {event.reason}")
        elif isinstance(event, Served):
            self._served(event, now)
        elif isinstance(event, Dhcp6Message):
            self._dhcp6(event, now)
        elif isinstance(event, RouterSolicited):
            if event.mac is not None:
                self._learn(str(event.peer), event.mac)
                # Part of the machine's boot so far (iPXE asks for a router after
                # it was loaded): a new attempt only for a machine not seen yet.
                attempt = self._current.get(event.mac)
                if attempt is None:
                    attempt = self._new_attempt(event.mac, None, now)
                self._step(attempt, Step(now, "ra.solicit", {"peer": str(event.peer)}), now)
        elif isinstance(event, RouterAdvertised):
            for mac in event.answers:
                answered = self._current.get(mac)
                if answered is not None:
                    self._step(answered, Step(now, "ra.advert", {}), now)
        elif isinstance(event, BootDecided):
            self._decided(event, now)
        elif isinstance(event, Lease6Event):
            mac = client_label(event.duid)
            self._learn(str(event.address), mac)
            attempt = self._current.get(mac)
            if attempt is not None:
                details6 = {"address": str(event.address), "iaid": event.iaid}
                self._step(attempt, Step(now, f"lease6.{event.kind.value}", details6), now)
                if event.kind is LeaseKind.DECLINED:
                    self._fail(attempt, f"address {event.address} declined")

    def _dhcp(self, event: DhcpMessage, now: float) -> None:
        current = self._current.get(event.mac)
        starts = event.direction == "in" and event.type in ("discover", "bootrequest")
        if starts and (current is None or current.state != IN_PROGRESS):
            current = self._new_attempt(event.mac, current, now)
        if current is None:
            current = self._new_attempt(event.mac, None, now)
        details: dict[str, Any] = {"direction": event.direction}
        if event.address is not None:
            details["address"] = str(event.address)
        if event.vendor_class is not None:
            details["vendor_class"] = event.vendor_class
        if event.port is not None:
            details["port"] = event.port
        self._step(current, Step(now, f"dhcp.{event.type}", details), now)
        if event.address is not None and (
            (event.direction == "out" and event.type in ("ack", "bootreply"))
            or (event.direction == "in" and event.type == "request")
        ):
            self._learn(str(event.address), event.mac)
        if event.direction == "out" and event.type == "nak":
            self._fail(current, "address NAKed")
        elif event.direction == "in" and event.type == "decline":
            self._fail(current, f"address {event.address or '-'} declined")

    def _dhcp6(self, event: Dhcp6Message, now: float) -> None:
        """A DHCPv6 message: the machine is its DUID's MAC (DUID-LL/LLT, as firmware
        sends) or `duid ...`; a Solicit after an attempt ended starts a new one (the
        IPv4 and IPv6 steps of one firmware's boot are one attempt: the same MAC)."""
        if not event.duid:
            return
        mac = client_label(event.duid)
        current = self._current.get(mac)
        starts = event.direction == "in" and event.type == "solicit"
        if current is None or (starts and current.state != IN_PROGRESS):
            current = self._new_attempt(mac, current, now)
        details: dict[str, Any] = {"direction": event.direction}
        if event.addresses:
            details["addresses"] = [str(a) for a in event.addresses]
        if event.peer is not None:
            details["peer"] = str(event.peer)
        if event.direction == "in":
            details["ours"] = event.ours
        # The addresses it gets, and a decline, come as `Lease6Event`s.
        self._step(current, Step(now, f"dhcp6.{event.type}", details), now)

    def _finished(self, event: TransferFinished, now: float) -> None:
        attempt = self._of_ip(event.peer_ip, now)
        attempt.running = max(0, attempt.running - 1)
        details: dict[str, Any] = {
            "file": event.filename,
            "bytes": event.bytes,
            "seconds": event.seconds,
            "rate": _rate(event.bytes, event.seconds),
            "retransmissions": event.retransmissions,
        }
        if event.blksize is not None:
            details["blksize"] = event.blksize
        if event.delivered:
            if event.failure is not None:  # only the final ACK missing
                details.update(error=event.failure, failure=Failure.FINAL_ACK_LOST.value)
            self._step(attempt, Step(now, "tftp.done", details), now)
            self._complete(attempt)
            return
        details.update(
            error=event.failure,
            failure=None if event.kind is None else event.kind.value,
            code=event.code,
            last_block=event.last_block,
        )
        if event.size_probe:
            self._step(attempt, Step(now, "tftp.size_probe", details), now)
            return
        self._step(attempt, Step(now, "tftp.failed", details), now)
        if event.kind is not Failure.SHUTDOWN:
            self._fail(attempt, f"{event.filename} over tftp: {event.failure}")

    def _decided(self, event: BootDecided, now: float) -> None:
        """pxed's decision for the machine: one `decision` step per attempt (the
        proxyDHCP offer and the 4011 ACK decide again; the same answer adds nothing)."""
        attempt = self._current.get(event.mac)
        if attempt is None:
            attempt = self._new_attempt(event.mac, None, now)
        details: dict[str, Any] = {
            "decision": event.kind,
            "profile": event.profile,
            "source": event.source,
            "rule": event.rule,
        }
        if any(s.kind == "decision" and s.details == details for s in attempt.steps):
            return
        self._step(attempt, Step(now, "decision", details), now)

    def _served(self, event: Served, now: float) -> None:
        attempt = self._of_ip(event.peer, now)
        name = event.path.lstrip("/")
        details: dict[str, Any] = {
            "method": event.method,
            "file": name,
            "status": event.status,
            "bytes": event.bytes_sent,
            "seconds": event.seconds,
            "rate": _rate(event.bytes_sent, event.seconds),
            "complete": event.complete,
        }
        self._step(attempt, Step(now, "http.request", details), now)
        if event.method != "GET":
            return
        if event.status >= 400:
            self._fail(attempt, f"{name} over http: HTTP status {event.status}")
        elif not event.complete:
            self._fail(attempt, f"{name} over http: connection cut")
        elif event.status in (200, 206):
            self._complete(attempt)

    # -- helpers -------------------------------------------------------------------

    def _step(self, attempt: Attempt, step: Step, now: float) -> None:
        attempt.add(step, self.max_steps)
        attempt.last_progress = now
        self._changed[id(attempt)] = attempt
        if attempt.state == STALLED:  # it moved again
            attempt.state, attempt.stalled_at = IN_PROGRESS, None

    @staticmethod
    def _complete(attempt: Attempt) -> None:
        attempt.state, attempt.reason = COMPLETED, None

    @staticmethod
    def _fail(attempt: Attempt, reason: str) -> None:
        if attempt.state != COMPLETED:  # a file served wins (as in the boot log)
            attempt.state, attempt.reason = FAILED, reason

    def _new_attempt(self, mac: str, previous: Attempt | None, now: float) -> Attempt:
        while len(self._attempts) >= self.max_attempts:
            self._drop(next(iter(self._attempts.values())))
        number = self._numbers.get(mac, 0) + 1
        attempt = Attempt(mac, number, now, now, http_port=self.http_port)
        if previous is not None and previous.state == COMPLETED:
            done = [
                s
                for s in previous.steps
                if s.kind == "tftp.done"
                or (s.kind == "http.request" and s.details.get("status") in (200, 206))
            ]
            if done:
                attempt.after = (str(done[-1].details["file"]), now - done[-1].time)
        self._attempts[id(attempt)] = attempt
        self._current[mac] = attempt
        self._numbers[mac] = number
        return attempt

    def _drop(self, attempt: Attempt) -> None:
        del self._attempts[id(attempt)]
        self._changed.pop(id(attempt), None)
        if self._current.get(attempt.mac) is attempt:
            del self._current[attempt.mac]
            self._numbers.pop(attempt.mac, None)

    def _learn(self, ip: str, mac: str) -> None:
        self._mac_of_ip.pop(ip, None)
        while len(self._mac_of_ip) >= self.max_addresses:
            del self._mac_of_ip[next(iter(self._mac_of_ip))]
        self._mac_of_ip[ip] = mac

    def _of_ip(self, ip: str, now: float) -> Attempt:
        mac = self._mac_of_ip.get(ip, f"ip {ip}")
        attempt = self._current.get(mac)
        if attempt is None:
            attempt = self._new_attempt(mac, None, now)
        return attempt
