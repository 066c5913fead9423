"""DHCP and BOOTP for network boot: codec, lease policy, store and asyncio server.

Layers (each usable alone): `packet` (sans-IO codec: `Message`, `decode`, `encode`,
`PacketError`), `options` (registry, `Opt`, `MessageType`, `pxe_vendor_options`),
`leases` (the lease core: one sans-IO policy and its state table over `LeaseRows`,
every event with its `now`), `local_leases` (the rows of a server that is their only
writer, saved through a `lease_store.LeaseStore`: memory or `store`, SQLite;
`free_index` the free-address search), `pg_store` (the rows in PostgreSQL, shared by
several servers), `scope` (subnets, chosen per
request by option 118, 82.5, giaddr or ciaddr), `reply` (RFC 2131 table 3, 4.1
addressing, option 55 order), `settings` (checked TOML/flag values, `[[subnet]]`),
`engine` (sans-IO RFC 2131/951 engine: bytes in, `Outgoing` out) and `server` (asyncio
shell).

Hook API for other servers in the same event loop (pxed)::

    from ptftpd.dhcp import BootChoice, DhcpConfig, DhcpServer, Message

    def boot(request: Message) -> BootChoice | str | None:
        # request.arch (option 93, int or None), request.architectures,
        # request.vendor_class (60), request.user_class (77 raw bytes),
        # request.has_user_class("iPXE"), request.options[175] (iPXE), request.mac_str
        if request.has_user_class("iPXE"):
            return BootChoice("http://10.0.0.1/boot.ipxe")
        if request.arch in (7, 9):
            return BootChoice("ipxe.efi", next_server=IPv4Address("10.0.0.1"))
        return None          # None or "": no boot information in the reply

    server = DhcpServer(DhcpConfig(server_ip=..., network=..., interface="eth0",
                                   bootfile="pxelinux.0", answer_all=True),
                        boot_policy=boot)
    await server.start()     # binds UDP 67 on the interface, inside the running loop
    ...
    server.close()

Without a hook the configured `bootfile` is used. The hook runs for OFFER, ACK, INFORM
and BOOTP replies; an exception in it is logged and the default is used. `BootChoice`
has `file`, `next_server` (siaddr and option 66; default `DhcpConfig.next_server` or
the server's address) and `options` (raw `{code: bytes}` added last, overriding ours,
e.g. a custom 43 or 175). PXE clients (vendor class `PXEClient`) also get vendor class
`PXEClient` and `pxe_vendor_options()` (43, discovery control 8: download the boot file
directly) unless the hook's options replace them.

For proxyDHCP (port 4011) build on the codec: `decode(data)`, `make_reply(request,
MessageType.ACK, server_ip)`, fill in fields and options, `encode(reply,
request.max_message_size)`, `reply_destination(request, reply, ...)`, and
`open_dhcp_socket(interface, 4011)` for a socket bound to the interface. An `Outgoing`
with `arp` set is a unicast to a client without an address: call
`add_neighbour(sock, interface, *out.arp)` first, or broadcast when it returns False.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ptftpd.dhcp.engine import (
        BootChoice,
        BootPolicy,
        DhcpConfig,
        DhcpEngine,
        Outgoing,
        is_ipxe,
        make_reply,
        reply_destination,
    )
    from ptftpd.dhcp.leases import StaticHost
    from ptftpd.dhcp.options import (
        ARCHITECTURES,
        MessageType,
        Opt,
        arch_name,
        pxe_vendor_options,
    )
    from ptftpd.dhcp.packet import BOOTREPLY, BOOTREQUEST, Message, PacketError, decode, encode
    from ptftpd.dhcp.server import DhcpServer, add_neighbour, open_dhcp_socket

# Loaded on first use (PEP 562), so that importing one layer (the TFTP server's metrics
# read `options.ARCHITECTURES`) does not load the engine, the lease stores and the
# asyncio server with it: ptftpd serves TFTP without a DHCP server in its memory.
_HOME = {
    **dict.fromkeys(
        (
            "BootChoice",
            "BootPolicy",
            "DhcpConfig",
            "DhcpEngine",
            "Outgoing",
            "is_ipxe",
            "make_reply",
            "reply_destination",
        ),
        "engine",
    ),
    "StaticHost": "leases",
    **dict.fromkeys(
        ("ARCHITECTURES", "MessageType", "Opt", "arch_name", "pxe_vendor_options"), "options"
    ),
    **dict.fromkeys(
        ("BOOTREPLY", "BOOTREQUEST", "Message", "PacketError", "decode", "encode"), "packet"
    ),
    **dict.fromkeys(("DhcpServer", "add_neighbour", "open_dhcp_socket"), "server"),
}


def __getattr__(name: str) -> object:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})


__all__ = [
    "ARCHITECTURES",
    "BOOTREPLY",
    "BOOTREQUEST",
    "BootChoice",
    "BootPolicy",
    "DhcpConfig",
    "DhcpEngine",
    "DhcpServer",
    "Message",
    "MessageType",
    "Opt",
    "Outgoing",
    "PacketError",
    "StaticHost",
    "add_neighbour",
    "arch_name",
    "decode",
    "encode",
    "is_ipxe",
    "make_reply",
    "open_dhcp_socket",
    "pxe_vendor_options",
    "reply_destination",
]
