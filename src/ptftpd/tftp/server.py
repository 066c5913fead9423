"""asyncio TFTP server: the request port, and one driver `Channel` per transfer.

The rules live elsewhere: which requests are served in `request_rules.RequestRules`, path
confinement in `paths.resolve`, negotiation and the transfer in `session.ServerSession`,
how many first replies a source that has not answered may draw in `budget`, sockets,
files and timers in `driver`. This module opens the listening sockets, opens
the file a request names, and writes one log line per transfer. Each transfer gets its
own UDP socket on the address the request came to (a new TID, RFC 1350).
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import os
import shutil
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO, Protocol

from ptftpd import datagrams
from ptftpd.errors import StartError
from ptftpd.events import Failure, TransferFinished, TransferRefused, TransferStarted
from ptftpd.log import format_rate
from ptftpd.paths import PathRefused, resolve
from ptftpd.tftp.budget import SourceBudget, WaitingRoom
from ptftpd.tftp.driver import AsyncChannel, Channel, clock, listening_socket, transfer_socket
from ptftpd.tftp.errors import (
    Cancelled,
    FinalAckLost,
    LocalError,
    RemoteError,
    ServerBusy,
    TftpError,
    TransferTimeout,
    Unanswered,
)
from ptftpd.tftp.localfiles import StagedFile, open_for_read
from ptftpd.tftp.machine import Sender
from ptftpd.tftp.packets import ErrorCode, PacketError, Request, decode, error_bytes
from ptftpd.tftp.request_rules import RequestRules
from ptftpd.tftp.session import Address, ServerConfig, ServerSession, format_host

__all__ = ["FinishedTransfer", "ServerConfig", "SessionGate", "TftpServer"]

log = logging.getLogger("ptftpd.tftp.server")

_REQUESTS_PER_WAKEUP = 64
_WAITING_TICK = 0.125  # while requests wait for a token: one look per refilled token

# A request waiting for a token: its key, its bytes, the request decoded, its source,
# the address it came to and the port that read it.
_Held = tuple[tuple[object, ...], bytes, Request, tuple[str, int], str, "_RequestPort"]


# What `on_finished` hears once per transfer (failure None: it succeeded).
FinishedTransfer = TransferFinished

_KIND_OF_CODE: dict[int, Failure] = {
    ErrorCode.FILE_NOT_FOUND: Failure.NOT_FOUND,
    ErrorCode.ACCESS_VIOLATION: Failure.ACCESS_DENIED,
    ErrorCode.DISK_FULL: Failure.DISK_FULL,
    ErrorCode.ILLEGAL_OPERATION: Failure.ILLEGAL_OPERATION,
    ErrorCode.FILE_EXISTS: Failure.EXISTS,
    ErrorCode.OPTION_REFUSED: Failure.OPTION_REFUSED,
}


def failure_of(error: TftpError | None) -> tuple[Failure, int | None]:
    """The kind and TFTP code of a transfer's error (None: it stopped unfinished
    without one, i.e. the server closed it)."""
    if error is None or isinstance(error, Cancelled):
        return Failure.SHUTDOWN, None if error is None else error.code
    if isinstance(error, RemoteError):
        return Failure.PEER_ERROR, error.code
    if isinstance(error, Unanswered):
        return Failure.UNANSWERED, None
    if isinstance(error, FinalAckLost):
        return Failure.FINAL_ACK_LOST, None
    if isinstance(error, TransferTimeout):
        return Failure.TIMEOUT, None
    return _KIND_OF_CODE.get(error.code, Failure.OTHER), error.code


class SessionGate(Protocol):
    """A session limit shared beyond this server (e.g. by every worker process)."""

    def acquire(self) -> bool:
        """Take a slot for a new transfer; False when the shared limit is reached."""
        ...

    def release(self, sent: int | None) -> None:
        """Give the slot back: `sent` bytes moved (-1: failed; None: never started)."""
        ...


class _RequestPort:
    """One request socket (`datagrams.UdpEndpoint`), drained up to
    `_REQUESTS_PER_WAKEUP` datagrams per wake-up (asyncio's datagram transport reads one
    per loop turn, and a turn with a thousand busy transfers takes long enough that a
    boot storm's requests time out in the queue)."""

    def __init__(self, server: TftpServer, sock: socket.socket) -> None:
        self.server = server
        self.local_host = str(sock.getsockname()[0])
        self.endpoint = datagrams.endpoint(sock, self.requests, log, burst=_REQUESTS_PER_WAKEUP)

    def requests(self, burst: list[datagrams.Datagram]) -> None:
        handle, local_host = self.server.handle_request, self.local_host
        for data, addr in burst:
            try:
                handle(data, addr, local_host, self)
            except Exception:  # a bug must cost one request, never the server
                log.exception("unexpected error handling a request from %s", addr)

    def reply(self, datagram: bytes, addr: tuple[str, int]) -> None:
        self.endpoint.send(datagram, addr)  # full buffer or unreachable: it asks again


class TftpServer:
    """Serves `config.root` on the given addresses; usable from tests and from pxed.
    `on_started(TransferStarted)` is called when a transfer starts, `on_finished`
    with a `FinishedTransfer` after it ended (whatever happened), and
    `on_refused(TransferRefused)` when a request is answered with ERROR
    before any transfer began (file not found, access denied, server busy, read-only...):
    pxed's boot log counts a read as a failed download, the metrics count each by kind.
    A request refused because the server itself is stopping is not reported."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        on_started: Callable[[TransferStarted], None] | None = None,
        on_finished: Callable[[FinishedTransfer], None] | None = None,
        on_refused: Callable[[TransferRefused], None] | None = None,
        gate: SessionGate | None = None,
    ) -> None:
        root = Path(config.root)
        if not os.path.isdir(root):
            raise StartError(f"root {config.root} is not a directory")
        self.config = config
        self.root = root.resolve()
        self.loop = asyncio.get_running_loop()
        self.rules = RequestRules(read_only=config.read_only, max_sessions=config.max_sessions)
        self.transfers: dict[tuple[object, ...], AsyncChannel] = {}
        self.bound: list[tuple[str, int]] = []
        self.on_started = on_started
        self.on_finished = on_finished
        self.on_refused = on_refused
        # `on_dropped(peer_ip)`: a request left unanswered by the source budget.
        self.on_dropped: Callable[[str], None] | None = None
        self.gate = gate
        self.budget = SourceBudget() if config.source_budget else None
        self._charged: dict[tuple[object, ...], int] = {}  # budget tokens per transfer
        self.waiting: WaitingRoom[_Held] = WaitingRoom()  # requests waiting for a token
        self._waiting_timer: asyncio.TimerHandle | None = None
        self._ports: list[_RequestPort] = []
        self._closed = asyncio.Event()
        self.accepting = True  # False while draining: new requests get an ERROR
        # tftpd-hpa --map-file: (filename, client ip, is_read) -> the name to serve;
        # raises LocalError to refuse.
        self.remap: Callable[[str, str, bool], str] | None = None
        # `generated(filename, client ip)`: bytes made for this read request (pxed's
        # per-machine scripts) served instead of a file, or None: the file under ROOT.
        self.generated: Callable[[str, str], bytes | None] | None = None

    async def start(self, hosts: Iterable[str], port: int) -> None:
        sockets: list[socket.socket] = []
        try:
            for host in hosts:
                sockets.append(listening_socket(host, port))
        except StartError:
            for sock in sockets:
                sock.close()
            raise
        await self.start_on(sockets)

    async def start_on(self, sockets: Iterable[socket.socket], *, announce: bool = True) -> None:
        """Serve requests arriving on already bound sockets (e.g. a worker's share).
        `announce=False`: the "serving" line is debug (a pool's parent says it once)."""
        for sock in sockets:
            port = _RequestPort(self, sock)
            port.endpoint.start(self.loop)
            self._ports.append(port)
            bound = sock.getsockname()
            self.bound.append((bound[0], bound[1]))
            log.log(
                logging.INFO if announce else logging.DEBUG,
                "serving %s on %s port %d",
                self.root,
                bound[0],
                bound[1],
            )

    def answered(self) -> int:
        """Running transfers whose client has answered: what a drain waits for (a
        request nobody answered, maybe forged, is not worth delaying a stop)."""
        return sum(1 for runner in self.transfers.values() if runner.channel.session.heard)

    async def serve_forever(self) -> None:
        await self._closed.wait()

    def close(self) -> None:
        for port in self._ports:
            port.endpoint.close()
        self._ports = []
        if self._waiting_timer is not None:
            self._waiting_timer.cancel()
            self._waiting_timer = None
        self.waiting.clear()
        for runner in list(self.transfers.values()):
            runner.stop(cancel=True)
        self._closed.set()

    # -- requests --------------------------------------------------------------------
    def handle_request(
        self, data: bytes, addr: tuple[str, int], local_host: str, proto: _RequestPort
    ) -> None:
        key = self.rules.key(data, addr)
        existing = self.transfers.get(key)
        if existing is not None:
            self._repeated(key, existing, addr)
            return
        if key in self.waiting:
            return  # the client repeated a request that waits for a token
        verdict = self.rules.check(data, addr)
        if verdict is None:
            return
        if isinstance(verdict, LocalError):
            if verdict.code == ErrorCode.NOT_DEFINED:
                log.warning("refusing a request from %s: %s", addr[0], verdict.message)
            else:
                log.info("%s: request refused: %s", addr[0], verdict.message)
            proto.reply(error_bytes(verdict.code, verdict.message), addr)
            self._refused(data, addr, verdict)
            return
        if not self.accepting:
            proto.reply(error_bytes(ErrorCode.NOT_DEFINED, "server shutting down"), addr)
            return
        budget = self.budget
        if budget is not None and not budget.take(addr[0], clock()):
            # Too many first replies to this address or network are unanswered: it may
            # be a forged source, or a burst of real clients whose answers are not read
            # yet. Held until a token frees; no reply at all if none does in time.
            self._hold(key, (key, data, verdict, addr, local_host, proto))
            return
        self._serve(key, data, verdict, addr, local_host, proto)

    def _serve(
        self,
        key: tuple[object, ...],
        data: bytes,
        verdict: Request,
        addr: tuple[str, int],
        local_host: str,
        proto: _RequestPort,
    ) -> None:
        """Start the transfer `verdict` asks for (its first reply's token is taken)."""
        budget = self.budget
        gate = self.gate
        if gate is not None and not gate.acquire():
            log.info("%s: request refused: server busy (all workers)", addr[0])
            proto.reply(error_bytes(ErrorCode.NOT_DEFINED, "server busy, try again"), addr)
            self._refused(data, addr, ServerBusy())
            if budget is not None:
                budget.give_back(addr[0], 1, clock())
            return
        try:
            runner = self._open(verdict, addr, local_host, key)
        except LocalError as refusal:
            if gate is not None:
                gate.release(None)
            if budget is not None:  # an ERROR is no larger than the request
                budget.give_back(addr[0], 1, clock())
            kind = "RRQ" if verdict.is_read else "WRQ"
            log.info("%s %s %r refused: %s", addr[0], kind, verdict.filename, refusal.message)
            proto.reply(error_bytes(refusal.code, refusal.message), addr)
            self._refused(data, addr, refusal)
            return
        self.rules.started(key)
        self.transfers[key] = runner
        if budget is not None:
            self._charged[key] = 1
            runner.on_heard = functools.partial(self._heard, key, str(addr[0]))
        if self.on_started is not None:
            started = TransferStarted(
                str(addr[0]), verdict.filename, verdict.is_read, verdict.options
            )
            self.on_started(started)
        runner.start()

    # -- requests waiting for a token ---------------------------------------------------
    def _hold(self, key: tuple[object, ...], held: _Held) -> None:
        host = str(held[3][0])
        if self.waiting.hold(host, key, held, clock()):
            log.debug("%s: request held: too many unanswered replies", host)
            if self._waiting_timer is None:
                self._waiting_timer = self.loop.call_later(_WAITING_TICK, self._tick)
        else:
            self._dropped(host)

    def _dropped(self, host: str) -> None:
        log.debug("%s: request dropped: too many unanswered replies", host)
        if self.on_dropped is not None:
            self.on_dropped(host)

    def _tick(self) -> None:
        """While requests wait: serve those whose buckets refilled, drop the expired."""
        self._waiting_timer = None
        self._release(None)
        if len(self.waiting):
            self._waiting_timer = self.loop.call_later(_WAITING_TICK, self._tick)

    def _release(self, hosts: list[str] | None) -> None:
        budget = self.budget
        if budget is None or not len(self.waiting):
            return
        now = clock()
        served, expired = self.waiting.release(budget, now, hosts)
        for _, _, _, addr, _, _ in expired:
            self._dropped(str(addr[0]))
        for key, data, verdict, addr, local_host, proto in served:
            try:
                if key in self.transfers:
                    budget.give_back(addr[0], 1, now)
                elif not self.accepting:
                    budget.give_back(addr[0], 1, now)
                    proto.reply(error_bytes(ErrorCode.NOT_DEFINED, "server shutting down"), addr)
                elif self.rules.full:
                    busy = ServerBusy()
                    budget.give_back(addr[0], 1, now)
                    proto.reply(error_bytes(busy.code, busy.message), addr)
                    self._refused(data, addr, busy)
                else:
                    self._serve(key, data, verdict, addr, local_host, proto)
            except Exception:  # a bug must cost one request, never the server
                log.exception("unexpected error serving a held request from %s", addr)

    def _repeated(self, key: tuple[object, ...], runner: AsyncChannel, addr: Address) -> None:
        """The same request again from the same port: our first reply was lost (or the
        source is forged); one more first reply, if the source's budget allows."""
        session = runner.channel.session
        if not isinstance(session, ServerSession) or session.heard or session.closed:
            return
        now = clock()
        budget = self.budget
        if budget is not None:
            if not budget.take(str(addr[0]), now):
                if self.on_dropped is not None:
                    self.on_dropped(str(addr[0]))
                return
            self._charged[key] = self._charged.get(key, 0) + 1
        runner.channel.apply(session.repeat_request(now), now)

    def _heard(self, key: tuple[object, ...], host: str) -> None:
        """The peer answered: the tokens its first replies took go back, and go at once
        to the requests of that address waiting for one."""
        count = self._charged.pop(key, 0)
        if count and self.budget is not None:
            self.budget.give_back(host, count, clock())
            self._release([host])

    def _refused(self, data: bytes, addr: tuple[str, int], refusal: LocalError) -> None:
        """Tell `on_refused` of a refused request, read or write, with why (decoded again:
        refusals are rare). A malformed one names no file."""
        if self.on_refused is None:
            return
        kind = refusal.kind or _KIND_OF_CODE.get(refusal.code, Failure.OTHER)
        if isinstance(refusal, ServerBusy):
            kind = Failure.BUSY
        try:
            request = decode(data)
        except PacketError:
            filename, is_read = "", data[1:2] == b"\x01"
        else:
            if not isinstance(request, Request):
                return
            filename, is_read = request.filename, request.is_read
        self.on_refused(
            TransferRefused(str(addr[0]), filename, refusal.message, kind, refusal.code, is_read)
        )

    def _open(
        self, request: Request, peer: Address, local_host: str, key: tuple[object, ...]
    ) -> AsyncChannel:
        name = request.filename
        if self.remap is not None:
            name = self.remap(name, str(peer[0]), request.is_read)
        try:
            path = resolve(self.root, name)
        except PathRefused as exc:
            raise LocalError(ErrorCode.ACCESS_VIOLATION, str(exc)) from None
        staged: StagedFile | None = None
        file: BinaryIO
        made = None
        if request.is_read and self.generated is not None:
            made = self.generated(name, str(peer[0]))
        if made is not None:
            file, size, free = io.BytesIO(made), len(made), None
        elif request.is_read:
            file, size = open_for_read(path)
            free = None
        else:
            if os.path.lexists(path):
                raise LocalError(ErrorCode.FILE_EXISTS, "file already exists")
            if not path.parent.is_dir():
                raise LocalError(ErrorCode.ACCESS_VIOLATION, "directory does not exist")
            size = None
            free = shutil.disk_usage(path.parent).free
            staged = StagedFile(path, buffering=-1)
            file = staged.file
        try:
            config = self.config
            session = ServerSession(
                request,
                peer,
                config=config,
                now=clock(),
                file_size=size,
                free_space=free,
            )
            family = socket.AF_INET6 if ":" in local_host else socket.AF_INET
            try:
                sock = transfer_socket(family, local_host, config.port_range)
            except OSError as exc:
                raise LocalError(ErrorCode.NOT_DEFINED, f"no socket: {exc.strerror}") from None
        except BaseException:
            if staged is not None:
                staged.discard()
            else:
                file.close()
            raise
        commit = None
        close = file.close
        if staged is not None:
            commit = functools.partial(staged.commit, fsync=True)
            close = staged.discard
        channel = Channel(sock, session, file, commit=commit, close=close, short_read_is_eof=True)
        runner = AsyncChannel(channel, self.loop)
        served = None if name == request.filename else name  # --map-file rewrote it
        runner.on_closed = functools.partial(self._finished, key, runner, served)
        return runner

    def _finished(
        self, key: tuple[object, ...], runner: AsyncChannel, served: str | None = None
    ) -> None:
        self.transfers.pop(key, None)
        self.rules.finished(key)
        self._charged.pop(key, None)  # unanswered: the tokens refill with time
        session = runner.channel.session
        assert isinstance(session, ServerSession)
        error = session.error
        failure = None if error is None else str(error)
        if failure is None and not session.succeeded:
            failure = "server shutting down"
        kind, code = (None, None) if failure is None else failure_of(error)
        if isinstance(error, RemoteError) and error.code == ErrorCode.OPTION_REFUSED:
            # PXE ROMs fetch tsize this way, then ask again: normal, not a failure.
            log.debug("%s", _describe(session, "client ended after the OACK", served))
        elif not session.heard and error is not None:
            # Nothing came back: a client that gave up, or a forged source (one line per
            # forged request would let a flood fill the log). Counted in the metrics.
            log.debug("%s", _describe(session, failure, served))
        else:
            log.info("%s", _describe(session, failure, served))
        if self.gate is not None:
            self.gate.release(session.wire_bytes if failure is None else -1)
        if self.on_finished is not None:
            end = session.finished_at or clock()
            machine = session.machine
            last_block = machine.unacknowledged if isinstance(machine, Sender) else None
            self.on_finished(
                FinishedTransfer(
                    str(session.dest[0] if session.dest else ""),
                    session.request.filename,
                    session.request.is_read,
                    session.wire_bytes,
                    end - session.started,
                    failure,
                    kind,
                    code,
                    last_block if failure is not None else None,
                    session.retransmissions,
                    None if machine is None else machine.blksize,
                )
            )


def _describe(session: ServerSession, failure: str | None, served: str | None = None) -> str:
    """The one log line of a transfer; `served`: the name --map-file turned the requested
    one into (``'pxelinux.0' -> 'bios/pxelinux.0'``)."""
    request = session.request
    peer = session.peer or ("?", 0)
    seconds = (session.finished_at or clock()) - session.started
    nbytes = session.wire_bytes
    direction, verb = ("RRQ", "sent") if request.is_read else ("WRQ", "received")
    opts = " ".join(f"{k.lower()}={v}" for k, v in session.negotiated.oack) or "no options"
    text = (
        f"{format_host(str(peer[0]), int(peer[1]))} {direction} {request.filename!r}"
        f"{'' if served is None else f' -> {served!r}'} "
        f"{request.mode}: {verb} {nbytes} bytes in {seconds:.3f} s "
        f"({format_rate(nbytes, seconds)}), {opts}"
    )
    if session.retransmissions:
        text += f", {session.retransmissions} retransmissions"
    if failure:
        text += f"; failed: {failure}"
    return text
