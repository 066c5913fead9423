"""Sans-IO TFTP transfer machines: one sender, one receiver, for server and client alike.

The server answering an RRQ and the client doing a put are the same `Sender`; the
server answering a WRQ and the client doing a get are the same `Receiver`. Machines
take datagrams and timer expiries in and hand back `Step`s: datagrams to send and what
to do with the retransmission timer. They never touch sockets, files or clocks, so the
tests drive them packet by packet. `session.py` wraps them with the request phase and
turns the timer actions into absolute deadlines; `driver.py` does the I/O.

A window is resent from the first unacknowledged block on timeout, and at once when the
receiver's ACK names the block before the window (RFC 7440 section 4: it saw a later
block first, so the window's first block was lost), once per window so that duplicated
ACKs cannot multiply the traffic.

A server's machine is made `quiet_until_heard`: until the peer has sent one packet of the
transfer it never retransmits (a spoofed request must not draw a retransmitted window
or OACK to its victim). A real client that lost the first packet repeats its request,
and the server answers that with `resend_first` (issue 19, the reflection bound).

Block numbers are tracked as unbounded integers internally and reduced modulo 65536 on
the wire, so transfers roll over past block 65535 to block 0 (what tftpd-hpa, curl,
atftp and busybox expect).
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from dataclasses import dataclass, field
from itertools import islice

from ptftpd.tftp.packets import (
    Error,
    Opcode,
    PacketError,
    ack_bytes,
    decode,
)


class Timer(enum.Enum):
    KEEP = "keep"  # leave the retransmission timer as it is
    RESTART = "restart"  # (re)arm it for one timeout period
    CANCEL = "cancel"  # the machine expects nothing more


class State(enum.Enum):
    ACTIVE = "active"
    COMPLETE = "complete"  # receiver: every byte is in; dallying to re-ACK a resent last block
    DONE = "done"
    FAILED = "failed"


@dataclass(slots=True)
class Step:
    send: list[bytes] = field(default_factory=list)
    timer: Timer = Timer.KEEP
    data: bytes = b""  # receiver only: in-order payload to write out


_NOTHING = Step()
_ACTIVE = State.ACTIVE
_RESTART = Timer.RESTART
_ACK = int(Opcode.ACK)
_pack_data_header = struct.Struct("!HH").pack  # (3, block & 0xFFFF): DATA header


class _Machine:
    def __init__(
        self,
        *,
        blksize: int = 512,
        windowsize: int = 1,
        retries: int = 5,
        first_packet: bytes | None = None,
        quiet_until_heard: bool = False,
    ) -> None:
        if blksize < 1 or windowsize < 1 or retries < 0:
            raise ValueError("blksize and windowsize must be positive, retries >= 0")
        self.blksize = blksize
        self.windowsize = windowsize
        self.retries = retries
        self.state = State.ACTIVE
        self.failure: str | None = None
        self.peer_error: Error | None = None
        self.retransmissions = 0
        self._tries = 0
        self.quiet_until_heard = quiet_until_heard
        self.heard = False  # the peer has sent a packet of this transfer
        self._first_packet = first_packet
        self._begin()

    def _begin(self) -> None:
        """The subclass's own state, set up at the end of `__init__`."""
        raise NotImplementedError

    def _first_packets(self) -> list[bytes]:
        raise NotImplementedError

    def resend_first(self) -> Step:
        """The peer repeated its request: send the first packet(s) again, unless it has
        answered already (then the repeat is stale and the transfer goes on)."""
        if self.state is not State.ACTIVE or self.heard:
            return _NOTHING
        self.retransmissions += 1
        # KEEP: a repeated request never prolongs a transfer nobody has answered.
        return Step(self._first_packets(), Timer.KEEP)

    def _retry(self) -> Step | None:
        """A timeout's common part: the Step to return (nothing to resend: stopped,
        failed, or waiting silently), or None when the caller resends."""
        if self.state is not State.ACTIVE:
            return Step([], Timer.CANCEL)
        if self.quiet_until_heard and not self.heard:
            return self._wait_silently()
        self._tries += 1
        if self._tries > self.retries:
            return self._fail(f"timed out after {self.retries} retries")
        self.retransmissions += 1
        return None

    def _wait_silently(self) -> Step:
        """A timeout before the peer was ever heard, on a quiet machine: no resend."""
        self._tries += 1
        if self._tries > self.retries:
            self.state = State.FAILED
            self.failure = "the peer never answered"
            return Step([], Timer.CANCEL)
        return Step([], Timer.RESTART)

    def _fail(self, reason: str, send: list[bytes] | None = None) -> Step:
        self.state = State.FAILED
        self.failure = reason
        return Step(send or [], Timer.CANCEL)

    def _other_packet(self, datagram: bytes) -> Step:
        """A packet that is not the one the machine is waiting for."""
        try:
            packet = decode(datagram)
        except PacketError:
            return _NOTHING  # garbage never ends a transfer
        if isinstance(packet, Error):
            self.peer_error = packet
            return self._fail(f"peer sent error {packet.code}: {packet.message}")
        return _NOTHING


class Sender(_Machine):
    """Sends a byte stream as DATA blocks, `windowsize` blocks per window (RFC 7440).

    The caller keeps the machine fed: whenever `bytes_wanted` is non-zero it passes at
    least that many bytes to `feed` (or fewer with `eof=True`) before the next call to
    `start`, `receive` or `timeout`. That way the next window is always at hand.

    `first_packet` (an OACK) is sent first and resent until ACK 0 arrives.
    """

    def _begin(self) -> None:
        self._awaiting_start = self._first_packet is not None
        self._buf = b""
        self._off = 0
        self._eof = False
        self._packets: deque[bytes] = deque()  # built, unacknowledged; [0] is block _base
        self._base = 1  # first unacknowledged block
        self._built = 0  # last block built into _packets
        self._sent = 0  # highest block sent so far
        self._last: int | None = None  # the final (short) block, once the stream ended
        self._gap_resent = False  # the gap ACK of the current window has been answered
        self.bytes_acked = 0

    @property
    def bytes_wanted(self) -> int:
        if self._eof:
            return 0
        blocks = self._base + 2 * self.windowsize - 1 - self._built
        return max(0, blocks * self.blksize - (len(self._buf) - self._off))

    def feed(self, data: bytes, eof: bool = False) -> None:
        if self._eof and data:
            raise ValueError("feed after eof")
        if data:
            self._buf = self._buf[self._off :] + data if self._off < len(self._buf) else data
            self._off = 0
        self._eof = self._eof or eof

    def _build(self, upto: int) -> None:
        size = self.blksize
        built = self._built
        if built >= upto or self._last is not None:
            return
        buf, off, append = self._buf, self._off, self._packets.append
        while built < upto:
            end = off + size
            if end > len(buf) and not self._eof:
                break
            chunk = buf[off:end]
            off += len(chunk)
            built += 1
            append(_pack_data_header(3, built & 0xFFFF) + chunk)
            if len(chunk) < size:
                self._last = built
                break
        self._built, self._off = built, off

    def _window(self) -> list[bytes]:
        base = self._base
        if self.windowsize == 1:
            if self._built < base:
                self._build(base)
            built = self._packets
            window = [built[0]] if built else []
            if base > self._sent and window:
                self._sent = base
            return window
        self._build(base + self.windowsize - 1)
        packets = list(islice(self._packets, 0, self.windowsize))
        self._sent = max(self._sent, base + len(packets) - 1)
        return packets

    def start(self) -> Step:
        return Step(self._first_packets(), Timer.RESTART)

    def _first_packets(self) -> list[bytes]:
        if self._awaiting_start and self._first_packet is not None:
            return [self._first_packet]
        return self._window()

    def receive(self, datagram: bytes) -> Step:
        if self.state is not _ACTIVE:
            return _NOTHING
        if len(datagram) < 4 or datagram[0] != 0 or datagram[1] != _ACK:
            return self._other_packet(datagram)
        block = (datagram[2] << 8) | datagram[3]
        self.heard = True
        if self._awaiting_start:
            if block != 0:
                return _NOTHING
            self._awaiting_start = False
            self._tries = 0
            return Step(self._window(), _RESTART)
        base = self._base
        newly = (block - base + 1) & 0xFFFF
        if newly == 0:
            if self.windowsize > 1 and not self._gap_resent and self._sent >= base:
                # RFC 7440 section 4: the receiver ACKs its last in-order block when a
                # later one arrives first, i.e. the first block of this window was
                # lost. Resend from there now, once per window, instead of waiting for
                # the timer.
                self._gap_resent = True
                self.retransmissions += 1
                return Step(self._window(), _RESTART)
            # A duplicate ACK in lock-step: answering it would double the traffic on
            # every loss (Sorcerer's Apprentice). The timer resends if it was lost.
            return _NOTHING
        if newly > self._sent - base + 1:
            return _NOTHING  # stale: acknowledges blocks never sent
        packets = self._packets
        if newly == 1:
            acked = len(packets.popleft()) - 4
        else:
            acked = 0
            for _ in range(newly):
                acked += len(packets.popleft()) - 4
        self.bytes_acked += acked
        base += newly
        self._base = base
        self._tries = 0
        self._gap_resent = False
        last = self._last
        if last is not None and base > last:
            self.state = State.DONE
            return Step([], Timer.CANCEL)
        return Step(self._window(), _RESTART)

    def timeout(self) -> Step:
        stop = self._retry()
        if stop is not None:
            return stop
        self._gap_resent = False
        if self._awaiting_start and self._first_packet is not None:
            return Step([self._first_packet], Timer.RESTART)
        return Step(self._window(), Timer.RESTART)

    @property
    def blocks_acked(self) -> int:
        return self._base - 1

    @property
    def final_unconfirmed(self) -> bool:
        """The peer has acknowledged data (so blocks of this size reach it), every block
        up to the final one has gone out, and the final window's ACK has not come: the
        only thing missing is that ACK. A file of one window stays a plain timeout (its
        data may never have arrived: a path MTU too small for the block size)."""
        return self._base > 1 and self._last is not None and self._sent >= self._last

    @property
    def unacknowledged(self) -> int:
        """The first block the peer has not acknowledged (counted from 1, unwrapped):
        where a stalled read stopped."""
        return self._base


class Receiver(_Machine):
    """Receives DATA blocks in order, ACKing each window (RFC 7440) or each block.

    `first_packet` (the server's OACK or ACK 0, or the client's ACK 0 after an OACK) is
    sent by `start` and resent until DATA 1 arrives. After the short final block the
    machine is COMPLETE and keeps re-ACKing a resent final block until the caller's
    dally timer fires once more (then DONE).
    """

    def _begin(self) -> None:
        self._expected = 1
        self._since_ack = 0
        self._gap_acked = False
        self._dup_acked = False
        self.bytes_received = 0

    def start(self) -> Step:
        return Step(self._first_packets(), Timer.RESTART)

    def _first_packets(self) -> list[bytes]:
        return [] if self._first_packet is None else [self._first_packet]

    def _last_ack(self) -> bytes:
        if self._expected == 1 and self._first_packet is not None:
            return self._first_packet
        return ack_bytes(self._expected - 1)

    def receive_many(self, datagrams: list[bytes]) -> Step:
        """`receive` for several datagrams from the peer at once (a window read in one
        go with UDP GRO): one Step with every datagram to send, the payloads joined, and
        the last timer action that was not KEEP. Same result as one call per datagram;
        full in-order blocks inside a window skip the per-packet Step."""
        payloads: list[bytes] = []
        send: list[bytes] = []
        timer = Timer.KEEP
        full = self.blksize + 4
        for datagram in datagrams:
            expected = self._expected
            if (
                self.state is State.ACTIVE
                and len(datagram) == full
                and self._since_ack + 1 < self.windowsize
                and datagram[0] == 0
                and datagram[1] == 3  # DATA
                and ((datagram[2] << 8) | datagram[3]) == expected & 0xFFFF
            ):
                payloads.append(datagram[4:])
                self._expected = expected + 1
                self.bytes_received += full - 4
                self._since_ack += 1
                self._tries = 0
                self._gap_acked = self._dup_acked = False
                self.heard = True
                timer = Timer.RESTART
                continue
            step = self.receive(datagram)
            send += step.send
            if step.data:
                payloads.append(step.data)
            if step.timer is not Timer.KEEP:
                timer = step.timer
        return Step(send, timer, b"".join(payloads))

    def receive(self, datagram: bytes) -> Step:
        if self.state is State.COMPLETE:
            if len(datagram) >= 4 and datagram[1] == Opcode.DATA and datagram[0] == 0:
                block = (datagram[2] << 8) | datagram[3]
                if block == (self._expected - 1) & 0xFFFF:
                    return Step([self._last_ack()], Timer.KEEP)
            return _NOTHING
        if self.state is not State.ACTIVE:
            return _NOTHING
        if len(datagram) < 4 or datagram[0] != 0 or datagram[1] != Opcode.DATA:
            if (
                len(datagram) >= 2
                and datagram[1] == Opcode.OACK
                and self._expected == 1
                and self._first_packet is not None
            ):
                # Our ACK 0 to the OACK was lost and the server resent the OACK.
                return Step([self._first_packet], Timer.RESTART)
            return self._other_packet(datagram)
        block = (datagram[2] << 8) | datagram[3]
        self.heard = True
        expected = self._expected
        if block == expected & 0xFFFF:
            payload = datagram[4:]
            if len(payload) > self.blksize:
                return _NOTHING  # larger than negotiated: not a block of this transfer
            self._expected = expected + 1
            self.bytes_received += len(payload)
            self._tries = 0
            self._gap_acked = self._dup_acked = False
            if len(payload) < self.blksize:
                self.state = State.COMPLETE
                return Step([ack_bytes(block)], Timer.RESTART, payload)
            self._since_ack += 1
            if self._since_ack >= self.windowsize:
                self._since_ack = 0
                return Step([ack_bytes(block)], Timer.RESTART, payload)
            return Step([], Timer.RESTART, payload)
        ahead = (block - expected) & 0xFFFF
        if ahead < 0x8000:
            # A gap: ACK what we have once, so the sender restarts the window there.
            if self._gap_acked:
                return _NOTHING
            self._gap_acked = True
            self._since_ack = 0
            return Step([self._last_ack()], Timer.RESTART)
        # An old block: the sender missed our ACK. Re-ACK once per round of resends.
        if self._dup_acked:
            return _NOTHING
        self._dup_acked = True
        self._since_ack = 0
        return Step([self._last_ack()], Timer.KEEP)

    def timeout(self) -> Step:
        if self.state is State.COMPLETE:
            self.state = State.DONE
            return Step([], Timer.CANCEL)
        stop = self._retry()
        if stop is not None:
            return stop
        self._since_ack = 0
        self._gap_acked = self._dup_acked = False
        return Step([self._last_ack()], Timer.RESTART)
