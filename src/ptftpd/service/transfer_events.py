"""Transfer events from worker processes to their parent (pxed's boot log with --workers).

A `TftpServer` tells its owner about each transfer through `on_started` and
`on_finished`, and about each read request it refused before a transfer began through
`on_refused`, with the typed events of `ptftpd.events`.
With `--workers` the transfers run in forked workers while the owner that cares
(pxed's boot tracker: which client is still downloading, which file it got, which was
refused) stays in the parent. Each event travels as one datagram
on an AF_UNIX SOCK_DGRAM socket pair made before the fork: datagrams keep the events
whole, need no framing, and a worker never blocks on a slow parent (a full queue drops
the event and counts it: a missed "served" costs one boot log detail, not a transfer).

The codec is pure (bytes in, events out); `EventSender` and `EventReceiver` are the
thin I/O on each side of the pair. The receiver learns each datagram's sending pid from
the kernel (SO_PASSCRED), so when a worker dies mid-transfer (`worker_ended`) the owner
still hears an end for each of its transfers ("transfer cancelled": not a failed boot)
instead of waiting forever for a client it thinks busy.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from ptftpd.events import Failure, TransferFinished, TransferRefused, TransferStarted
from ptftpd.tftp.server import FinishedTransfer

log = logging.getLogger("ptftpd.tftp.events")

# Large enough for any event: a filename is at most one 64 KiB request's worth.
_MAX_EVENT = 70_000
_UCRED = struct.Struct("=iII")  # struct ucred: pid, uid, gid
WORKER_ENDED = "transfer cancelled: its worker ended"


TransferEvent = TransferStarted | TransferRefused | FinishedTransfer


class EventDecodeError(ValueError):
    """A datagram on the event socket that is not an event (never from our workers)."""


def encode(event: TransferEvent) -> bytes:
    if isinstance(event, TransferStarted):
        options = [list(pair) for pair in event.options]
        return json.dumps(["s", event.peer_ip, event.filename, event.is_read, options]).encode()
    if isinstance(event, TransferRefused):
        fields = [event.peer_ip, event.filename, event.reason, event.kind.value, event.code]
        return json.dumps(["r", *fields, event.is_read]).encode()
    return json.dumps(
        [
            "f",
            event.peer_ip,
            event.filename,
            event.is_read,
            event.bytes,
            event.seconds,
            event.failure,
            None if event.kind is None else event.kind.value,
            event.code,
            event.last_block,
            event.retransmissions,
            event.blksize,
        ]
    ).encode()


def decode(data: bytes) -> TransferEvent:
    try:
        fields = json.loads(data)
    except ValueError as exc:
        raise EventDecodeError(f"not an event: {exc}") from None
    if not isinstance(fields, list) or not fields:
        raise EventDecodeError("not an event: expected a list")
    kind, *rest = fields
    started = len(rest) == 4 and all(isinstance(v, str) for v in rest[:2])
    if kind == "s" and started and isinstance(rest[2], bool):
        options = _options(rest[3])
        if options is not None:
            return TransferStarted(rest[0], rest[1], rest[2], options)
    if kind == "r" and len(rest) == 6 and all(isinstance(v, str) for v in rest[:4]):
        refused_kind = _failure(rest[3])
        is_read = rest[5]
        ok = _code(rest[4]) and rest[4] is not None and isinstance(is_read, bool)
        if refused_kind is not None and ok:
            return TransferRefused(rest[0], rest[1], rest[2], refused_kind, rest[4], is_read)
    if kind == "f" and len(rest) == 11:
        peer_ip, filename, is_read, nbytes, seconds, failure, failed_kind, code = rest[:8]
        last_block, retransmissions, blksize = rest[8:]
        kind_value = None if failed_kind is None else _failure(failed_kind)
        if (
            (failed_kind is None or kind_value is not None)
            and _code(code)
            and isinstance(peer_ip, str)
            and isinstance(filename, str)
            and isinstance(is_read, bool)
            and isinstance(nbytes, int)
            and not isinstance(nbytes, bool)
            and isinstance(seconds, (int, float))
            and not isinstance(seconds, bool)
            and (failure is None or isinstance(failure, str))
            and (last_block is None or _count(last_block))
            and _count(retransmissions)
            and (blksize is None or _count(blksize))
        ):
            return FinishedTransfer(
                peer_ip,
                filename,
                is_read,
                nbytes,
                float(seconds),
                failure,
                kind_value,
                code,
                last_block,
                retransmissions,
                blksize,
            )
    raise EventDecodeError(f"not an event: {fields[:1]!r} with {len(rest)} field(s)")


def _failure(value: object) -> Failure | None:
    try:
        return Failure(value)
    except ValueError:
        return None


def _code(value: object) -> bool:
    """A TFTP error code field: None or a 16-bit integer."""
    if value is None:
        return True
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFFFF


def event_pair() -> tuple[socket.socket, socket.socket]:
    """(parent's receiving end, workers' sending end), made before the fork."""
    receiving, sending = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiving.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    receiving.setblocking(False)
    sending.setblocking(False)
    return receiving, sending


class EventSender:
    """A worker's side: `started`, `finished` and `refused` fit a `TftpServer`'s
    callbacks."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.dropped = 0

    def started(self, started: TransferStarted) -> None:
        self._send(started)

    def finished(self, transfer: FinishedTransfer) -> None:
        self._send(transfer)

    def refused(self, refusal: TransferRefused) -> None:
        self._send(refusal)

    def _send(self, event: TransferEvent) -> None:
        try:
            self.sock.send(encode(event))
        except (BlockingIOError, ConnectionRefusedError, OSError):
            self.dropped += 1
            if self.dropped in (1, 100, 10_000):
                log.warning("transfer events to the parent dropped: %d so far", self.dropped)


@dataclass(eq=False)
class EventReceiver:
    """The parent's side: calls `on_started`/`on_finished`/`on_refused` in its loop."""

    sock: socket.socket
    on_started: Callable[[TransferStarted], None]
    on_finished: Callable[[FinishedTransfer], None]
    on_refused: Callable[[TransferRefused], None] | None = None
    # sender pid -> its transfers started and not finished
    running: dict[int, list[TransferStarted]] = field(default_factory=dict, init=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self.drain)

    def drain(self) -> None:
        """Deliver every queued event (bounded: what is queued now, then return)."""
        for _ in range(4096):
            try:
                data, ancillary, _, _ = self.sock.recvmsg(
                    _MAX_EVENT, socket.CMSG_SPACE(_UCRED.size)
                )
            except (BlockingIOError, InterruptedError):
                return
            try:
                event = decode(data)
            except EventDecodeError as exc:
                log.debug("event socket: %s", exc)
                continue
            pid = _sender_pid(ancillary)
            if isinstance(event, TransferStarted):
                self.running.setdefault(pid, []).append(event)
                self.on_started(event)
            elif isinstance(event, TransferRefused):
                if self.on_refused is not None:
                    self.on_refused(event)
            else:
                running = self.running.get(pid, [])
                for started in running:
                    same = (started.peer_ip, started.filename, started.is_read)
                    if same == (event.peer_ip, event.filename, event.is_read):
                        running.remove(started)
                        break
                self.on_finished(event)

    def worker_ended(self, pid: int) -> None:
        """Worker `pid` is gone: its last events first, then an end (`WORKER_ENDED`,
        as a read: pxed serves reads only) for each transfer it never finished."""
        self.drain()
        for started in self.running.pop(pid, []):
            self.on_finished(
                TransferFinished(
                    started.peer_ip,
                    started.filename,
                    started.is_read,
                    0,
                    0.0,
                    WORKER_ENDED,
                    Failure.SHUTDOWN,
                )
            )

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop = None
        self.sock.close()


def _sender_pid(ancillary: list[tuple[int, int, bytes]]) -> int:
    """The sending process's pid from SCM_CREDENTIALS (0 if the kernel sent none)."""
    for level, kind, data in ancillary:
        ucred = level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
        if ucred and len(data) >= _UCRED.size:
            return int(_UCRED.unpack_from(data)[0])
    return 0


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _options(value: object) -> tuple[tuple[str, str], ...] | None:
    """A started transfer's options as sent: a list of [name, value] strings."""
    if not isinstance(value, list) or len(value) > 32:
        return None
    pairs: list[tuple[str, str]] = []
    for pair in value:
        if not (isinstance(pair, list) and len(pair) == 2):
            return None
        name, setting = pair
        if not (isinstance(name, str) and isinstance(setting, str)):
            return None
        pairs.append((name, setting))
    return tuple(pairs)
