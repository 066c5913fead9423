"""RFC 951 BOOTREPLY with RFC 1497 vendor extensions.

BOOTP clients never renew, so they get a permanent lease (or their static address) from
the same store as DHCP clients, and everything they need travels in the fixed fields
(yiaddr, siaddr, sname, file) plus the RFC 1497 vendor area: subnet mask, router, DNS,
host name and the boot file size in 512-byte blocks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ptftpd.dhcp.leases import Lease
from ptftpd.dhcp.options import Opt
from ptftpd.dhcp.packet import Message

if TYPE_CHECKING:
    from ptftpd.dhcp.engine import DhcpEngine

__all__ = ["boot_file_blocks", "bootp_reply"]


def boot_file_blocks(size: int) -> int:
    """Option 13 counts 512-octet blocks, rounded up, capped at what 16 bits hold."""
    return min((size + 511) // 512, 0xFFFF)


def bootp_reply(engine: DhcpEngine, request: Message, lease: Lease) -> Message:
    from ptftpd.dhcp.engine import make_reply

    cfg = engine.config
    reply = make_reply(request, None, cfg.server_ip)
    reply.yiaddr = lease.address
    reply.ciaddr = request.ciaddr
    reply.siaddr = cfg.siaddr
    reply.sname = (cfg.tftp_server_name or str(cfg.siaddr)).encode()[:63]
    choice = engine.boot_for(request)
    if choice is not None:
        reply.file = choice.file.encode()[:127]
        if choice.next_server is not None:
            reply.siaddr = choice.next_server
            reply.sname = str(choice.next_server).encode()
    opts = reply.options
    opts[Opt.SUBNET_MASK] = cfg.network.netmask.packed
    if cfg.router_list:
        opts[Opt.ROUTER] = b"".join(a.packed for a in cfg.router_list)
    if cfg.dns:
        opts[Opt.DNS] = b"".join(a.packed for a in cfg.dns)
    name = lease.hostname
    static = engine.policy.static_for(request.mac_str)
    if static is not None and static.hostname:
        name = static.hostname
    if name:
        opts[Opt.HOSTNAME] = name.encode()
    if cfg.boot_file_size is not None and choice is not None and choice.file == cfg.bootfile:
        opts[Opt.BOOT_FILE_SIZE] = boot_file_blocks(cfg.boot_file_size).to_bytes(2, "big")
    if cfg.domain_name:
        opts[Opt.DOMAIN_NAME] = cfg.domain_name.encode()
    for code, value in cfg.extra_options.items():
        opts[code] = value
    return reply
