"""Typed events: what the protocol cores report, for metrics, the boot log and logging.

Sessions and engines say what happened as values, never as text to be parsed again:

- TFTP (`ptftpd.tftp.server`): `TransferStarted`, `TransferFinished` (with a `Failure`
  kind and the TFTP error code when it failed), `TransferRefused` (a request answered
  with ERROR before any transfer began, with the reason's kind and code);
- DHCPv4 (`ptftpd.dhcp.engine`): `DhcpMessage` for each message in and out, with its
  type, and `LeaseEvent` for each lease offered, bound, released, declined or found
  expired, as the engine decided it;
- HTTP (`ptftpd.http`): `Served`, one per answered request.

A producer takes an `EventSink` (any callable of one event; `ignore` by default) and
calls it synchronously, in the order things happened. Subscribers are plain functions:
`ptftpd.service.metrics.record_event` counts, `ptftpd.pxe.bootlog.BootTracker` builds
the boot line. `fan_out` gives one producer several subscribers.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Literal, TypeVar

__all__ = [
    "DhcpMessage",
    "Event",
    "EventSink",
    "Failure",
    "LeaseEvent",
    "LeaseKind",
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
    PEER_ERROR = "peer_error"  # the peer sent ERROR (its `code` says which)
    OPTION_REFUSED = "option_refused"
    ILLEGAL_OPERATION = "illegal_operation"
    BUSY = "busy"  # every session slot taken
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
    def size_probe(self) -> bool:
        """The peer ended after the OACK with ERROR 8: a PXE ROM learning the size
        (it asks again), not a failed download."""
        return self.kind is Failure.PEER_ERROR and self.code == OPTION_REFUSED_CODE


@dataclass(frozen=True, slots=True)
class TransferRefused:
    """A request answered with ERROR `code` before any transfer began."""

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


Event = TransferStarted | TransferFinished | TransferRefused | DhcpMessage | LeaseEvent
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
