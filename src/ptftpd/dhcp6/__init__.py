"""DHCPv6 server (RFC 8415) with RFC 5970 netboot options and router advertisements.

Building blocks for `pxed --ipv6`, usable on their own::

    config = Dhcp6Config(
        interface="eth0",
        prefix=IPv6Network("fd00::/64"),
        server_addresses=(IPv6Address("fd00::1"),),
        leases_path=Path("/var/lib/ptftpd/dhcp6-eth0.sqlite"),
        boot_policy=ArchTablePolicy({7: "tftp://[fd00::1]/ipxe.efi"}),
    )
    service = Dhcp6Service(config)
    await service.start()  # StartError: one line
    ...
    service.close()

Modules: `codec` (messages and options), `leases` (bindings on the lease core's one
policy and stores, `ptftpd.dhcp.leases`), `boot` (boot policy), `engine` (RFC 8415
server rules, sans-IO), `ra` (router advertisements, sans-IO), `rasender` and
`service` (asyncio drivers).
"""

from ptftpd.dhcp6.boot import (
    ArchTablePolicy,
    BootChoice6,
    BootPolicy6,
    BootRequest6,
    boot_url,
    is_netboot,
    url_policy,
)
from ptftpd.dhcp6.config import Dhcp6Config, config_for_interface
from ptftpd.dhcp6.engine import Dhcp6Engine, Outgoing
from ptftpd.dhcp6.service import Dhcp6Service

__all__ = [
    "ArchTablePolicy",
    "BootChoice6",
    "BootPolicy6",
    "BootRequest6",
    "Dhcp6Config",
    "Dhcp6Engine",
    "Dhcp6Service",
    "Outgoing",
    "boot_url",
    "config_for_interface",
    "is_netboot",
    "url_policy",
]
