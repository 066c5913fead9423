"""A deliberately slow TFTP reader for drain and reload tests (plain RFC 1350, no options).

It ACKs each DATA block after `delay` seconds, so a transfer is still running when the
test signals the server; it returns the bytes received or the ERROR the server sent.
Every wait is bounded.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass


@dataclass
class Result:
    data: bytes
    error: tuple[int, str] | None


def rrq(name: str) -> bytes:
    return b"\x00\x01" + name.encode() + b"\x00octet\x00"


def read(
    host: str,
    port: int,
    name: str,
    delay: float = 0.0,
    on_block: object = None,
    timeout: float = 10.0,
) -> Result:
    """Download `name`; `on_block(n)` (if given) is called after DATA block n arrived."""
    data = bytearray()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(rrq(name), (host, port))
        expected = 1
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            packet, peer = sock.recvfrom(65536)
            opcode = struct.unpack("!H", packet[:2])[0]
            if opcode == 5:
                code = struct.unpack("!H", packet[2:4])[0]
                return Result(bytes(data), (code, packet[4:].rstrip(b"\0").decode()))
            block = struct.unpack("!H", packet[2:4])[0]
            if opcode == 3 and block == expected:
                data += packet[4:]
                if callable(on_block):
                    on_block(block)
                if delay:
                    time.sleep(delay)
                sock.sendto(struct.pack("!HH", 4, block), peer)
                expected += 1
                if len(packet) - 4 < 512:
                    return Result(bytes(data), None)
    raise AssertionError("transfer did not end within 600 s")
