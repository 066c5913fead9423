"""TFTP wire codec (RFC 1350, RFC 2347 OACK).

Pure functions over bytes. Every malformed datagram raises `PacketError` and
nothing else, so the I/O layers can drop bad packets with a single `except`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

MAX_DATAGRAM = 65536 + 4  # the largest TFTP datagram: blksize 65464 fits with room
_HDR = struct.Struct("!HH")
_OP = struct.Struct("!H")


class Opcode(IntEnum):
    RRQ = 1
    WRQ = 2
    DATA = 3
    ACK = 4
    ERROR = 5
    OACK = 6


class ErrorCode(IntEnum):
    NOT_DEFINED = 0
    FILE_NOT_FOUND = 1
    ACCESS_VIOLATION = 2
    DISK_FULL = 3
    ILLEGAL_OPERATION = 4
    UNKNOWN_TID = 5
    FILE_EXISTS = 6
    NO_SUCH_USER = 7
    OPTION_REFUSED = 8


class PacketError(ValueError):
    """A datagram that is not a well-formed TFTP packet."""


def _text(raw: bytes) -> str:
    # surrogateescape keeps arbitrary filename bytes round-trippable to os.fsencode.
    return raw.decode("utf-8", "surrogateescape")


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class Request:
    """RRQ or WRQ. `options` keeps the client's order and spelling (RFC 2347 names are
    case-insensitive, and the OACK echoes the name as the client wrote it)."""

    opcode: Opcode
    filename: str
    mode: str
    options: tuple[tuple[str, str], ...] = ()

    @property
    def is_read(self) -> bool:
        return self.opcode is Opcode.RRQ

    def option_map(self) -> dict[str, tuple[str, str]]:
        """Lower-cased name -> (name as sent, value); the first occurrence wins."""
        result: dict[str, tuple[str, str]] = {}
        for name, value in self.options:
            result.setdefault(name.lower(), (name, value))
        return result

    def encode(self) -> bytes:
        parts = [_OP.pack(self.opcode), _raw(self.filename), b"\0", _raw(self.mode), b"\0"]
        for name, value in self.options:
            parts += [_raw(name), b"\0", _raw(value), b"\0"]
        return b"".join(parts)


@dataclass(frozen=True, slots=True)
class Data:
    block: int
    data: bytes

    def encode(self) -> bytes:
        return _HDR.pack(Opcode.DATA, self.block) + self.data


@dataclass(frozen=True, slots=True)
class Ack:
    block: int

    def encode(self) -> bytes:
        return _HDR.pack(Opcode.ACK, self.block)


@dataclass(frozen=True, slots=True)
class Error:
    code: int
    message: str = ""

    def encode(self) -> bytes:
        return _HDR.pack(Opcode.ERROR, self.code) + _raw(self.message) + b"\0"


@dataclass(frozen=True, slots=True)
class OptionAck:
    options: tuple[tuple[str, str], ...] = field(default=())

    def encode(self) -> bytes:
        parts = [_OP.pack(Opcode.OACK)]
        for name, value in self.options:
            parts += [_raw(name), b"\0", _raw(value), b"\0"]
        return b"".join(parts)


Packet = Request | Data | Ack | Error | OptionAck


def _fields(body: bytes, what: str) -> list[bytes]:
    if not body.endswith(b"\0"):
        raise PacketError(f"{what}: last field is not NUL-terminated")
    return body[:-1].split(b"\0")


def _pairs(fields: list[bytes], what: str) -> tuple[tuple[str, str], ...]:
    # Some firmware pads requests with extra NULs: drop empty trailing fields.
    while fields and fields[-1] == b"" and (len(fields) % 2 or fields[-2] == b""):
        fields.pop()
    if len(fields) % 2:
        raise PacketError(f"{what}: option {fields[-1]!r} has no value")
    pairs = []
    for i in range(0, len(fields), 2):
        if not fields[i]:
            raise PacketError(f"{what}: empty option name")
        pairs.append((_text(fields[i]), _text(fields[i + 1])))
    return tuple(pairs)


def decode(datagram: bytes) -> Packet:
    """Decode one datagram; raise `PacketError` for anything malformed."""
    if len(datagram) < 2:
        raise PacketError("datagram shorter than an opcode")
    (op,) = _OP.unpack_from(datagram)
    if op == Opcode.DATA:
        if len(datagram) < 4:
            raise PacketError("DATA without a block number")
        return Data(_OP.unpack_from(datagram, 2)[0], bytes(datagram[4:]))
    if op == Opcode.ACK:
        if len(datagram) < 4:
            raise PacketError("ACK without a block number")
        return Ack(_OP.unpack_from(datagram, 2)[0])
    if op in (Opcode.RRQ, Opcode.WRQ):
        name = "RRQ" if op == Opcode.RRQ else "WRQ"
        fields = _fields(bytes(datagram[2:]), name)
        if len(fields) < 2:
            raise PacketError(f"{name} without a mode")
        return Request(Opcode(op), _text(fields[0]), _text(fields[1]), _pairs(fields[2:], name))
    if op == Opcode.ERROR:
        if len(datagram) < 4:
            raise PacketError("ERROR without an error code")
        # Lenient: some stacks omit the terminating NUL or pad after it.
        message = bytes(datagram[4:]).split(b"\0", 1)[0]
        return Error(_OP.unpack_from(datagram, 2)[0], message.decode("utf-8", "replace"))
    if op == Opcode.OACK:
        body = bytes(datagram[2:])
        if not body:
            return OptionAck(())
        return OptionAck(_pairs(_fields(body, "OACK"), "OACK"))
    raise PacketError(f"unknown opcode {op}")


def ack_bytes(block: int) -> bytes:
    return _HDR.pack(Opcode.ACK, block & 0xFFFF)


def error_bytes(code: int, message: str) -> bytes:
    return Error(code, message).encode()
