"""The boot files and client requests the socket-free pxed tests share."""

from __future__ import annotations

from ipaddress import IPv4Address

from ptftpd.dhcp import Message, MessageType, Opt
from ptftpd.pxe import BootFiles

SERVER = IPv4Address("10.78.0.1")
MAC = bytes.fromhex("525400123456")
FILES = BootFiles(
    default="default.0",
    bios="undionly.kpxe",
    efi32="ipxe32.efi",
    efi64="ipxe.efi",
    arm64="ipxe-arm64.efi",
    ipxe="boot.ipxe",
)


def request(
    mtype: MessageType = MessageType.DISCOVER,
    arch: int | None = 0,
    vendor: str | None = "PXEClient:Arch:00000:UNDI:002001",
    user_class: bytes | None = None,
    ipxe_175: bool = False,
    ciaddr: str = "0.0.0.0",
    extra: dict[int, bytes] | None = None,
    xid: int = 0x1234,
) -> Message:
    """A PXE client's DHCP message from MAC: a BIOS PXE ROM's DISCOVER by default."""
    msg = Message(xid=xid, chaddr=MAC + b"\x00" * 10, ciaddr=IPv4Address(ciaddr))
    msg.options[Opt.MESSAGE_TYPE] = bytes([mtype])
    if arch is not None:
        msg.options[Opt.CLIENT_ARCH] = arch.to_bytes(2, "big")
    if vendor is not None:
        msg.options[Opt.VENDOR_CLASS] = vendor.encode()
    if user_class is not None:
        msg.options[Opt.USER_CLASS] = user_class
    if ipxe_175:
        msg.options[Opt.IPXE_ENCAP] = b"\x15\x01\x01"
    msg.options.update(extra or {})
    return msg
