"""Typed events: what the protocol cores report, for metrics, the boot log and logging.

Sessions and engines say what happened as values, never as text to be parsed again:

- TFTP (`ptftpd.tftp.server`): `TransferStarted`, `TransferFinished` (with a `Failure`
  kind and the TFTP error code when it failed), `TransferRefused` (a request answered
  with ERROR before any transfer began, with the reason's kind and code);
- DHCPv4 (`ptftpd.dhcp.engine`): `DhcpMessage` for each message in and out, with its
  type, and `LeaseEvent` for each lease offered, bound, released or declined, as the
  engine decided it;
- DHCPv6 (`ptftpd.dhcp6.engine`): `Dhcp6Message` for each client message in (read
  through its relays) and each reply out, with its type, the client's DUID and the
  IA_NA addresses it names, and `Lease6Event` for each binding offered, bound (or
  renewed), released or declined;
- lease expiry (v4 and v6): `LeaseExpiry` watches the bound events on their way to
  the subscribers and emits `LeaseEvent`/`Lease6Event` of kind EXPIRED when a
  binding's end passes without a renewal, release or decline; its driver arms one
  timer at `next_deadline()` (no polling);
- HTTP (`ptftpd.http`): `Served`, one per answered request.

A producer takes an `EventSink` (any callable of one event; `ignore` by default) and
calls it synchronously, in the order things happened. Subscribers are plain functions:
`ptftpd.service.metrics.record_event` counts, `ptftpd.pxe.bootlog.BootTracker` builds
the boot line. `fan_out` gives one producer several subscribers.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Literal, TypeVar

__all__ = [
    "BalanceChanged",
    "Dhcp6Message",
    "Dhcp6Type",
    "DhcpMessage",
    "Event",
    "EventSink",
    "Failure",
    "Lease6Event",
    "LeaseEvent",
    "LeaseExpiry",
    "LeaseKind",
    "RouterAdvertised",
    "RouterSolicited",
    "TransferFinished",
    "TransferRefused",
    "TransferStarted",
    "fan_out",
    "ignore",
]


class Failure(enum.Enum):
    """Why a TFTP transfer ended without every byte, or why a request was refused.

    The values are the metrics' `reason` labels."""

    NOT_FOUND = "not_found"
    ACCESS_DENIED = "access_denied"
    EXISTS = "exists"
    DISK_FULL = "disk_full"
    TIMEOUT = "timeout"
    UNANSWERED = "unanswered"  # nothing came back after our first packet (lost or forged)
    # every block went, all before the final window acknowledged; its ACK never came
    FINAL_ACK_LOST = "final_ack_lost"
    PEER_ERROR = "peer_error"  # the peer sent ERROR (its `code` says which)
    OPTION_REFUSED = "option_refused"
    ILLEGAL_OPERATION = "illegal_operation"
    BUSY = "busy"  # every session slot taken
    MAP_FILE = "map_file"  # a request refused by a --map-file rule
    READ_ONLY = "read_only"  # an upload refused: --read-only / --no-create
    SHUTDOWN = "shutdown"  # we stopped: cancelled, shutting down, worker gone
    OTHER = "other"


# TFTP error code 8: a PXE ROM ends a transfer after the OACK to learn the size.
OPTION_REFUSED_CODE = 8


@dataclass(frozen=True, slots=True)
class TransferStarted:
    peer_ip: str
    filename: str
    is_read: bool = True
    # The request's options as asked (name, value), e.g. (("blksize", "1468"), ("tsize", "0")).
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class TransferFinished:
    """One transfer's end. `failure` is the log line's text (None: every byte went);
    `kind` and `code` say the same as values (`code`: the TFTP error code sent or
    received, None for a timeout)."""

    peer_ip: str
    filename: str
    is_read: bool
    bytes: int
    seconds: float
    failure: str | None
    kind: Failure | None = None
    code: int | None = None
    # Where a read stopped: the last block sent, how often it was sent again in all,
    # and the block size agreed (None: not told).
    last_block: int | None = None
    retransmissions: int = 0
    blksize: int | None = None

    @property
    def delivered(self) -> bool:
        """Every byte reached the peer as far as anyone can tell: no failure, or only
        the final ACK missing (a boot goes on with the file: the boot log and the
        timeline count it served)."""
        return self.failure is None or self.kind is Failure.FINAL_ACK_LOST

    @property
    def size_probe(self) -> bool:
        """The peer ended after the OACK with ERROR 8: a PXE ROM learning the size
        (it asks again), not a failed download."""
        return self.kind is Failure.PEER_ERROR and self.code == OPTION_REFUSED_CODE


@dataclass(frozen=True, slots=True)
class TransferRefused:
    """A request (read or write) answered with ERROR `code` before any transfer began;
    `kind` says why (not found, access denied or outside ROOT, map-file rule, read-only,
    exists, busy, malformed = illegal operation...). A malformed request has no
    `filename` ("")."""

    peer_ip: str
    filename: str
    reason: str
    kind: Failure = Failure.OTHER
    code: int = 0
    is_read: bool = True


DhcpType = Literal[
    "discover",
    "offer",
    "request",
    "decline",
    "ack",
    "nak",
    "release",
    "inform",
    "bootrequest",
    "bootreply",
    "other",
]


@dataclass(frozen=True, slots=True)
class DhcpMessage:
    """A DHCP/BOOTP message decoded (in) or sent (out) by the engine.

    `address`: for a message in, the address it asks for (option 50, else ciaddr);
    for a reply, yiaddr (None when 0.0.0.0)."""

    direction: Literal["in", "out"]
    type: DhcpType
    mac: str
    address: IPv4Address | None = None
    # Option 60 of a message in (e.g. `HTTPClient:Arch:00016`), when the producer says it.
    vendor_class: str | None = None
    # The server's UDP port the message came to or went from: 67 for DHCP and proxyDHCP,
    # the boot server's 4011 for a PXE boot-server exchange (None: not told).
    port: int | None = None


class LeaseKind(enum.Enum):
    OFFERED = "offered"
    BOUND = "bound"
    RELEASED = "released"
    DECLINED = "declined"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class LeaseEvent:
    kind: LeaseKind
    address: IPv4Address
    mac: str
    expires: float | None = None


@dataclass(frozen=True, slots=True)
class BalanceChanged:
    """Servers sharing a lease database: this server's share of the clients changed
    (RFC 3074 buckets it answers, the live servers), or its count of broadcasts left
    to the other servers grew (`left`, since the server started)."""

    buckets: int
    servers: tuple[str, ...]
    left: int = 0


Dhcp6Type = Literal[
    "solicit",
    "advertise",
    "request",
    "confirm",
    "renew",
    "rebind",
    "reply",
    "release",
    "decline",
    "reconfigure",
    "information-request",
    "other",
]


@dataclass(frozen=True, slots=True)
class Dhcp6Message:
    """A DHCPv6 client/server message decoded (in) or sent (out) by the engine, read
    through any relay layers.

    `duid`: the client's DUID (b"" when the message has none); `addresses`: every
    address inside its IA_NAs (in: what the client names; out: what the reply gives
    or takes back); `ours`: in, the message names this server's DUID as its server
    identifier (always True out); `peer`: the client's own address when the message
    came from it or goes to it directly (None through a relay); `server_duid`: the
    server identifier the message carries (None when it has none)."""

    direction: Literal["in", "out"]
    type: Dhcp6Type
    duid: bytes
    addresses: tuple[IPv6Address, ...] = ()
    ours: bool = False
    peer: IPv6Address | None = None
    server_duid: bytes | None = None


@dataclass(frozen=True, slots=True)
class Lease6Event:
    """A DHCPv6 binding (IA_NA address) offered, bound or renewed (BOUND), released,
    declined, or past its end (EXPIRED)."""

    kind: LeaseKind
    address: IPv6Address
    duid: bytes
    iaid: int
    expires: float | None = None


@dataclass(frozen=True, slots=True)
class RouterSolicited:
    """A router solicitation heard by the router advertisement sender (pxed --ipv6):
    `peer` its source address, `mac` from its source link-layer address option (None
    when it has none, as before the host has an address)."""

    peer: IPv6Address
    mac: str | None = None


@dataclass(frozen=True, slots=True)
class RouterAdvertised:
    """A router advertisement sent; `answers` the MACs of the solicitations it answers
    (empty for a periodic one)."""

    answers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BootDecided:
    """pxed's per-machine decision for `mac` (issue 22, `ptftpd.pxe.decision`): `kind`
    (boot, local, ignore), `profile` (None: the firmware table, or no recipe), `source`
    (where it came from: inventory, api, cache, default, local-state) and `rule`."""

    mac: str
    kind: str
    source: str
    profile: str | None = None
    rule: str = ""


Event = (
    TransferStarted
    | TransferFinished
    | TransferRefused
    | DhcpMessage
    | LeaseEvent
    | Dhcp6Message
    | Lease6Event
    | BalanceChanged
    | RouterSolicited
    | RouterAdvertised
    | BootDecided
)
EventSink = Callable[[Event], None]
E = TypeVar("E", bound=Event)


def ignore(event: Event) -> None:
    """The default sink: nobody listens."""


def fan_out(*sinks: Callable[[E], None]) -> Callable[[E], None]:
    """One sink that hands each event to every one of `sinks`, in order."""
    chosen = [s for s in sinks if s is not ignore]
    if not chosen:
        return ignore
    if len(chosen) == 1:
        return chosen[0]

    def sink(event: E) -> None:
        for each in chosen:
            each(event)

    return sink


_Leases = LeaseEvent | Lease6Event


class LeaseExpiry:
    """The lease core's "lease expired" event, deadline-driven. Sans-IO.

    `sink` wraps `forward` (the subscribers): every event passes through unchanged,
    and the lease events teach the watch which bindings are live: a BOUND event with
    a finite end (v4 `LeaseEvent`, v6 `Lease6Event`) starts or moves that address's
    deadline, RELEASED or DECLINED of the address ends it (an OFFERED one does not: a
    bound client is offered its own address again). `expire(now)`
    emits an EXPIRED event, with the binding's client and end, for each binding whose
    end has passed, and `next_deadline()` says when the next one is due: the driver
    arms one timer there (wall-clock seconds, as the engines' `now`).

    It knows what this server decided (with a shared PostgreSQL store another server
    may renew a binding later; its own events say so there). Memory: one entry per
    live binding (bounded by the pool or the binding limits) and a heap the
    renewals may grow to at most twice that before it is rebuilt."""

    def __init__(self, forward: EventSink) -> None:
        self.forward = forward
        self._live: dict[IPv4Address | IPv6Address, _Leases] = {}
        self._heap: list[tuple[float, int, IPv4Address | IPv6Address]] = []
        self._n = 0  # ties broken by arrival, so v4 and v6 addresses never compare

    def sink(self, event: Event) -> None:
        if isinstance(event, (LeaseEvent, Lease6Event)) and event.kind is not LeaseKind.EXPIRED:
            self._note(event)
        self.forward(event)

    def _note(self, event: _Leases) -> None:
        address = event.address
        if event.kind is LeaseKind.BOUND and event.expires is not None:
            if event.expires == float("inf"):
                self._live.pop(address, None)
                return
            self._live[address] = event
            self._n += 1
            if len(self._heap) > 2 * len(self._live) + 64:
                live = enumerate(self._live.items())
                self._heap = [(e.expires or 0.0, self._n + i, a) for i, (a, e) in live]
                self._n += len(self._heap)
                heapq.heapify(self._heap)
            else:
                heapq.heappush(self._heap, (event.expires, self._n, address))
        elif event.kind in (LeaseKind.RELEASED, LeaseKind.DECLINED):
            self._live.pop(address, None)

    def next_deadline(self) -> float | None:
        """When the next binding ends (None: none is live)."""
        while self._heap:
            expires, _, address = self._heap[0]
            live = self._live.get(address)
            if live is not None and live.expires == expires:
                return expires
            heapq.heappop(self._heap)  # renewed, released or declined since
        return None

    def expire(self, now: float) -> None:
        """Emit EXPIRED for every binding whose end is `now` or before."""
        while True:
            deadline = self.next_deadline()
            if deadline is None or deadline > now:
                return
            _, _, address = heapq.heappop(self._heap)
            live = self._live.pop(address)
            if isinstance(live, LeaseEvent):
                self.forward(LeaseEvent(LeaseKind.EXPIRED, live.address, live.mac, live.expires))
            else:
                self.forward(
                    Lease6Event(LeaseKind.EXPIRED, live.address, live.duid, live.iaid, live.expires)
                )
