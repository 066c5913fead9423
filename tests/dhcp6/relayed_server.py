"""The DHCPv6 service for the real-relay tests:
`relayed_server.py IFACE PREFIX LEASES [INVENTORY.json SERVER-ADDRESS]`.

Serves PREFIX, the relayed clients' link (the relay's link address lies in it), from
IFACE, which sits on the link to the relay only; no RAs. With an inventory (pxed's
`[pxed]` machine/profile tables as JSON), boot-file-urls come from pxed's DHCPv6
policy and per-machine decisions (`Pxe6Policy`, `Machines`), naming SERVER-ADDRESS.
Runs until SIGTERM."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

from ptftpd.dhcp6.config import Dhcp6Config
from ptftpd.dhcp6.service import Dhcp6Service
from ptftpd.pxe.firmware import BootFiles
from ptftpd.pxe.inventory import inventory_from
from ptftpd.pxe.ipv6 import Pxe6Policy
from ptftpd.pxe.machines import Machines


async def main(interface: str, prefix: str, leases: str, *pxe: str) -> None:
    policy = None
    if pxe:
        inventory = inventory_from(json.loads(Path(pxe[0]).read_text()))
        machines = Machines(inventory)
        machines.serve_ipv6(pxe[1], None)
        policy = Pxe6Policy(BootFiles("pxed-table.efi"), IPv6Address(pxe[1]), None, None, machines)
    config = Dhcp6Config(
        interface=interface,
        prefix=IPv6Network(prefix),
        leases_path=Path(leases),
        send_ra=False,
        boot_policy=policy,
    )
    service = Dhcp6Service(config)
    await service.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        service.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    asyncio.run(main(*sys.argv[1:6]))
