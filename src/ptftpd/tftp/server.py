"""asyncio TFTP server: a thin I/O shell around the sans-IO machines.

Each transfer gets its own UDP socket on the address the request came to (a new TID,
RFC 1350) and is driven straight from the event loop's reader callback, which keeps the
per-packet cost low enough for thousands of concurrent transfers in one process.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import shutil
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

from ptftpd.log import format_rate
from ptftpd.tftp import netascii
from ptftpd.tftp.machine import Receiver, Sender, State, Step, Timer
from ptftpd.tftp.options import BLKSIZE_MAX, Negotiated, ServerLimits, negotiate
from ptftpd.tftp.packets import (
    ErrorCode,
    Opcode,
    OptionAck,
    PacketError,
    Request,
    ack_bytes,
    decode,
    error_bytes,
)
from ptftpd.tftp.paths import PathRefused, resolve

log = logging.getLogger("ptftpd.tftp.server")

MODES = ("octet", "netascii")
_READ_CHUNK = 64 * 1024
_MAX_DATAGRAM = 65536 + 4
_monotonic = time.monotonic
# Linux UDP generic segmentation offload (4.18+): one sendmsg() carries a whole window
# and the kernel cuts it into separate datagrams of `segment` bytes each (the last may
# be shorter), so every DATA packet still leaves as its own datagram, RFC 7440.
_UDP_SEGMENT = 103  # socket.UDP_SEGMENT from Python 3.12 on
_GSO_MAX_SEGMENTS = 64
_GSO_MAX_BYTES = 65000
_GSO_AVAILABLE = hasattr(socket, "SOL_UDP") and sys.platform == "linux"


class ServerStartError(Exception):
    """A start-up problem that the CLI reports as one line (exit 1)."""


@dataclass(frozen=True)
class ServerConfig:
    root: Path
    read_only: bool = False
    rfc1350: bool = False
    blksize_max: int = BLKSIZE_MAX
    windowsize_max: int = 64
    timeout: float = 1.0
    retries: int = 5
    max_sessions: int = 4096

    @property
    def limits(self) -> ServerLimits:
        return ServerLimits(self.blksize_max, self.windowsize_max, not self.rfc1350)


@dataclass
class ServerStats:
    started: int = 0
    completed: int = 0
    failed: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    active_by_file: dict[str, int] = field(default_factory=dict)


class _Refusal(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Transfer:
    """One transfer: its socket, its machine, its file, its timer."""

    def __init__(
        self,
        server: TftpServer,
        sock: socket.socket,
        peer: tuple[str, int],
        request: Request,
        key: tuple[object, ...],
        machine: Sender | Receiver,
        negotiated: Negotiated,
        file: BinaryIO,
        path: Path,
        temp_path: Path | None,
        timeout: float,
    ) -> None:
        self.server = server
        self.loop = server.loop
        self.sock = sock
        self.peer = peer
        self.request = request
        self.key = key
        self.machine = machine
        self.negotiated = negotiated
        self.file = file
        self.path = path
        self.temp_path = temp_path
        self.timeout = timeout
        self.netascii = request.mode.lower() == "netascii"
        self.decoder = netascii.Decoder() if self.netascii else None
        self.started = time.monotonic()
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._gso = _GSO_AVAILABLE
        self._is_sender = isinstance(machine, Sender)
        self.error_sent: str | None = None

    # -- driving the machine ---------------------------------------------------------
    def begin(self) -> None:
        self.loop.add_reader(self.sock.fileno(), self._on_readable)
        self._feed()
        self._apply(self.machine.start())

    def _feed(self) -> None:
        machine = self.machine
        if not isinstance(machine, Sender):
            return
        while (wanted := machine.bytes_wanted) > 0:
            size = max(wanted, _READ_CHUNK)
            chunk = self.file.read(size)
            eof = len(chunk) < size
            if self.netascii:
                chunk = netascii.encode(chunk)
            machine.feed(chunk, eof)

    def _on_readable(self) -> None:
        sock, peer, machine = self.sock, self.peer, self.machine
        for _ in range(64):  # bounded so one busy transfer cannot starve the others
            try:
                data, addr = sock.recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            if addr[0] != peer[0] or addr[1] != peer[1]:
                # RFC 1350: a packet from a wrong TID gets ERROR 5; the transfer goes on.
                # An ERROR is never answered, so two endpoints cannot ping-pong.
                if not (len(data) >= 2 and data[1] == Opcode.ERROR):
                    self._sendto(error_bytes(ErrorCode.UNKNOWN_TID, "unknown transfer ID"), addr)
                continue
            step = machine.receive(data)
            self._apply(step)
            if self._closed:
                return

    def _on_timer(self) -> None:
        self._timer = None
        if self._deadline is None or self._closed:
            return
        now = self.loop.time()
        if now < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._on_timer)
            return
        self._feed()
        self._apply(self.machine.timeout())

    def _sendto(self, datagram: bytes, addr: tuple[str, int]) -> None:
        try:
            self.sock.sendto(datagram, addr)
        except (BlockingIOError, InterruptedError):
            pass  # the retransmission timer covers a full socket buffer
        except OSError as exc:
            log.debug("%s: send failed: %s", self.peer_text, exc)

    def _send_window(self, packets: list[bytes]) -> None:
        """Send consecutive DATA packets with as few system calls as GSO allows."""
        segment = len(packets[0])
        per_call = max(1, min(_GSO_MAX_SEGMENTS, _GSO_MAX_BYTES // segment))
        cmsg = [(socket.SOL_UDP, _UDP_SEGMENT, segment.to_bytes(2, sys.byteorder))]
        for start in range(0, len(packets), per_call):
            group = packets[start : start + per_call]
            if len(group) == 1 or any(len(p) != segment for p in group[:-1]):
                for datagram in group:
                    self._sendto(datagram, self.peer)
                continue
            try:
                self.sock.sendmsg(group, cmsg, 0, self.peer)
            except (BlockingIOError, InterruptedError):
                pass  # the retransmission timer covers a full socket buffer
            except OSError as exc:
                # EINVAL (segment above the path MTU), EIO (no checksum offload), ...:
                # fall back to one sendto() per packet for the rest of this transfer.
                log.debug("%s: GSO send failed (%s), sending packet by packet", self.peer_text, exc)
                self._gso = False
                for datagram in packets[start:]:
                    self._sendto(datagram, self.peer)
                return

    def _apply(self, step: Step) -> None:
        machine = self.machine
        if step.data and not self._write(step.data):
            return
        state = machine.state
        if state is State.COMPLETE and self.temp_path is not None and not self._commit_upload():
            return
        send = step.send
        if len(send) > 1 and self._gso:
            self._send_window(send)
        else:
            for datagram in send:
                self._sendto(datagram, self.peer)
        timer = step.timer
        if timer is Timer.RESTART:
            # loop.time() is time.monotonic() for asyncio's loops; skip the method call
            self._deadline = _monotonic() + self.timeout
            if self._timer is None:
                self._timer = self.loop.call_at(self._deadline, self._on_timer)
        elif timer is Timer.CANCEL:
            self._deadline = None
        if self._is_sender and cast(Sender, machine).bytes_wanted:
            self._feed()
        if state is State.DONE:
            self.finish(None)
        elif state is State.FAILED:
            self.finish(machine.failure or "failed")

    # -- files -----------------------------------------------------------------------
    def _write(self, data: bytes) -> bool:
        if self.decoder is not None:
            data = self.decoder.feed(data)
        try:
            self.file.write(data)
        except OSError as exc:
            code = (
                ErrorCode.DISK_FULL
                if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                else (ErrorCode.ACCESS_VIOLATION)
            )
            self.abort(code, os.strerror(exc.errno or 0) or "write failed")
            return False
        return True

    def _commit_upload(self) -> bool:
        """Make the upload visible under its name only when every byte is on disk."""
        assert self.temp_path is not None
        temp, self.temp_path = self.temp_path, None
        try:
            if self.decoder is not None:
                self.file.write(self.decoder.flush())
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.link(temp, self.path)  # link, unlike rename, never replaces a file
        except FileExistsError:
            self.temp_path = temp
            self.abort(ErrorCode.FILE_EXISTS, "file already exists")
            return False
        except OSError as exc:
            self.temp_path = temp
            code = (
                ErrorCode.DISK_FULL
                if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                else (ErrorCode.ACCESS_VIOLATION)
            )
            self.abort(code, os.strerror(exc.errno or 0) or "could not store file")
            return False
        try:
            os.unlink(temp)
        except OSError:
            pass
        return True

    # -- ending ----------------------------------------------------------------------
    @property
    def peer_text(self) -> str:
        host, port = self.peer[0], self.peer[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def abort(self, code: ErrorCode, message: str) -> None:
        self._sendto(error_bytes(code, message), self.peer)
        self.error_sent = message
        self.finish(message)

    def finish(self, failure: str | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            self.loop.remove_reader(self.sock.fileno())
        except (ValueError, OSError):
            pass
        self.sock.close()
        try:
            self.file.close()
        except OSError:
            pass
        if self.temp_path is not None:
            try:
                os.unlink(self.temp_path)
            except OSError:
                pass
            self.temp_path = None
        self.server._transfer_finished(self, failure)

    def describe(self, failure: str | None) -> str:
        machine = self.machine
        seconds = time.monotonic() - self.started
        if isinstance(machine, Sender):
            direction, nbytes = "RRQ", machine.bytes_acked
            verb = "sent"
        else:
            direction, nbytes = "WRQ", machine.bytes_received
            verb = "received"
        opts = " ".join(f"{k.lower()}={v}" for k, v in self.negotiated.oack) or "no options"
        text = (
            f"{self.peer_text} {direction} {self.request.filename!r} {self.request.mode}: "
            f"{verb} {nbytes} bytes in {seconds:.3f} s ({format_rate(nbytes, seconds)}), "
            f"{opts}"
        )
        if machine.retransmissions:
            text += f", {machine.retransmissions} retransmissions"
        if failure:
            text += f"; failed: {failure}"
        return text


def _identity(protocol: _RequestProtocol) -> _RequestProtocol:
    return protocol


class _RequestProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: TftpServer, local_host: str) -> None:
        self.server = server
        self.local_host = local_host
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.server.handle_request(data, addr, self.local_host, self)
        except Exception:  # a bug must cost one request, never the server
            log.exception("unexpected error handling a request from %s", addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("listening socket error: %s", exc)

    def reply(self, datagram: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(datagram, addr)


class TftpServer:
    """Serves `config.root` on the given addresses; usable from tests and from pxed."""

    def __init__(self, config: ServerConfig) -> None:
        root = Path(config.root)
        if not os.path.isdir(root):
            raise ServerStartError(f"root {config.root} is not a directory")
        self.config = config
        self.root = root.resolve()
        self.loop = asyncio.get_running_loop()
        self.transfers: dict[tuple[object, ...], Transfer] = {}
        self.stats = ServerStats()
        self.bound: list[tuple[str, int]] = []
        self._transports: list[asyncio.DatagramTransport] = []
        self._closed = asyncio.Event()
        self._umask = os.umask(0o022)
        os.umask(self._umask)

    async def start(self, hosts: Iterable[str], port: int) -> None:
        for host in hosts:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            except socket.gaierror as exc:
                raise ServerStartError(f"cannot use address {host}: {exc.strerror}") from None
            family, _, _, _, sockaddr = infos[0]
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(sockaddr)
            except PermissionError:
                sock.close()
                raise ServerStartError(
                    f"no permission to bind UDP port {port} on {host}: "
                    "run as root or choose a port above 1023 with -p"
                ) from None
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EADDRINUSE:
                    raise ServerStartError(f"UDP port {port} on {host} is already in use") from None
                raise ServerStartError(f"cannot bind {host} port {port}: {exc.strerror}") from None
            protocol = _RequestProtocol(self, str(sockaddr[0]))
            transport, _ = await self.loop.create_datagram_endpoint(
                functools.partial(_identity, protocol), sock=sock
            )
            self._transports.append(transport)
            bound = sock.getsockname()
            self.bound.append((bound[0], bound[1]))
            log.info("serving %s on %s port %d", self.root, bound[0], bound[1])

    async def serve_forever(self) -> None:
        await self._closed.wait()

    def close(self) -> None:
        for transport in self._transports:
            transport.close()
        for transfer in list(self.transfers.values()):
            transfer.finish("server shutting down")
        self._closed.set()

    # -- requests --------------------------------------------------------------------
    def handle_request(
        self, data: bytes, addr: tuple[str, int], local_host: str, proto: _RequestProtocol
    ) -> None:
        if len(data) < 2 or data[0] != 0 or data[1] not in (1, 2):
            log.debug("ignoring a non-request datagram from %s on the request port", addr[:2])
            return
        try:
            packet = decode(data)
        except PacketError as exc:
            log.debug("malformed request from %s: %s", addr[:2], exc)
            proto.reply(error_bytes(ErrorCode.ILLEGAL_OPERATION, f"malformed request: {exc}"), addr)
            return
        assert isinstance(packet, Request)
        key = (addr[0], addr[1], data)
        if key in self.transfers:
            log.debug("duplicate request from %s ignored", addr[:2])
            return
        if len(self.transfers) >= self.config.max_sessions:
            log.warning(
                "refusing %s from %s: %d transfers running",
                packet.filename,
                addr[0],
                len(self.transfers),
            )
            proto.reply(error_bytes(ErrorCode.NOT_DEFINED, "server busy, try again"), addr)
            return
        peer = addr  # the full tuple: IPv6 link-local replies need the scope id
        try:
            transfer = self._open_transfer(packet, peer, local_host, key)
        except _Refusal as refusal:
            kind = "RRQ" if packet.is_read else "WRQ"
            log.info("%s %s %r refused: %s", addr[0], kind, packet.filename, refusal.message)
            proto.reply(error_bytes(refusal.code, refusal.message), addr)
            return
        self.transfers[key] = transfer
        self.stats.started += 1
        transfer.begin()

    def _open_transfer(
        self, request: Request, peer: tuple[str, int], local_host: str, key: tuple[object, ...]
    ) -> Transfer:
        mode = request.mode.lower()
        if mode not in MODES:
            raise _Refusal(
                ErrorCode.ILLEGAL_OPERATION, f"unsupported transfer mode {request.mode!r}"
            )
        if not request.is_read and self.config.read_only:
            raise _Refusal(ErrorCode.ACCESS_VIOLATION, "server is read-only")
        try:
            path = resolve(self.root, request.filename)
        except PathRefused as exc:
            raise _Refusal(ErrorCode.ACCESS_VIOLATION, str(exc)) from None
        if request.is_read:
            file, size = self._open_read(path)
            temp = None
        else:
            file, temp = self._open_write(path, request)
            size = None
        try:
            negotiated = negotiate(
                request.options,
                is_read=request.is_read,
                file_size=None if mode == "netascii" else size,
                limits=self.config.limits,
            )
            if not request.is_read and negotiated.tsize is not None:
                free = shutil.disk_usage(path.parent).free
                if negotiated.tsize > free:
                    raise _Refusal(
                        ErrorCode.DISK_FULL,
                        f"not enough space: {negotiated.tsize} bytes announced, {free} free",
                    )
            oack = OptionAck(negotiated.oack).encode() if negotiated.oack else None
            retries = self.config.retries
            machine: Sender | Receiver
            if request.is_read:
                machine = Sender(
                    blksize=negotiated.blksize,
                    windowsize=negotiated.windowsize,
                    retries=retries,
                    first_packet=oack,
                )
            else:
                machine = Receiver(
                    blksize=negotiated.blksize,
                    windowsize=negotiated.windowsize,
                    retries=retries,
                    first_packet=oack or ack_bytes(0),
                )
            sock = self._transfer_socket(local_host)
        except BaseException:
            file.close()
            if temp is not None:
                os.unlink(temp)
            raise
        return Transfer(
            self,
            sock,
            peer,
            request,
            key,
            machine,
            negotiated,
            file,
            path,
            temp,
            negotiated.timeout or self.config.timeout,
        )

    def _open_read(self, path: Path) -> tuple[BinaryIO, int]:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            raise _Refusal(ErrorCode.FILE_NOT_FOUND, "file not found") from None
        except PermissionError:
            raise _Refusal(ErrorCode.ACCESS_VIOLATION, "permission denied") from None
        except OSError as exc:
            raise _Refusal(ErrorCode.ACCESS_VIOLATION, os.strerror(exc.errno or 0)) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise _Refusal(ErrorCode.ACCESS_VIOLATION, "not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=0), st.st_size

    def _open_write(self, path: Path, request: Request) -> tuple[BinaryIO, Path]:
        if os.path.lexists(path):
            raise _Refusal(ErrorCode.FILE_EXISTS, "file already exists")
        if not path.parent.is_dir():
            raise _Refusal(ErrorCode.ACCESS_VIOLATION, "directory does not exist")
        try:
            fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
            # mkstemp makes the file private; the finished upload gets the usual mode.
            os.fchmod(fd, 0o666 & ~self._umask)
        except PermissionError:
            raise _Refusal(ErrorCode.ACCESS_VIOLATION, "permission denied") from None
        except OSError as exc:
            code = ErrorCode.DISK_FULL if exc.errno == errno.ENOSPC else ErrorCode.ACCESS_VIOLATION
            raise _Refusal(code, os.strerror(exc.errno or 0)) from None
        return os.fdopen(fd, "wb"), Path(temp)

    def _transfer_socket(self, local_host: str) -> socket.socket:
        family = socket.AF_INET6 if ":" in local_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((local_host, 0))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise _Refusal(
                ErrorCode.NOT_DEFINED, f"no socket for transfer: {exc.strerror}"
            ) from None
        return sock

    def _transfer_finished(self, transfer: Transfer, failure: str | None) -> None:
        self.transfers.pop(transfer.key, None)
        machine = transfer.machine
        if isinstance(machine, Sender):
            self.stats.bytes_sent += machine.bytes_acked
        else:
            self.stats.bytes_received += machine.bytes_received
        peer_error = machine.peer_error
        if failure is None:
            self.stats.completed += 1
            log.info("%s", transfer.describe(None))
        else:
            self.stats.failed += 1
            if peer_error is not None and peer_error.code == ErrorCode.OPTION_REFUSED:
                # PXE ROMs fetch tsize this way, then ask again: normal, not a failure.
                log.debug("%s", transfer.describe("client ended after the OACK"))
            else:
                log.info("%s", transfer.describe(failure))
