"""TFTP client: the request phase around the shared sans-IO machines.

A get is the same `Receiver` the server uses for uploads, a put the same `Sender` it
uses for downloads; this module only adds what is particular to the client side:

- the request phase: send the RRQ/WRQ, resend it on timeout a bounded number of
  times, and latch the server's new TID (its transfer port) from the first reply;
- after the latch, answer packets from any other port with ERROR 5 and ignore them
  (RFC 1350), so a stray or malicious sender cannot disturb the transfer;
- validate the OACK against what was asked (`options.accept_oack`) and refuse a bad
  one with ERROR 8; fall back to RFC 1350 when the server answers DATA 1 or ACK 0
  instead of an OACK; on ERROR 8 retry once without options.

That logic (`_Exchange`) does no waiting of its own. Two drivers run it: plain
blocking code (`get_file`/`put_file`, used by `ptftp`), where nothing stands between
a DATA block and its ACK but a system call, and an asyncio loop
(`get_file_async`/`put_file_async`) with the server's pattern: a reader callback and
a lazily re-armed deadline timer."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import math
import os
import select
import socket
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from ptftpd.tftp import netascii
from ptftpd.tftp.machine import Receiver, Sender, State, Step, Timer
from ptftpd.tftp.options import (
    BLKSIZE_MAX,
    BLKSIZE_MIN,
    DEFAULT_BLKSIZE,
    TIMEOUT_MAX,
    TIMEOUT_MIN,
    WINDOWSIZE_MAX,
    WINDOWSIZE_MIN,
    OptionError,
    accept_oack,
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
    decode,
    error_bytes,
)

if TYPE_CHECKING:
    import asyncio

# asyncio is imported where the async API runs, not here: the command line and the
# blocking API never need it, and it is the largest part of their start-up time.

__all__ = [
    "DEFAULT_PORT",
    "MODES",
    "ProgressCallback",
    "ProtocolError",
    "RemoteError",
    "RequestRefused",
    "TftpError",
    "TftpUrl",
    "TransferResult",
    "TransferTimeout",
    "get_file",
    "get_file_async",
    "parse_url",
    "put_file",
    "put_file_async",
]

DEFAULT_PORT = 69
DEFAULT_TIMEOUT = 1.0
DEFAULT_RETRIES = 5
MODES = ("octet", "netascii")
_MAX_DATAGRAM = 65536 + 4
_READ_CHUNK = 64 * 1024

log = logging.getLogger("ptftpd.tftp.client")

ProgressCallback = Callable[[int, int | None], None]
"""Called as `progress(done, total)`: bytes on the wire so far, and the expected total
(from tsize or the local file's size) or None when unknown. Called at most once per
burst of packets, so it may do a little work (a progress bar) without slowing the
transfer."""

_ERROR_NAMES: dict[int, str] = {
    ErrorCode.NOT_DEFINED: "not defined",
    ErrorCode.FILE_NOT_FOUND: "file not found",
    ErrorCode.ACCESS_VIOLATION: "access violation",
    ErrorCode.DISK_FULL: "disk full",
    ErrorCode.ILLEGAL_OPERATION: "illegal operation",
    ErrorCode.UNKNOWN_TID: "unknown transfer ID",
    ErrorCode.FILE_EXISTS: "file already exists",
    ErrorCode.NO_SUCH_USER: "no such user",
    ErrorCode.OPTION_REFUSED: "option refused",
}


class TftpError(Exception):
    """Every failure of a transfer; `str()` is the one line to show a person."""


class RemoteError(TftpError):
    """The server answered with an ERROR packet."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.server_message = message
        name = _ERROR_NAMES.get(code, "unknown error")
        text = message.strip() or name
        if text.lower() == name:
            super().__init__(f"server error {code}: {text}")
        else:
            super().__init__(f"server error {code} ({name}): {text}")


class RequestRefused(RemoteError):
    """The server answered the request itself with an ERROR: nothing was transferred,
    so asking again (e.g. without options after ERROR 8) is safe."""


class TransferTimeout(TftpError):
    """The server stopped answering (or never answered) within the retry budget."""


class ProtocolError(TftpError):
    """The server broke the protocol, e.g. granted an option that was not asked for."""


@dataclass(frozen=True, slots=True)
class TransferResult:
    """What a finished transfer did. `bytes` counts local bytes (written for a get,
    read for a put); `wire_bytes` counts DATA payload, which differs in netascii."""

    bytes: int
    wire_bytes: int
    seconds: float
    blksize: int
    windowsize: int
    tsize: int | None
    options: tuple[tuple[str, str], ...]
    retransmissions: int
    rfc1350_fallback: bool

    @property
    def rate(self) -> float:
        """Bytes per second (loopback transfers can take ~0 s: never divide by 0)."""
        return self.bytes / max(self.seconds, 1e-6)

    def summary(self, verb: str = "transferred") -> str:
        from ptftpd.log import format_rate

        return (
            f"{verb} {self.bytes} bytes in {self.seconds:.2f} s "
            f"({format_rate(self.bytes, self.seconds)})"
        )


@dataclass(frozen=True, slots=True)
class TftpUrl:
    """A `tftp://host[:port]/path[;mode=netascii]` URL (RFC 3617)."""

    host: str
    port: int | None  # None: not in the URL (the caller's default, usually 69)
    path: str
    mode: str | None = None


def parse_url(url: str) -> TftpUrl:
    """Split a tftp:// URL; raise `TftpError` with a readable message when it is not one."""
    from urllib.parse import unquote, urlsplit  # only URLs need it

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TftpError(f"invalid URL {url!r}: {exc}") from None
    if parts.scheme.lower() != "tftp" or not parts.hostname:
        raise TftpError(f"invalid URL {url!r}: expected tftp://HOST[:PORT]/PATH")
    path = parts.path
    mode: str | None = None
    if ";" in path:
        path, _, param = path.partition(";")
        key, _, value = param.partition("=")
        if key.lower() != "mode" or value.lower() not in MODES:
            raise TftpError(f"invalid URL {url!r}: unknown parameter {param!r}")
        mode = value.lower()
    path = unquote(path[1:] if path.startswith("/") else path)
    if not path:
        raise TftpError(f"invalid URL {url!r}: no file name")
    return TftpUrl(parts.hostname, port, path, mode)


def format_host(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_options(
    mode: str, blksize: int | None, windowsize: int | None, timeout: float | None, retries: int
) -> None:
    if mode not in MODES:
        raise TftpError(f"unknown mode {mode!r}: use octet or netascii")
    if blksize is not None and not BLKSIZE_MIN <= blksize <= BLKSIZE_MAX:
        raise TftpError(f"blksize must be {BLKSIZE_MIN}..{BLKSIZE_MAX}, not {blksize}")
    if windowsize is not None and not WINDOWSIZE_MIN <= windowsize <= WINDOWSIZE_MAX:
        raise TftpError(f"windowsize must be {WINDOWSIZE_MIN}..{WINDOWSIZE_MAX}")
    if timeout is not None and not 0 < timeout <= TIMEOUT_MAX:
        raise TftpError(f"timeout must be more than 0 and at most {TIMEOUT_MAX} seconds")
    if retries < 0:
        raise TftpError("retries must not be negative")


def _request_options(
    *,
    is_read: bool,
    blksize: int | None,
    windowsize: int | None,
    tsize: bool,
    size: int | None,
    timeout: float | None,
) -> dict[str, int]:
    """The options to ask for, in the order they go on the wire. A default value
    (blksize 512, windowsize 1) is still asked for when given explicitly: asking is
    harmless and tells the server to answer with an OACK."""
    options: dict[str, int] = {}
    if blksize is not None:
        options["blksize"] = blksize
    if windowsize is not None:
        options["windowsize"] = windowsize
    if tsize:
        if is_read:
            options["tsize"] = 0
        elif size is not None:
            options["tsize"] = size
    if timeout is not None and timeout >= TIMEOUT_MIN:
        # RFC 2349 speaks whole seconds; a sub-second timeout stays a local matter.
        options["timeout"] = min(TIMEOUT_MAX, round(timeout))
    return options


def _addrinfo(
    infos: list[tuple[Any, ...]], host: str
) -> tuple[socket.AddressFamily, tuple[object, ...]]:
    """The address to use: IPv4 when a name has both kinds, since most TFTP servers
    listen on IPv4 only (a request to an address nobody serves only times out); an
    IPv6 literal, or a name with only IPv6 addresses, is reached over IPv6."""
    if not infos:
        raise TftpError(f"cannot resolve host {host!r}")
    ipv4 = [info for info in infos if info[0] == socket.AF_INET]
    family, _, _, _, sockaddr = (ipv4 or infos)[0]
    return family, tuple(sockaddr)


async def _resolve_async(host: str, port: int) -> tuple[socket.AddressFamily, tuple[object, ...]]:
    import asyncio

    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise TftpError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    except UnicodeError:
        raise TftpError(f"invalid host name {host!r}") from None
    return _addrinfo(infos, host)


def _resolve(host: str, port: int) -> tuple[socket.AddressFamily, tuple[object, ...]]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise TftpError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    except UnicodeError:
        raise TftpError(f"invalid host name {host!r}") from None
    return _addrinfo(infos, host)


class _Exchange:
    """One request and the transfer it starts, on its own socket (its own TID).

    The protocol logic only: it is fed datagrams (`datagram`) and deadline expiries
    (`expire`), and exposes the next `deadline`. Two drivers run it: one on an asyncio
    loop (`_AsyncDriver`), one in plain blocking code (`_drive_blocking`), which is what
    the command line and the blocking API use: no event loop between a DATA block and
    its ACK, so a lock-step transfer turns around faster.
    """

    def __init__(
        self,
        *,
        family: socket.AddressFamily,
        server: tuple[object, ...],
        request: Request,
        requested: dict[str, int],
        file: BinaryIO,
        timeout: float,
        retries: int,
        progress: ProgressCallback | None,
        total: int | None,
    ) -> None:
        self.server = server
        self.server_text = format_host(str(server[0]), int(str(server[1])))
        self.request = request
        self.request_bytes = request.encode()
        self.is_read = request.is_read
        self.requested = requested
        self.file = file
        self.timeout = timeout
        self.retries = retries
        self.progress = progress
        self.total = total
        self.netascii = request.mode == "netascii"
        self.decoder = netascii.Decoder() if self.netascii and self.is_read else None
        self._fast_receive = self.is_read and self.decoder is None
        self.machine: Sender | Receiver | None = None
        self.peer: tuple[str, int] | None = None
        self.negotiated_blksize = DEFAULT_BLKSIZE
        self.negotiated_windowsize = 1
        self.tsize: int | None = None
        self.granted: tuple[tuple[str, str], ...] = ()
        self.fallback = False
        self.local_bytes = 0
        self.started = time.monotonic()
        self.finished_at: float | None = None
        self.succeeded = False
        self.error: TftpError | None = None
        self.closed = False  # nothing more to do: the driver closes the socket
        self.deadline: float | None = None  # time.monotonic() of the next expiry
        self._restart = False
        self._request_tries = 0
        self._reported = -1
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            self.sock.bind(("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0))
        except OSError as exc:
            self.sock.close()
            raise TftpError(f"cannot open a UDP socket: {exc.strerror}") from None

    @property
    def settled(self) -> bool:
        """The caller has its answer (the socket may still dally to re-ACK)."""
        return self.succeeded or self.error is not None

    # -- events ------------------------------------------------------------------------
    def begin(self) -> None:
        self._send_request()
        self.arm()

    def _send_request(self) -> None:
        self._request_tries += 1
        request = self.request
        log.debug(
            "%s %s %r %s to %s (try %d)%s",
            "RRQ" if self.is_read else "WRQ",
            request.mode,
            request.filename,
            " ".join(f"{k}={v}" for k, v in request.options) or "no options",
            self.server_text,
            self._request_tries,
            "" if self._request_tries == 1 else ": no answer yet",
        )
        self._sendto(self.request_bytes, self.server)
        self._restart = True

    def arm(self) -> None:
        """Apply a pending timer restart. Drivers call it once per burst of packets, not
        per packet: a clock read per DATA block is measurable at loopback speed."""
        if self._restart and not self.closed:
            self._restart = False
            self.deadline = time.monotonic() + self.timeout

    def expire(self) -> None:
        """The deadline has passed: resend the request or let the machine retransmit."""
        machine = self.machine
        if machine is None:
            if self._request_tries > self.retries:
                seconds = time.monotonic() - self.started
                self._fail(
                    TransferTimeout(
                        f"no answer from {self.server_text} after {self._request_tries} "
                        f"tries ({seconds:.1f} s)"
                    )
                )
            else:
                self._send_request()
        elif not isinstance(machine, Sender) or self._feed():
            log.debug("%s: timeout, retransmitting", self.server_text)
            self._apply(machine.timeout())
        self.arm()

    def datagrams(self, batch: list[bytes], addr: tuple[Any, ...]) -> None:
        """Several datagrams from one sender at once (UDP GRO): a window of a get goes
        through the receiver in one call; anything else one datagram at a time."""
        peer = self.peer
        machine = self.machine
        if (
            len(batch) == 1
            or peer is None
            or addr[1] != peer[1]
            or addr[0] != peer[0]
            or not isinstance(machine, Receiver)
        ):
            for data in batch:
                self.datagram(data, addr)
                if self.closed:
                    return
            return
        self._handle_step(machine, machine.receive_many(batch), peer)

    def datagram(self, data: bytes, addr: tuple[Any, ...]) -> None:
        peer = self.peer
        if peer is None:
            if addr[0] == self.server[0]:
                self._latch(data, (addr[0], addr[1]))
            return
        if addr[1] != peer[1] or addr[0] != peer[0]:
            # RFC 1350: a packet from a wrong TID gets ERROR 5; the transfer goes on.
            if not (len(data) >= 2 and data[1] == Opcode.ERROR):
                log.debug("packet from unknown port %s: answering ERROR 5", addr[:2])
                self._sendto(error_bytes(ErrorCode.UNKNOWN_TID, "unknown transfer ID"), addr)
            return
        machine = self.machine
        assert machine is not None
        self._handle_step(machine, machine.receive(data), peer)

    def _handle_step(self, machine: Sender | Receiver, step: Step, peer: tuple[Any, ...]) -> None:
        if self._fast_receive and machine.state is State.ACTIVE:
            # The steady state of a get, inlined: it runs once per DATA block.
            for datagram in step.send:
                self._sendto(datagram, peer)
            if step.data:
                try:
                    self.file.write(step.data)
                except OSError as exc:
                    self._write_error(exc)
                    return
                self.local_bytes += len(step.data)
            if step.timer is Timer.RESTART:
                self._restart = True
            return
        self._apply(step)

    def report(self) -> None:
        if self.progress is None or self.machine is None:
            return
        machine = self.machine
        done = machine.bytes_acked if isinstance(machine, Sender) else machine.bytes_received
        if done != self._reported:
            self._reported = done
            self.progress(done, self.total)

    def _latch(self, data: bytes, addr: tuple[str, int]) -> None:
        """The first reply from the server's address: its source port is the TID."""
        try:
            packet = decode(data)
        except PacketError:
            return
        if isinstance(packet, Error):
            log.debug("request refused: error %d %s", packet.code, packet.message)
            self._fail(RequestRefused(packet.code, packet.message))
            return
        if isinstance(packet, OptionAck):
            log.debug(
                "OACK from port %d: %s",
                addr[1],
                " ".join(f"{k}={v}" for k, v in packet.options) or "no options",
            )
            try:
                negotiated = accept_oack(self.requested, packet.options)
            except OptionError as exc:
                self._sendto(error_bytes(ErrorCode.OPTION_REFUSED, str(exc)), addr)
                self._fail(ProtocolError(f"refused the server's options: {exc}"))
                return
            self.peer = addr
            self.negotiated_blksize = negotiated.blksize
            self.negotiated_windowsize = negotiated.windowsize
            self.granted = packet.options
            if negotiated.tsize is not None:
                self.tsize = negotiated.tsize
                if self.is_read:
                    self.total = negotiated.tsize
            if self.is_read:
                self.machine = Receiver(
                    blksize=negotiated.blksize,
                    windowsize=negotiated.windowsize,
                    retries=self.retries,
                    first_packet=Ack(0).encode(),
                )
                self._apply(self.machine.start())
            else:
                self._start_sender(negotiated.blksize, negotiated.windowsize)
            return
        if self.is_read and isinstance(packet, Data) and packet.block == 1:
            # The server ignored our options (or we sent none): plain RFC 1350.
            log.debug("DATA 1 from port %d: RFC 1350 transfer", addr[1])
            self.peer = addr
            self.fallback = bool(self.requested)
            self.machine = Receiver(blksize=DEFAULT_BLKSIZE, windowsize=1, retries=self.retries)
            self.machine.start()
            self._apply(self.machine.receive(data))
            return
        if not self.is_read and isinstance(packet, Ack) and packet.block == 0:
            log.debug("ACK 0 from port %d: RFC 1350 transfer", addr[1])
            self.peer = addr
            self.fallback = bool(self.requested)
            self._start_sender(DEFAULT_BLKSIZE, 1)
            return
        # Anything else is no answer to our request; the request timer keeps running.

    def _start_sender(self, blksize: int, windowsize: int) -> None:
        self.negotiated_blksize, self.negotiated_windowsize = blksize, windowsize
        self.machine = Sender(blksize=blksize, windowsize=windowsize, retries=self.retries)
        if self._feed():
            self._apply(self.machine.start())

    # -- files -------------------------------------------------------------------------
    def _feed(self) -> bool:
        machine = self.machine
        assert isinstance(machine, Sender)
        read = self.file.read
        while (wanted := machine.bytes_wanted) > 0:
            try:
                chunk = read(max(wanted, _READ_CHUNK))
            except OSError as exc:
                self._abort(ErrorCode.NOT_DEFINED, f"cannot read the local file: {exc.strerror}")
                return False
            if not chunk:
                machine.feed(b"", True)
                break
            self.local_bytes += len(chunk)
            machine.feed(netascii.encode(chunk) if self.netascii else chunk)
        return True

    def _write(self, data: bytes, *, decode: bool = True) -> bool:
        decoder = self.decoder
        if decoder is not None and decode:
            data = decoder.feed(data)
        try:
            self.file.write(data)
        except OSError as exc:
            self._write_error(exc)
            return False
        self.local_bytes += len(data)
        return True

    def _write_error(self, exc: OSError) -> None:
        code = (
            ErrorCode.DISK_FULL
            if exc.errno in (errno.ENOSPC, errno.EDQUOT)
            else ErrorCode.NOT_DEFINED
        )
        self._abort(code, f"cannot write the local file: {exc.strerror}")

    def _complete(self) -> bool:
        """Every byte is in (get) or acknowledged (put): flush and report success."""
        if self.decoder is not None and not self._write(self.decoder.flush(), decode=False):
            return False
        try:
            self.file.flush()
        except OSError as exc:
            self._abort(ErrorCode.DISK_FULL, f"cannot write the local file: {exc.strerror}")
            return False
        except ValueError:
            pass  # a file object without flush semantics
        self.finished_at = time.monotonic()
        self.report()
        self.succeeded = True
        return True

    # -- steps -------------------------------------------------------------------------
    def _apply(self, step: Step) -> None:
        machine = self.machine
        assert machine is not None
        peer = self.peer
        assert peer is not None
        # ACK first, write after: the server starts its next window while we write.
        for datagram in step.send:
            self._sendto(datagram, peer)
        if step.data and not self._write(step.data):
            return
        timer = step.timer
        if timer is Timer.RESTART:
            self._restart = True
        elif timer is Timer.CANCEL:
            self.deadline = None
            self._restart = False
        if isinstance(machine, Sender) and machine.state is State.ACTIVE and not self._feed():
            return
        state = machine.state
        if state is State.COMPLETE:
            # The receiver dallies to re-ACK a resent last block (when its driver lets
            # it); the caller already has its file.
            if not self.settled:
                self._complete()
        elif state is State.DONE:
            if self.settled or self._complete():
                self.closed = True
        elif state is State.FAILED:
            error = machine.peer_error
            if error is not None:
                self._fail(RemoteError(error.code, error.message))
            else:
                seconds = time.monotonic() - self.started
                self._fail(
                    TransferTimeout(
                        f"transfer with {self.server_text} timed out after "
                        f"{self.retries} retries ({seconds:.1f} s)"
                    )
                )

    def _sendto(self, datagram: bytes, addr: tuple[object, ...]) -> None:
        try:
            self.sock.sendto(datagram, addr)
        except (BlockingIOError, InterruptedError):
            pass  # the retransmission timer covers a full socket buffer
        except OSError as exc:
            if self.machine is None and exc.errno in (
                errno.ENETUNREACH,
                errno.EHOSTUNREACH,
                errno.EADDRNOTAVAIL,
                errno.EAFNOSUPPORT,
            ):
                self._fail(TftpError(f"cannot reach {self.server_text}: {exc.strerror}"))

    # -- ending ------------------------------------------------------------------------
    def _abort(self, code: ErrorCode, message: str) -> None:
        if self.peer is not None:
            self._sendto(error_bytes(code, message), self.peer)
        self._fail(TftpError(message))

    def _fail(self, error: TftpError) -> None:
        if not self.settled:
            self.error = error
        self.closed = True
        self.deadline = None

    def cancel(self) -> None:
        """Stop now (the caller gave up): tell the server, so it does not retry for long."""
        if not self.closed and self.peer is not None and not self.settled:
            self._sendto(error_bytes(ErrorCode.NOT_DEFINED, "transfer cancelled"), self.peer)
        self.closed = True
        self.deadline = None

    def result(self) -> TransferResult:
        machine = self.machine
        wire = 0
        retransmissions = 0
        if machine is not None:
            wire = machine.bytes_acked if isinstance(machine, Sender) else machine.bytes_received
            retransmissions = machine.retransmissions
        end = self.finished_at or time.monotonic()
        return TransferResult(
            bytes=self.local_bytes,
            wire_bytes=wire,
            seconds=end - self.started,
            blksize=self.negotiated_blksize,
            windowsize=self.negotiated_windowsize,
            tsize=self.tsize,
            options=self.granted,
            retransmissions=retransmissions,
            rfc1350_fallback=self.fallback,
        )

    def outcome(self) -> TransferResult:
        if self.error is not None:
            raise self.error
        return self.result()


# -- drivers ---------------------------------------------------------------------------
# Linux UDP generic receive offload: the kernel may hand over several datagrams of one
# flow in one read, all `segment` bytes but the last, with the size in a control
# message. A server sending a window with GSO (ptftpd does) then costs one read per
# window instead of one per block.
_UDP_GRO = 104  # socket.UDP_GRO from Python 3.12 on
_GRO_CMSG_SPACE = socket.CMSG_SPACE(4)


def _enable_gro(sock: socket.socket) -> bool:
    try:
        sock.setsockopt(socket.SOL_UDP, _UDP_GRO, 1)
    except (OSError, AttributeError):
        return False
    return True


def _gro_segments(data: bytes, ancdata: list[tuple[int, int, bytes]]) -> list[bytes]:
    """Split a coalesced read back into the datagrams the peer sent."""
    for level, kind, value in ancdata:
        if level == socket.SOL_UDP and kind == _UDP_GRO and len(value) >= 2:
            segment = int.from_bytes(value[:4] if len(value) >= 4 else value[:2], sys.byteorder)
            if 0 < segment < len(data):
                return [data[i : i + segment] for i in range(0, len(data), segment)]
    return [data]


def _drive_blocking(exchange: _Exchange) -> None:
    """Run `exchange` to its answer in the calling thread. The socket stays
    non-blocking: while packets are queued (a window) they are read back to back, and
    only an empty socket costs a poll. No dally after the last ACK (like tftp-hpa's
    client): the caller has its file at once."""
    sock = exchange.sock
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    recvmsg, datagram, arm = sock.recvmsg, exchange.datagram, exchange.arm
    gro = _enable_gro(sock)
    cmsg_space = _GRO_CMSG_SPACE if gro else 0
    try:
        exchange.begin()
        while not exchange.settled and not exchange.closed:
            try:
                data, ancdata, _, addr = recvmsg(_MAX_DATAGRAM, cmsg_space)
            except (BlockingIOError, InterruptedError):
                exchange.report()
                deadline = exchange.deadline
                wait = exchange.timeout if deadline is None else deadline - time.monotonic()
                ready = wait > 0 and poller.poll(math.ceil(wait * 1000))
                if not ready and (deadline is None or time.monotonic() >= deadline):
                    exchange.expire()
                continue
            except OSError:
                continue
            if ancdata:
                exchange.datagrams(_gro_segments(data, ancdata), addr)
            else:
                datagram(data, addr)
            arm()
    except BaseException:
        exchange.cancel()
        raise
    finally:
        exchange.closed = True
        sock.close()


class _AsyncDriver:
    """Runs an exchange on an asyncio loop: a reader callback drains the socket, and a
    lazily re-armed timer follows the exchange's deadline (the server's pattern)."""

    def __init__(self, exchange: _Exchange) -> None:
        self.exchange = exchange
        import asyncio

        self.loop = asyncio.get_running_loop()
        self.answer: asyncio.Future[None] = self.loop.create_future()
        self.finished = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._shut = False

    def start(self) -> None:
        self.loop.add_reader(self.exchange.sock.fileno(), self._on_readable)
        self.exchange.begin()
        self._after()

    def _on_readable(self) -> None:
        exchange = self.exchange
        recvfrom, datagram = exchange.sock.recvfrom, exchange.datagram
        for _ in range(256):  # bounded so timers and other tasks still get their turn
            try:
                data, addr = recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue
            datagram(data, addr)
            if exchange.closed or (exchange.settled and not self.answer.done()):
                break
        exchange.arm()
        exchange.report()
        self._after()

    def _on_timer(self) -> None:
        self._timer = None
        exchange = self.exchange
        if exchange.closed or exchange.deadline is None:
            self._after()
            return
        left = exchange.deadline - time.monotonic()
        if left > 0:
            self._timer = self.loop.call_later(left, self._on_timer)
            return
        exchange.expire()
        self._after()

    def _after(self) -> None:
        exchange = self.exchange
        if exchange.settled and not self.answer.done():
            if exchange.error is not None:
                self.answer.set_exception(exchange.error)
            else:
                self.answer.set_result(None)
        if exchange.closed:
            self.shut()
        elif exchange.deadline is not None and self._timer is None:
            left = max(0.0, exchange.deadline - time.monotonic())
            self._timer = self.loop.call_later(left, self._on_timer)

    def shut(self) -> None:
        if self._shut:
            return
        self._shut = True
        self.exchange.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with contextlib.suppress(ValueError, OSError, RuntimeError):
            self.loop.remove_reader(self.exchange.sock.fileno())
        self.exchange.sock.close()
        if not self.answer.done():
            self.answer.cancel()
        self.finished.set()


_dallies: set[asyncio.Task[None]] = set()  # strong references while they run


async def _dally(driver: _AsyncDriver) -> None:
    """Keep the socket a little longer to re-ACK a resent final block (RFC 1350): the
    machine's own timer ends it. Cancelled (socket closed) when the loop shuts down."""
    try:
        await driver.finished.wait()
    finally:
        driver.shut()


# -- one transfer, with the ERROR 8 retry ------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Plan:
    host: str
    port: int
    opcode: Opcode
    filename: str
    mode: str
    requested: dict[str, int]
    file: BinaryIO
    timeout: float
    retries: int
    progress: ProgressCallback | None
    total: int | None

    def request(self, with_options: bool) -> Request:
        options = tuple((k, str(v)) for k, v in self.requested.items()) if with_options else ()
        return Request(self.opcode, self.filename, self.mode, options)

    def exchange(
        self, family: socket.AddressFamily, server: tuple[object, ...], with_options: bool
    ) -> _Exchange:
        return _Exchange(
            family=family,
            server=server,
            request=self.request(with_options),
            requested=self.requested if with_options else {},
            file=self.file,
            timeout=self.timeout,
            retries=self.retries,
            progress=self.progress,
            total=self.total,
        )


def _retry_without_options(exc: RequestRefused, plan: _Plan) -> bool:
    """The server refused our options (ERROR 8) in answer to the request: ask again
    without any, from a new TID."""
    retry = exc.code == ErrorCode.OPTION_REFUSED and bool(plan.requested)
    if retry:
        log.debug("options refused (%s): asking again without options", exc.server_message)
    return retry


def _as_fallback(result: TransferResult) -> TransferResult:
    return dataclasses.replace(result, rfc1350_fallback=True)


def _transfer(plan: _Plan) -> TransferResult:
    family, server = _resolve(plan.host, plan.port)
    exchange = plan.exchange(family, server, True)
    _drive_blocking(exchange)
    try:
        return exchange.outcome()
    except RequestRefused as exc:
        if not _retry_without_options(exc, plan):
            raise
    exchange = plan.exchange(family, server, False)
    _drive_blocking(exchange)
    return _as_fallback(exchange.outcome())


async def _run_async(exchange: _Exchange) -> TransferResult:
    driver = _AsyncDriver(exchange)
    try:
        driver.start()
        await driver.answer
    except BaseException:
        if exchange.error is None:
            exchange.cancel()
        driver.shut()
        raise
    if not driver.finished.is_set():
        task = driver.loop.create_task(_dally(driver))
        _dallies.add(task)
        task.add_done_callback(_dallies.discard)
    return exchange.result()


async def _transfer_async(plan: _Plan) -> TransferResult:
    family, server = await _resolve_async(plan.host, plan.port)
    try:
        return await _run_async(plan.exchange(family, server, True))
    except RequestRefused as exc:
        if not _retry_without_options(exc, plan):
            raise
    return _as_fallback(await _run_async(plan.exchange(family, server, False)))


def _local_size(file: BinaryIO) -> int | None:
    """Bytes left to read in a regular file, or None for pipes and the like."""
    try:
        st = os.fstat(file.fileno())
        if not stat.S_ISREG(st.st_mode):
            return None
        return max(0, st.st_size - file.tell())
    except (OSError, ValueError, AttributeError):
        return None


def _plan(
    *,
    is_read: bool,
    host: str,
    remote: str,
    file: BinaryIO,
    port: int,
    mode: str,
    blksize: int | None,
    windowsize: int | None,
    tsize: bool,
    timeout: float | None,
    retries: int,
    rfc1350: bool,
    progress: ProgressCallback | None,
) -> _Plan:
    mode = mode.lower()
    _check_options(mode, blksize, windowsize, timeout, retries)
    size = None if is_read else _local_size(file)
    requested = (
        {}
        if rfc1350
        else _request_options(
            is_read=is_read,
            blksize=blksize,
            windowsize=windowsize,
            tsize=tsize and mode == "octet",
            size=size,
            timeout=timeout,
        )
    )
    return _Plan(
        host=host,
        port=port,
        opcode=Opcode.RRQ if is_read else Opcode.WRQ,
        filename=remote,
        mode=mode,
        requested=requested,
        file=file,
        timeout=timeout or DEFAULT_TIMEOUT,
        retries=retries,
        progress=progress,
        total=size if mode == "octet" else None,
    )


# -- public ----------------------------------------------------------------------------
def get_file(
    host: str,
    remote: str,
    file: BinaryIO,
    *,
    port: int = DEFAULT_PORT,
    mode: str = "octet",
    blksize: int | None = None,
    windowsize: int | None = None,
    tsize: bool = False,
    timeout: float | None = None,
    retries: int = DEFAULT_RETRIES,
    rfc1350: bool = False,
    progress: ProgressCallback | None = None,
) -> TransferResult:
    """Download `remote` from `host` into the binary file object `file` (blocking).

    Options are asked for only when given (`rfc1350=True` asks for none at all);
    `timeout` is the retransmission interval in seconds (1 by default); from 1 s up it
    is also sent, rounded, as the RFC 2349 timeout option so both ends retransmit at
    the same pace (a sub-second value stays local: the option has whole seconds). Raises
    `TftpError` (with a one-line message) on any failure; nothing is written to
    `file` before the server has accepted the request.
    """
    return _transfer(
        _plan(
            is_read=True,
            host=host,
            remote=remote,
            file=file,
            port=port,
            mode=mode,
            blksize=blksize,
            windowsize=windowsize,
            tsize=tsize,
            timeout=timeout,
            retries=retries,
            rfc1350=rfc1350,
            progress=progress,
        )
    )


def put_file(
    host: str,
    file: BinaryIO,
    remote: str,
    *,
    port: int = DEFAULT_PORT,
    mode: str = "octet",
    blksize: int | None = None,
    windowsize: int | None = None,
    tsize: bool = False,
    timeout: float | None = None,
    retries: int = DEFAULT_RETRIES,
    rfc1350: bool = False,
    progress: ProgressCallback | None = None,
) -> TransferResult:
    """Upload everything left in the binary file object `file` to `remote` on `host`
    (blocking). Same options as `get_file`; `tsize` announces the size when `file` is
    a regular file in octet mode (the server can then refuse early if its disk is too
    small)."""
    return _transfer(
        _plan(
            is_read=False,
            host=host,
            remote=remote,
            file=file,
            port=port,
            mode=mode,
            blksize=blksize,
            windowsize=windowsize,
            tsize=tsize,
            timeout=timeout,
            retries=retries,
            rfc1350=rfc1350,
            progress=progress,
        )
    )


async def get_file_async(
    host: str,
    remote: str,
    file: BinaryIO,
    *,
    port: int = DEFAULT_PORT,
    mode: str = "octet",
    blksize: int | None = None,
    windowsize: int | None = None,
    tsize: bool = False,
    timeout: float | None = None,
    retries: int = DEFAULT_RETRIES,
    rfc1350: bool = False,
    progress: ProgressCallback | None = None,
) -> TransferResult:
    """`get_file` for a running event loop: other tasks run during the transfer, and
    the socket dallies after the last ACK to re-ACK a resent final block (RFC 1350)."""
    return await _transfer_async(
        _plan(
            is_read=True,
            host=host,
            remote=remote,
            file=file,
            port=port,
            mode=mode,
            blksize=blksize,
            windowsize=windowsize,
            tsize=tsize,
            timeout=timeout,
            retries=retries,
            rfc1350=rfc1350,
            progress=progress,
        )
    )


async def put_file_async(
    host: str,
    file: BinaryIO,
    remote: str,
    *,
    port: int = DEFAULT_PORT,
    mode: str = "octet",
    blksize: int | None = None,
    windowsize: int | None = None,
    tsize: bool = False,
    timeout: float | None = None,
    retries: int = DEFAULT_RETRIES,
    rfc1350: bool = False,
    progress: ProgressCallback | None = None,
) -> TransferResult:
    """`put_file` for a running event loop."""
    return await _transfer_async(
        _plan(
            is_read=False,
            host=host,
            remote=remote,
            file=file,
            port=port,
            mode=mode,
            blksize=blksize,
            windowsize=windowsize,
            tsize=tsize,
            timeout=timeout,
            retries=retries,
            rfc1350=rfc1350,
            progress=progress,
        )
    )
