"""The one I/O driver: runs any TFTP session (`session.py`) over its own UDP socket.

ptftpd's transfers, pxed's TFTP service, the blocking client (ptftp and
`ptftpd.tftp.download`/`upload`) and the asyncio client all go through `Channel`:
datagrams in (a whole window per system call with UDP GRO), windows out (one
`sendmsg` per window with UDP GSO, every DATA block still its own datagram on the
wire), local bytes written before the packets of a step go out (so an upload is on
disk before its last ACK), the sender fed from the local file, the clock read here
and nowhere else. Two flavours differ only in how they wait: `run_blocking` polls the
socket in the calling thread (no event loop between a DATA block and its ACK), and
`AsyncChannel` uses an event loop's reader callback and one timer handle.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import random
import select
import socket
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

from ptftpd import datagrams
from ptftpd.errors import StartError
from ptftpd.tftp.errors import LocalError, TftpError
from ptftpd.tftp.localfiles import READ_CHUNK, error_for
from ptftpd.tftp.machine import Step
from ptftpd.tftp.packets import MAX_DATAGRAM
from ptftpd.tftp.session import Address, ClientSession, ServerSession

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger("ptftpd.tftp.driver")

Session = ClientSession | ServerSession

# Linux UDP generic segmentation offload (4.18+): one sendmsg() carries a whole window
# and the kernel cuts it into datagrams of `segment` bytes (the last may be shorter).
_UDP_SEGMENT = 103  # socket.UDP_SEGMENT from Python 3.12 on
_GSO_MAX_SEGMENTS = 64
_GSO_MAX_BYTES = 65000
_GSO_AVAILABLE = hasattr(socket, "SOL_UDP") and sys.platform == "linux"
# Linux UDP generic receive offload: the kernel may hand over several datagrams of one
# flow in one read, all `segment` bytes but the last, with the size in a control message.
_UDP_GRO = 104  # socket.UDP_GRO from Python 3.12 on
_GRO_CMSG_SPACE = socket.CMSG_SPACE(4)
_REQUEST_BUFFER = 4 << 20
_UNREACHABLE = (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)
_monotonic = time.monotonic


def _enable_gro(sock: socket.socket) -> bool:
    try:
        sock.setsockopt(socket.SOL_UDP, _UDP_GRO, 1)
    except (OSError, AttributeError):
        return False
    return True


def gro_segments(data: bytes, ancdata: list[tuple[int, int, bytes]]) -> list[bytes]:
    """Split a coalesced read back into the datagrams the peer sent."""
    for level, kind, value in ancdata:
        if level == socket.SOL_UDP and kind == _UDP_GRO and len(value) >= 2:
            segment = int.from_bytes(value[:4] if len(value) >= 4 else value[:2], sys.byteorder)
            if 0 < segment < len(data):
                return [data[i : i + segment] for i in range(0, len(data), segment)]
    return [data]


def clock() -> float:
    """The one clock of the TFTP layer (sessions are given `now`, never read it)."""
    return _monotonic()


def listening_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """The server's request socket on `host`; `StartError` (one line) if not.
    `reuse_port`: one of several sockets on the same address and port, among which the
    kernel spreads the requests (SO_REUSEPORT, one per worker process)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise StartError(f"cannot use address {host}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    # No SO_REUSEADDR: for UDP it lets a second server bind the same port and silently
    # take the requests. A boot storm is a burst of requests at once: the default
    # receive buffer (~200 KiB, some 150 small datagrams) drops most of a thousand (the
    # kernel caps the size at net.core.rmem_max).
    return datagrams.udp_socket(
        family,
        sockaddr,
        where=host,
        hint="run as root or choose a port above 1023 with -p",
        reuse_port=reuse_port,
        receive_buffer=_REQUEST_BUFFER,
        blocking=None,
    )


def client_socket(family: socket.AddressFamily) -> socket.socket:
    """A client's socket: any address, a port chosen by the kernel (its TID)."""
    try:
        return transfer_socket(family, "::" if family == socket.AF_INET6 else "0.0.0.0")
    except OSError as exc:
        raise TftpError(f"cannot open a UDP socket: {exc.strerror}") from None


def transfer_socket(
    family: socket.AddressFamily, host: str, ports: tuple[int, int] | None = None
) -> socket.socket:
    """A non-blocking UDP socket on `host`, port chosen by the kernel (a new TID), or
    a free one of `ports` (LOW, HIGH), tried from a random start (OSError if none is)."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if ports is None:
            sock.bind((host, 0))
        else:
            _bind_in_range(sock, host, ports)
    except OSError:
        sock.close()
        raise
    return sock


def _bind_in_range(sock: socket.socket, host: str, ports: tuple[int, int]) -> None:
    low, high = ports
    count = high - low + 1
    first = random.randrange(count)
    for i in range(count):
        try:
            sock.bind((host, low + (first + i) % count))
            return
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    raise OSError(errno.EADDRINUSE, f"every port of {low}:{high} is in use")


class Channel:
    """One session, its socket and its local file; `apply` carries out each Step.

    `file` is read (sender) or written (receiver); `commit` runs once when the session
    has every byte, before the packets of that step go out (raise `LocalError` to send
    an ERROR instead); `close` runs once at the very end, whatever happened.
    """

    def __init__(
        self,
        sock: socket.socket,
        session: Session,
        file: BinaryIO,
        *,
        commit: Callable[[], None] | None = None,
        close: Callable[[], None] | None = None,
        short_read_is_eof: bool = False,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> None:
        self.sock = sock
        self.session = session
        self.file = file
        self._commit = commit
        self._close = close
        self._short_eof = short_read_is_eof
        self.progress = progress
        self._reported = -1
        self._gso = _GSO_AVAILABLE
        # Only a receiver gets windows worth coalescing; a sender reads ACKs with a
        # plain recvfrom (no control-message buffer to allocate and parse per ACK).
        self._gro_space = _GRO_CMSG_SPACE if session.receiving and _enable_gro(sock) else 0
        self.shut = False

    # -- events ------------------------------------------------------------------------
    def begin(self, now: float) -> None:
        self.apply(self.session.start(now), now)

    def read_some(self, limit: int) -> bool:
        """Read and handle up to `limit` reads; False once the socket is empty."""
        sock, session, apply = self.sock, self.session, self.apply
        space = self._gro_space
        recvmsg, recvfrom = sock.recvmsg, sock.recvfrom
        ancdata: list[tuple[int, int, bytes]] = []
        for _ in range(limit):
            try:
                if space:
                    data, ancdata, _, addr = recvmsg(MAX_DATAGRAM, space)
                else:
                    data, addr = recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                continue  # e.g. ICMP errors queued on the socket: the timer copes
            now = _monotonic()
            if ancdata:
                apply(session.receive_many(gro_segments(data, ancdata), addr, now), now)
            else:
                apply(session.receive(data, addr, now), now)
            if session.closed:
                return False
        return True

    def expire(self, now: float) -> None:
        self.apply(self.session.handle_timer(now), now)

    def apply(self, step: Step, now: float) -> None:
        session = self.session
        if step.data:
            try:
                self.file.write(step.data)
            except OSError as exc:
                failure = error_for(exc, "cannot write the local file")
                step = session.abort(failure.code, failure.message, now)
        if self._commit is not None and session.succeeded:
            commit, self._commit = self._commit, None
            try:
                commit()
            except LocalError as exc:
                step = session.commit_failed(exc.code, exc.message, now)
        send = step.send
        if send:
            dest = session.dest
            if len(send) > 1 and self._gso:
                self._send_window(send, dest)
            else:
                for datagram in send:
                    self._sendto(datagram, dest)
        if session.stray:
            for datagram, addr in session.take_stray():
                self._sendto(datagram, addr)
        if session.wanted:
            self._feed(now)
        if session.pending_start:
            self.apply(session.begin_transfer(now), now)

    def _feed(self, now: float) -> None:
        session, read = self.session, self.file.read
        while (wanted := session.wanted) > 0:
            size = max(wanted, READ_CHUNK)
            try:
                chunk = read(size)
            except OSError as exc:
                failure = error_for(exc, "cannot read the local file")
                self.apply(session.abort(failure.code, failure.message, now), now)
                return
            session.feed(chunk, not chunk or (self._short_eof and len(chunk) < size))

    def report(self) -> None:
        """Tell the progress callback, at most once per burst of packets."""
        if self.progress is None or self.session.machine is None:
            return
        done = self.session.wire_bytes
        if done != self._reported:
            self._reported = done
            total = self.session.total if isinstance(self.session, ClientSession) else None
            self.progress(done, total)

    # -- sending -----------------------------------------------------------------------
    def _sendto(self, datagram: bytes, addr: Address | None) -> None:
        if addr is None:
            return
        try:
            self.sock.sendto(datagram, addr)
        except (BlockingIOError, InterruptedError):
            pass  # the retransmission timer covers a full socket buffer
        except OSError as exc:
            if self.session.peer is None and exc.errno in _UNREACHABLE:
                where = f"{addr[0]}:{addr[1]}"
                self.session.abort(0, f"cannot reach {where}: {exc.strerror}", _monotonic())
            else:
                log.debug("send to %s failed: %s", addr[:2], exc)

    def _send_window(self, packets: list[bytes], addr: Address | None) -> None:
        """Send consecutive DATA packets with as few system calls as GSO allows."""
        segment = len(packets[0])
        per_call = max(1, min(_GSO_MAX_SEGMENTS, _GSO_MAX_BYTES // segment))
        cmsg = [(socket.SOL_UDP, _UDP_SEGMENT, segment.to_bytes(2, sys.byteorder))]
        for start in range(0, len(packets), per_call):
            group = packets[start : start + per_call]
            if len(group) == 1 or any(len(p) != segment for p in group[:-1]):
                for datagram in group:
                    self._sendto(datagram, addr)
                continue
            try:
                self.sock.sendmsg(group, cmsg, 0, addr)
            except (BlockingIOError, InterruptedError):
                pass  # the retransmission timer covers a full socket buffer
            except OSError as exc:
                # EINVAL (segment above the path MTU), EIO (no checksum offload), ...:
                # one sendto() per packet from now on for this transfer.
                log.debug("GSO send failed (%s), sending packet by packet", exc)
                self._gso = False
                for datagram in packets[start:]:
                    self._sendto(datagram, addr)
                return

    def close(self) -> None:
        if self.shut:
            return
        self.shut = True
        self.sock.close()
        if self._close is not None:
            self._close()


def run_blocking(channel: Channel) -> None:
    """Drive `channel` in the calling thread until its session is settled. The socket
    stays non-blocking: a queued window is read back to back, only an empty socket
    costs a poll. No dally after the last ACK (like tftp-hpa's client)."""
    session = channel.session
    poller = select.poll()
    poller.register(channel.sock, select.POLLIN)
    try:
        channel.begin(_monotonic())
        while not session.settled:
            if channel.read_some(64):
                continue
            channel.report()
            if session.settled:
                break
            deadline = session.get_timer()
            if deadline is None:
                break
            wait = deadline - _monotonic()
            if wait > 0 and poller.poll(math.ceil(wait * 1000)):
                continue
            now = _monotonic()
            if now >= deadline:
                channel.expire(now)
        channel.report()
    except BaseException:
        channel.apply(session.cancel(_monotonic()), _monotonic())
        raise
    finally:
        channel.close()


class AsyncChannel:
    """Drive `channel` from a running event loop: a reader callback drains the socket
    and one lazily re-armed timer follows the session's deadline. `on_settled` runs
    once when the caller has its answer, `on_closed` once at the very end (after a
    receiver's dally)."""

    def __init__(
        self,
        channel: Channel,
        loop: asyncio.AbstractEventLoop,
        *,
        on_settled: Callable[[], None] | None = None,
        on_closed: Callable[[], None] | None = None,
    ) -> None:
        self.channel = channel
        self.loop = loop
        self._on_settled = on_settled
        self.on_closed = on_closed
        self.on_heard: Callable[[], None] | None = None  # once: the peer sent a packet
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.loop.add_reader(self.channel.sock.fileno(), self._readable)
        self.channel.begin(_monotonic())
        self._after()

    def _readable(self) -> None:
        self.channel.read_some(64)  # bounded: other transfers and timers get their turn
        self.channel.report()
        if self.on_heard is not None and self.channel.session.heard:
            callback, self.on_heard = self.on_heard, None
            callback()
        self._after()

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self.channel.session.get_timer()
        if deadline is None or self.channel.shut:
            self._after()
            return
        now = _monotonic()
        if now < deadline:
            # Most packets push the deadline back: the handle is re-armed only here.
            self._timer = self.loop.call_at(deadline, self._on_timer)
            return
        self.channel.expire(now)
        self._after()

    def _after(self) -> None:
        session = self.channel.session
        if session.settled and self._on_settled is not None:
            callback, self._on_settled = self._on_settled, None
            callback()
        if session.closed:
            self.stop()
        elif self._timer is None and (deadline := session.get_timer()) is not None:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    def stop(self, cancel: bool = False) -> None:
        """End now (`cancel`: the caller gave up, tell the peer)."""
        channel = self.channel
        if channel.shut:
            return
        if cancel:
            now = _monotonic()
            channel.apply(channel.session.cancel(now), now)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with contextlib.suppress(ValueError, OSError, RuntimeError):
            self.loop.remove_reader(channel.sock.fileno())
        channel.close()
        if self._on_settled is not None:
            callback, self._on_settled = self._on_settled, None
            callback()
        if self.on_closed is not None:
            callback, self.on_closed = self.on_closed, None
            callback()


def client_family(infos: list[tuple[Any, ...]], host: str) -> tuple[socket.AddressFamily, Address]:
    """The address to use: IPv4 when a name has both kinds, since most TFTP servers
    listen on IPv4 only; an IPv6 literal, or an IPv6-only name, is reached over IPv6."""
    if not infos:
        raise TftpError(f"cannot resolve host {host!r}")
    ipv4 = [info for info in infos if info[0] == socket.AF_INET]
    family, _, _, _, sockaddr = (ipv4 or infos)[0]
    return family, tuple(sockaddr)
