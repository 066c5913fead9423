"""The TFTP server's request port rules, sans-IO: which datagrams start a transfer
(`RequestRules.check`: a request to serve, a refusal to answer with ERROR, or nothing),
which are a client's repeated request, and the session limit. The longest filename a
request may name is fixed here, before anything reads the file system or the map file.
"""

from __future__ import annotations

from ptftpd.events import Failure
from ptftpd.tftp.errors import LocalError, ServerBusy
from ptftpd.tftp.options import MODES
from ptftpd.tftp.packets import ErrorCode, PacketError, Request, decode
from ptftpd.tftp.session import Address

__all__ = ["MAX_FILENAME", "RequestRules"]

MAX_FILENAME = 503
"""The longest filename a request may name, in bytes: what RFC 2347's largest request
(512 octets) holds after the opcode (2), the name's NUL (1) and the shortest mode
("octet" and its NUL, 6). Real clients stay far below (busybox and tftp-hpa build the
request in a 512-byte buffer, DHCP's boot file name has 128 or 255 bytes), and a name
this short bounds the map file's rule matching (`remap.py`) on the event loop."""

_MAX_MESSAGE = 100  # an ERROR echoing a client's text never grows with the request


def _brief(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."


class RequestRules:
    """The server's request port: which datagrams start a transfer. Pure bookkeeping:
    the server tells it when a transfer ends (`finished`)."""

    def __init__(self, *, read_only: bool, max_sessions: int) -> None:
        self.read_only = read_only
        self.max_sessions = max_sessions
        self.active: set[tuple[object, ...]] = set()

    def started(self, key: tuple[object, ...]) -> None:
        """The transfer of request `key` (`key(data, addr)`) runs: its repeats are its
        own to answer, and it holds a session slot."""
        self.active.add(key)

    def finished(self, key: tuple[object, ...]) -> None:
        """The transfer of request `key` ended: its slot is free."""
        self.active.discard(key)

    @property
    def full(self) -> bool:
        """Every session slot is taken."""
        return len(self.active) >= self.max_sessions

    def check(self, data: bytes, addr: Address) -> Request | LocalError | None:
        """A request to serve, a refusal to answer with ERROR, or None (ignore)."""
        if len(data) < 2 or data[0] != 0 or data[1] not in (1, 2):
            return None  # not a request: never answered on the request port
        try:
            packet = decode(data)
        except PacketError as exc:
            return LocalError(ErrorCode.ILLEGAL_OPERATION, _brief(f"malformed request: {exc}"))
        assert isinstance(packet, Request)
        if len(packet.filename.encode("utf-8", "surrogateescape")) > MAX_FILENAME:
            return LocalError(
                ErrorCode.ILLEGAL_OPERATION, f"filename longer than {MAX_FILENAME} bytes"
            )
        if self.key(data, addr) in self.active:
            return None  # the client resent its request: the transfer answers it
        if self.full:
            return ServerBusy()
        if packet.mode.lower() not in MODES:
            return LocalError(
                ErrorCode.ILLEGAL_OPERATION, _brief(f"unsupported transfer mode {packet.mode!r}")
            )
        if not packet.is_read and self.read_only:
            return LocalError(ErrorCode.ACCESS_VIOLATION, "server is read-only", Failure.READ_ONLY)
        return packet

    @staticmethod
    def key(data: bytes, addr: Address) -> tuple[object, ...]:
        return (addr[0], addr[1], data)
