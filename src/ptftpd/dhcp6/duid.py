"""DHCP Unique Identifiers (RFC 8415 section 11, RFC 6355): made for our own server id,
read for the machine behind a client's id.

Firmware builds DUID-LLT or DUID-LL from its NIC's MAC (EDK2, iPXE) or, on some UEFI
machines, DUID-UUID from the SMBIOS UUID. The MAC or UUID inside is what lines a
DHCPv6 boot up with the same machine's DHCPv4 boot, its inventory entry and its
decision, so the one reading of a DUID lives here.
"""

from __future__ import annotations

import struct

__all__ = ["DUID_LL", "DUID_LLT", "DUID_UUID", "HW_ETHERNET", "duid_ll", "duid_llt", "identity"]

DUID_LLT = 1
DUID_LL = 3
DUID_UUID = 4
HW_ETHERNET = 1
_EPOCH = 946684800  # 2000-01-01 00:00 UTC, the origin of DUID-LLT times
_MAC = 6


def duid_ll(mac: bytes, hw_type: int = HW_ETHERNET) -> bytes:
    """DUID-LL (type 3): stable for as long as the interface keeps its MAC."""
    return struct.pack("!HH", DUID_LL, hw_type) + mac


def duid_llt(mac: bytes, unix_time: float, hw_type: int = HW_ETHERNET) -> bytes:
    """DUID-LLT (type 1): the time must be stored and reused, or the DUID changes."""
    seconds = int(unix_time - _EPOCH) & 0xFFFFFFFF
    return struct.pack("!HHI", DUID_LLT, hw_type, seconds) + mac


def identity(duid: bytes) -> tuple[str | None, str | None]:
    """(MAC, UUID) a DUID names: DUID-LLT and DUID-LL of an Ethernet link carry the
    MAC (`aa:bb:...`), DUID-UUID the machine's UUID (32 hex digits); else (None, None)."""
    if len(duid) < 2:
        return None, None
    kind = int.from_bytes(duid[:2], "big")
    if kind in (DUID_LLT, DUID_LL) and len(duid) >= 4:
        if int.from_bytes(duid[2:4], "big") != HW_ETHERNET:
            return None, None
        address = duid[8:] if kind == DUID_LLT else duid[4:]
        return (address.hex(":"), None) if len(address) == _MAC else (None, None)
    if kind == DUID_UUID and len(duid) == 18:
        return None, duid[2:].hex()
    return None, None
