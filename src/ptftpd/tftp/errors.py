"""Typed TFTP failures, split like h11's: what *we* refused or could not do (`LocalError`)
and what the *peer* said or did wrong (`RemoteError`). Both carry the TFTP error code, so
a driver knows what to put in the ERROR packet and a caller knows what went wrong;
`str()` is always one line fit to show a person."""

from __future__ import annotations

from ptftpd.events import Failure
from ptftpd.tftp.packets import ErrorCode

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

    code: int = ErrorCode.NOT_DEFINED


class LocalError(TftpError):
    """We refused or could not go on (bad request, full disk, a bad OACK...): `code` and
    the message are what our ERROR packet tells the peer."""

    def __init__(self, code: int, message: str, kind: Failure | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.kind = kind  # why, when the code alone does not say (None: from the code)


class Cancelled(LocalError):
    """We ended the transfer ourselves (the server stopping, the caller giving up)."""


class ServerBusy(LocalError):
    """Every session slot is taken: the client may ask again later."""

    def __init__(self) -> None:
        super().__init__(ErrorCode.NOT_DEFINED, "server busy, try again")


class RemoteError(TftpError):
    """The peer answered with an ERROR packet."""

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


class ProtocolError(LocalError):
    """The peer broke the protocol (e.g. granted an option that was not asked for); we
    answer with ERROR `code` and stop."""


class TransferTimeout(TftpError):
    """The peer stopped answering (or never answered) within the retry budget."""


class FinalAckLost(TransferTimeout):
    """Every block went out and every one but the final block was acknowledged; the
    final ACK never came. The peer most likely holds the whole file (RFC 1350 section 6:
    the host acknowledging the final DATA may stop on sending that ACK, and it can be
    lost), but the sender cannot know: a failure, of its own kind."""


class Unanswered(TransferTimeout):
    """The server's first packet was never answered: a client that gave up, or a request
    with a forged source address (nothing was resent to it)."""


class UsageError(TftpError, ValueError):
    """An option value out of range, found before anything is sent."""
