"""Client messages for the sans-IO DHCP engine tests, options given by name."""

from __future__ import annotations

from ipaddress import IPv4Address

from ptftpd.dhcp import Message, MessageType, Opt


def client_message(mtype: MessageType | None, xid: int, chaddr: bytes, **options: bytes) -> Message:
    """A message of type `mtype` (None: BOOTP, no option 53) with options by their
    `Opt` name in lower case (`requested_ip=...`, `server_id=...`)."""
    by_code: dict[int, bytes] = {} if mtype is None else {Opt.MESSAGE_TYPE: bytes([mtype])}
    for name, value in options.items():
        by_code[Opt[name.upper()]] = value
    return Message(xid=xid, chaddr=chaddr, options=by_code)


def relayed_message(
    mtype: MessageType, xid: int, chaddr: bytes, giaddr: str = "0.0.0.0", **options: bytes
) -> Message:
    """A DHCP message through a relay at `giaddr` (0.0.0.0: none); options by `Opt`
    name, or by number as `o118=...`."""
    by_code: dict[int, bytes] = {Opt.MESSAGE_TYPE: bytes([mtype])}
    for name, value in options.items():
        by_code[int(name[1:]) if name.startswith("o") else Opt[name.upper()]] = value
    return Message(xid=xid, chaddr=chaddr, giaddr=IPv4Address(giaddr), options=by_code)
