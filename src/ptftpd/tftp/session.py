"""Sans-IO TFTP sessions: every rule between a request and the end of a transfer.

A session wraps one transfer machine (`machine.Sender` or `machine.Receiver`) with
what is particular to one end:

- `ClientSession`: send the RRQ/WRQ and resend it on timeout a bounded number of
  times; latch the server's TID from the first reply; check the OACK against what was
  asked (ERROR 8 for a bad one); fall back to RFC 1350 on DATA 1 / ACK 0 instead of an
  OACK; after ERROR 8 to the request, ask once more without options.
- `ServerSession`: negotiate the options of an accepted request, refuse a WRQ whose
  tsize exceeds the free space, send the OACK (or ACK 0 / DATA 1).
- `ServerConfig`: what a server serves with (its sessions take their limits from it).
- `RequestRules`: the server's request port: malformed requests, unknown modes,
  read-only uploads, duplicate requests and the session limit.

Both sessions answer packets from a foreign port with ERROR 5 (`stray`), turn the
machine's timer actions into one absolute deadline (`get_timer()`, `handle_timer(now)`),
translate netascii, and end with `succeeded` or a typed `error` (`LocalError` for our
refusal, `RemoteError` for the peer's). They never touch a socket, a file or a clock:
the driver (`driver.py`) passes datagrams, local bytes and `now` in, and sends what
comes out: `Step.send` goes to `dest`, `Step.data` is local bytes to write, and
`wanted` says how many local bytes to `feed` next.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptftpd.tftp import netascii
from ptftpd.tftp.errors import (
    Cancelled,
    FinalAckLost,
    LocalError,
    ProtocolError,
    RemoteError,
    RequestRefused,
    TftpError,
    TransferTimeout,
    Unanswered,
)
from ptftpd.tftp.machine import Receiver, Sender, State, Step, Timer
from ptftpd.tftp.options import (
    BLKSIZE_MAX,
    DEFAULT_BLKSIZE,
    DEFAULT_WINDOWSIZE_MAX,
    Negotiated,
    OptionError,
    TransferOptions,
    accept_oack,
    negotiate,
)
from ptftpd.tftp.packets import (
    Ack,
    Data,
    Error,
    ErrorCode,
    Opcode,
    OptionAck,
    PacketError,
    Request,
    ack_bytes,
    decode,
    error_bytes,
)
from ptftpd.tftp.remap import RuleSet

Address = tuple[Any, ...]
_NOTHING = Step()
_ACTIVE = State.ACTIVE
_RESTART = Timer.RESTART
_CANCEL = Timer.CANCEL
_ERROR = int(Opcode.ERROR)
_UNKNOWN_TID = error_bytes(ErrorCode.UNKNOWN_TID, "unknown transfer ID")

def format_host(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Session:
    """What both ends share once a machine runs: deadline, netascii, ERROR 5, outcome."""

    machine: Sender | Receiver | None

    def __init__(self, *, mode: str, receiving: bool, timeout: float, retries: int, now: float):
        self.timeout = timeout
        self.first_timeout = timeout  # until the peer has answered (see ServerSession)
        self.retries = retries
        self.netascii = mode == "netascii"
        self._decoder = netascii.Decoder() if self.netascii and receiving else None
        self.receiving = receiving
        self.machine = None
        self.peer: Address | None = None  # the other end's TID, once known
        self.dest: Address | None = None  # where `Step.send` goes
        self.deadline: float | None = None
        self.stray: list[tuple[bytes, Address]] = []  # ERROR 5 to foreign ports
        self.error: TftpError | None = None
        self.succeeded = False
        self.closed = False  # nothing more to do, not even dallying
        self.started = now
        self.finished_at: float | None = None
        self.local_bytes = 0  # written (receiving) or fed (sending), before netascii
        self.pending_start = False  # a sender waits for `feed`, then `begin_transfer`

    # -- the driver's view ---------------------------------------------------------------
    def get_timer(self) -> float | None:
        """The absolute time (same clock as `now`) of the next `handle_timer`, or None."""
        return self.deadline

    @property
    def settled(self) -> bool:
        """The caller has its answer (a receiver may still dally to re-ACK)."""
        return self.succeeded or self.error is not None

    @property
    def wanted(self) -> int:
        """How many more local bytes `feed` needs before the next event."""
        machine = self.machine
        if machine is None or machine.__class__ is not Sender or machine.state is not _ACTIVE:
            return 0
        return machine.bytes_wanted

    def feed(self, data: bytes, eof: bool) -> None:
        """Local bytes for a sender (netascii-encoded here); `eof` after the last."""
        machine = self.machine
        assert isinstance(machine, Sender)
        self.local_bytes += len(data)
        machine.feed(netascii.encode(data) if self.netascii else data, eof)

    @property
    def wire_bytes(self) -> int:
        machine = self.machine
        if machine is None:
            return 0
        return machine.bytes_acked if isinstance(machine, Sender) else machine.bytes_received

    @property
    def retransmissions(self) -> int:
        return 0 if self.machine is None else self.machine.retransmissions

    @property
    def heard(self) -> bool:
        """The peer has sent a packet of this transfer (so it is no spoofed address)."""
        return self.machine is not None and self.machine.heard

    def receive_many(self, batch: list[bytes], addr: Address, now: float) -> Step:
        """Several datagrams from one address at once (a window read with UDP GRO)."""
        machine = self.machine
        peer = self.peer
        if (
            machine is None
            or peer is None
            or addr[1] != peer[1]
            or addr[0] != peer[0]
            or machine.__class__ is not Receiver
        ):
            steps = [self.receive(data, addr, now) for data in batch]
            send = [datagram for step in steps for datagram in step.send]
            return Step(send, Timer.KEEP, b"".join(step.data for step in steps))
        return self._step(machine.receive_many(batch), now)

    def receive(self, data: bytes, addr: Address, now: float) -> Step:
        peer = self.peer
        if peer is None:
            return self._request_reply(data, addr, now)
        if addr[1] != peer[1] or addr[0] != peer[0]:
            # RFC 1350: a packet from a wrong TID gets ERROR 5 and the transfer goes on.
            # An ERROR is never answered, so two endpoints cannot ping-pong.
            if not (len(data) >= 2 and data[1] == _ERROR):
                self.stray.append((_UNKNOWN_TID, addr))
            return _NOTHING
        machine = self.machine
        if machine is None or self.closed:
            return _NOTHING
        return self._step(machine.receive(data), now)

    def handle_timer(self, now: float) -> Step:
        """Call when `now` has reached `get_timer()`: resend, give up, or end a dally."""
        deadline = self.deadline
        if deadline is None or now < deadline or self.closed:
            return _NOTHING
        machine = self.machine
        if machine is None:
            return self._request_timeout(now)
        return self._step(machine.timeout(), now)

    def begin_transfer(self, now: float) -> Step:
        """The machine's first packets, once `pending_start` is set and `wanted` fed."""
        machine = self.machine
        if not self.pending_start or machine is None or self.closed:
            return _NOTHING
        self.pending_start = False
        return self._step(machine.start(), now)

    def abort(self, code: int, message: str, now: float, *, cancelled: bool = False) -> Step:
        """We cannot go on (e.g. a local write failed): ERROR `code` to the peer."""
        failed = Cancelled(code, message) if cancelled else LocalError(code, message)
        self._fail(failed, now)
        if self.dest is None:
            return _NOTHING
        return Step([error_bytes(code, message)], _CANCEL)

    def commit_failed(self, code: int, message: str, now: float) -> Step:
        """Every byte came, but the driver could not keep the file (rename, fsync): the
        transfer fails after all, ERROR `code` to the peer."""
        self.succeeded = False
        return self.abort(code, message, now)

    def take_stray(self) -> list[tuple[bytes, Address]]:
        """The ERROR 5 replies owed to foreign ports (a pull method: they are the
        caller's to send from now on)."""
        stray, self.stray = self.stray, []
        return stray

    def cancel(self, now: float) -> Step:
        """The caller gave up: tell the peer, so it does not retry for long."""
        if self.closed or self.settled or self.peer is None:
            self.closed = True
            self.deadline = None
            return _NOTHING
        return self.abort(ErrorCode.NOT_DEFINED, "transfer cancelled", now, cancelled=True)

    # -- inside ----------------------------------------------------------------------------
    def _request_reply(self, data: bytes, addr: Address, now: float) -> Step:
        return _NOTHING

    def _request_timeout(self, now: float) -> Step:
        return _NOTHING

    def _step(self, step: Step, now: float) -> Step:
        timer = step.timer
        if timer is _RESTART:
            machine = self.machine
            heard = machine is None or machine.heard
            self.deadline = now + (self.timeout if heard else self.first_timeout)
        elif timer is _CANCEL:
            self.deadline = None
        decoder = self._decoder
        if decoder is not None and step.data:
            step = Step(step.send, step.timer, decoder.feed(step.data))
        self.local_bytes += len(step.data) if self.receiving else 0
        machine = self.machine
        assert machine is not None
        state = machine.state
        if state is _ACTIVE:
            return step
        if state is State.FAILED:
            self._fail(self._machine_error(machine, now), now)
        elif not self.settled:  # COMPLETE (dallying) or DONE: every byte is through
            if decoder is not None:
                tail = decoder.flush()
                self.local_bytes += len(tail)
                step = Step(step.send, step.timer, step.data + tail)
            self.succeeded = True
            self.finished_at = now
        if state is State.DONE:
            self.closed = True
            self.deadline = None
        return step

    def _machine_error(self, machine: Sender | Receiver, now: float) -> TftpError:
        error = machine.peer_error
        if error is not None:
            return RemoteError(error.code, error.message)
        if not machine.heard and machine.quiet_until_heard:
            return Unanswered(
                f"unanswered: {self._peer_text()} sent nothing back in "
                f"{now - self.started:.1f} s (a lost or spoofed request)"
            )
        if isinstance(machine, Sender) and machine.final_unconfirmed:
            return FinalAckLost(
                f"transfer with {self._peer_text()}: every block sent, the final ACK "
                f"never came ({self.retries} retries, {now - self.started:.1f} s)"
            )
        return TransferTimeout(
            f"transfer with {self._peer_text()} timed out after {self.retries} retries "
            f"({now - self.started:.1f} s)"
        )

    def _peer_text(self) -> str:
        where = self.peer or self.dest
        return "peer" if where is None else format_host(str(where[0]), int(where[1]))

    def _fail(self, error: TftpError, now: float) -> None:
        if not self.settled:
            self.error = error
            self.finished_at = now
        self.closed = True
        self.deadline = None


class ClientSession(_Session):
    """One get (`is_read`) or put, from the request to the last ACK."""

    def __init__(
        self,
        server: Address,
        filename: str,
        *,
        is_read: bool,
        options: TransferOptions,
        now: float,
        local_size: int | None = None,
    ) -> None:
        super().__init__(
            mode=options.mode,
            receiving=is_read,
            timeout=options.interval,
            retries=options.retries,
            now=now,
        )
        self.server = server
        self.dest = server
        self.is_read = is_read
        self.filename = filename
        self.mode = options.mode
        self.requested = options.requested(is_read=is_read, size=local_size)
        self.total = local_size if options.mode == "octet" else None
        self.blksize = DEFAULT_BLKSIZE
        self.windowsize = 1
        self.tsize: int | None = None
        self.granted: tuple[tuple[str, str], ...] = ()
        self.fallback = False  # asked for options, got a plain RFC 1350 transfer
        self._tries = 0

    @property
    def request(self) -> Request:
        options = tuple((name, str(value)) for name, value in self.requested.items())
        return Request(
            Opcode.RRQ if self.is_read else Opcode.WRQ, self.filename, self.mode, options
        )

    def start(self, now: float) -> Step:
        """The request; resent by `handle_timer` until the server answers."""
        self._tries += 1
        self.deadline = now + self.timeout
        return Step([self.request.encode()], _RESTART)

    def _request_timeout(self, now: float) -> Step:
        if self._tries > self.retries:
            self._fail(
                TransferTimeout(
                    f"no answer from {self._peer_text()} after {self._tries} tries "
                    f"({now - self.started:.1f} s)"
                ),
                now,
            )
            return _NOTHING
        return self.start(now)

    def _request_reply(self, data: bytes, addr: Address, now: float) -> Step:
        """The first reply from the server's address: its source port is the TID."""
        if addr[0] != self.server[0] or self.closed:
            return _NOTHING
        try:
            packet = decode(data)
        except PacketError:
            return _NOTHING
        if isinstance(packet, Error):
            if packet.code == ErrorCode.OPTION_REFUSED and self.requested:
                # RFC 2347: the server refused our options; ask again without any.
                self.requested = {}
                self.fallback = True
                self._tries = 0
                return self.start(now)
            self._fail(RequestRefused(packet.code, packet.message), now)
            return _NOTHING
        if isinstance(packet, OptionAck):
            try:
                negotiated = accept_oack(self.requested, packet.options)
            except OptionError as exc:
                self.dest = addr
                message = str(exc)
                refusal = f"refused the server's options: {message}"
                self._fail(ProtocolError(ErrorCode.OPTION_REFUSED, refusal), now)
                return Step([error_bytes(ErrorCode.OPTION_REFUSED, message)], _CANCEL)
            self._latch(addr, negotiated)
            self.granted = packet.options
            if self.is_read:
                self.machine = Receiver(
                    blksize=self.blksize,
                    windowsize=self.windowsize,
                    retries=self.retries,
                    first_packet=ack_bytes(0),
                )
            else:
                self.machine = Sender(
                    blksize=self.blksize, windowsize=self.windowsize, retries=self.retries
                )
            return self._start_machine(now)
        if self.is_read and isinstance(packet, Data) and packet.block == 1:
            # The server ignored our options (or we sent none): plain RFC 1350.
            self._latch(addr, Negotiated())
            self.fallback = self.fallback or bool(self.requested)
            self.machine = machine = Receiver(blksize=DEFAULT_BLKSIZE, retries=self.retries)
            machine.start()
            return self._step(machine.receive(data), now)
        if not self.is_read and isinstance(packet, Ack) and packet.block == 0:
            self._latch(addr, Negotiated())
            self.fallback = self.fallback or bool(self.requested)
            self.machine = Sender(blksize=DEFAULT_BLKSIZE, retries=self.retries)
            return self._start_machine(now)
        return _NOTHING  # no answer to our request: its timer keeps running

    def _latch(self, addr: Address, negotiated: Negotiated) -> None:
        self.peer = self.dest = addr
        self.blksize, self.windowsize = negotiated.blksize, negotiated.windowsize
        if negotiated.tsize is not None:
            self.tsize = negotiated.tsize
            if self.is_read:
                self.total = negotiated.tsize

    def _start_machine(self, now: float) -> Step:
        machine = self.machine
        assert machine is not None
        if isinstance(machine, Sender):
            self.pending_start = True  # the first window goes once the driver has fed it
            return _NOTHING
        return self._step(machine.start(), now)


@dataclass(frozen=True)
class ServerConfig:
    """What a TFTP server serves with (`server.TftpServer`); each of its sessions takes
    the transfer limits from it: `blksize_max` and `windowsize_max` clamp what a client
    asks for, `rfc1350` grants no option at all, `timeout` and `retries` pace resends."""

    root: Path
    read_only: bool = False
    rfc1350: bool = False
    blksize_max: int = BLKSIZE_MAX
    windowsize_max: int = DEFAULT_WINDOWSIZE_MAX
    timeout: float = 1.0
    retries: int = 5
    max_sessions: int = 4096
    port_range: tuple[int, int] | None = None  # transfer sockets' ports (firewalls)
    source_budget: bool = True  # `budget.SourceBudget` for peers that have not answered
    # What ptftpd's service adds (`ptftpd.service.tftp_service`): tftpd-hpa remap rules
    # read from `map_file` (the service's `remap` hook applies them to each request's
    # name), the upload umask, and the settings only a restart can change (port,
    # workers, user...) as they were given, kept to name them when a reload asks for a
    # change it cannot make.
    map_file: Path | None = None
    remap_rules: RuleSet | None = None
    umask: int | None = None
    restart_only: Mapping[str, object] = field(default_factory=dict)


class ServerSession(_Session):
    """One accepted request, from the OACK (or first DATA / ACK 0) to the end.

    Raises `LocalError` when the request must be refused after all (a WRQ announcing
    more bytes than `free_space`)."""

    def __init__(
        self,
        request: Request,
        peer: Address,
        *,
        config: ServerConfig,
        now: float,
        file_size: int | None = None,
        free_space: int | None = None,
    ) -> None:
        mode = request.mode.lower()
        timeout, retries = config.timeout, config.retries
        negotiated = (
            Negotiated()  # strict RFC 1350: no option granted, no OACK
            if config.rfc1350
            else negotiate(
                request.options,
                is_read=request.is_read,
                file_size=None if mode == "netascii" else file_size,
                blksize_max=config.blksize_max,
                windowsize_max=config.windowsize_max,
            )
        )
        announced = None if request.is_read else negotiated.tsize
        if announced is not None and free_space is not None and announced > free_space:
            raise LocalError(
                ErrorCode.DISK_FULL,
                f"not enough space: {negotiated.tsize} bytes announced, {free_space} free",
            )
        super().__init__(
            mode=mode,
            receiving=not request.is_read,
            timeout=negotiated.timeout or timeout,
            retries=retries,
            now=now,
        )
        self.request = request
        self.negotiated = negotiated
        # The client's timeout option applies once it has answered: a forged request
        # asking for 255 s must not hold a session for half an hour.
        self.first_timeout = min(timeout, self.timeout)
        self.peer = self.dest = peer
        oack = OptionAck(negotiated.oack).encode() if negotiated.oack else None
        # quiet_until_heard: nothing is resent to a peer that has not answered (it may
        # be a spoofed address); a real client repeats its request (`repeat_request`).
        if request.is_read:
            self.machine = Sender(
                blksize=negotiated.blksize,
                windowsize=negotiated.windowsize,
                retries=retries,
                first_packet=oack,
                quiet_until_heard=True,
            )
        else:
            self.machine = Receiver(
                blksize=negotiated.blksize,
                windowsize=negotiated.windowsize,
                retries=retries,
                first_packet=oack or ack_bytes(0),
                quiet_until_heard=True,
            )

    def start(self, now: float) -> Step:
        """The OACK, ACK 0 or first window (a sender's once the driver has fed it)."""
        machine = self.machine
        assert machine is not None
        if isinstance(machine, Sender) and machine.bytes_wanted:
            self.pending_start = True
            return _NOTHING
        return self._step(machine.start(), now)

    def repeat_request(self, now: float) -> Step:
        """The client sent its request again from the same port: it lost our first
        packet (OACK, ACK 0 or DATA 1), which goes out once more; nothing once the
        client has answered anything."""
        machine = self.machine
        if machine is None or self.closed or self.pending_start:
            return _NOTHING
        return self._step(machine.resend_first(), now)
