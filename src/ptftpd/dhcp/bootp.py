"""RFC 951 BOOTREPLY with RFC 1497 vendor extensions, sized for the client.

BOOTP clients never renew, so they get a permanent lease (or their static address) from
the same store as DHCP clients, and everything they need travels in the fixed fields
(yiaddr, siaddr, sname, file) plus the RFC 1497 vendor area: subnet mask, router, DNS,
host name and the boot file size in 512-byte blocks.

Why the sizing: an RFC 951 client has a 64-byte vendor area and may drop a longer
reply. The reply's vendor area is as large as the request's (as ISC dhcpd does), at
least 64 bytes; options go in most important first and what does not fit is left out
(no overload: BOOTP clients do not know option 52). A request without the RFC 1048
magic cookie gets the fixed fields only, and no cookie.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ptftpd.dhcp.lease_store import Lease
from ptftpd.dhcp.options import Opt
from ptftpd.dhcp.packet import MAGIC_COOKIE, Message, encode
from ptftpd.dhcp.reply import make_reply

if TYPE_CHECKING:
    from ptftpd.dhcp.engine import DhcpEngine
    from ptftpd.dhcp.scope import Scope

__all__ = ["RFC951_VEND", "boot_file_blocks", "bootp_reply", "fit_vendor_options"]

RFC951_VEND = 64
# Most important first: without a mask or router the address is of little use.
_PRIORITY = (
    Opt.SUBNET_MASK,
    Opt.ROUTER,
    Opt.DNS,
    Opt.HOSTNAME,
    Opt.BOOT_FILE_SIZE,
    Opt.DOMAIN_NAME,
)


def boot_file_blocks(size: int) -> int:
    """Option 13 counts 512-octet blocks, rounded up, capped at what 16 bits hold."""
    return min((size + 511) // 512, 0xFFFF)


def fit_vendor_options(options: dict[int, bytes], vend_size: int) -> dict[int, bytes]:
    """The options, most important first, that fit a vendor area of `vend_size` bytes
    together with the cookie and the end option."""
    room = vend_size - len(MAGIC_COOKIE) - 1
    ordered: list[int] = [c for c in _PRIORITY if c in options]
    ordered += [c for c in options if c not in ordered]
    out: dict[int, bytes] = {}
    for code in ordered:
        value = options[code]
        need = 2 + len(value)
        if len(value) <= 255 and need <= room:
            out[code] = value
            room -= need
    return out


def bootp_reply(
    engine: DhcpEngine, scope: Scope, request: Message, lease: Lease
) -> tuple[Message, bytes]:
    """The reply and its bytes, never longer than the request allows."""
    cfg = engine.config
    reply = make_reply(request, None, cfg.server_ip)
    reply.yiaddr = lease.address
    reply.ciaddr = request.ciaddr
    choice = engine.boot_for(request, scope)
    server = cfg.siaddr
    if choice is not None and choice.next_server is not None:
        server = choice.next_server
    reply.siaddr = server
    reply.sname = (
        cfg.tftp_server_name if server == cfg.siaddr and cfg.tftp_server_name else str(server)
    ).encode()[:63]
    if choice is not None:
        reply.file = choice.file.encode()[:127]
    if not request.cookie:
        reply.cookie = False
        return reply, encode(reply)
    opts: dict[int, bytes] = {}
    for first in (Opt.SUBNET_MASK, Opt.ROUTER, Opt.DNS):
        if first in scope.options:
            opts[first] = scope.options[first]
    name = lease.hostname
    static = scope.policy.static_for(request.mac_str)
    if static is not None and static.hostname:
        name = static.hostname
    if name:
        opts[Opt.HOSTNAME] = name.encode()
    if cfg.boot_file_size is not None and choice is not None and choice.file == cfg.bootfile:
        opts[Opt.BOOT_FILE_SIZE] = boot_file_blocks(cfg.boot_file_size).to_bytes(2, "big")
    for code, value in scope.options.items():
        if code not in (Opt.BROADCAST,) and code not in opts:
            opts[code] = value
    reply.options = fit_vendor_options(opts, max(request.vend_size, RFC951_VEND))
    return reply, encode(reply)
