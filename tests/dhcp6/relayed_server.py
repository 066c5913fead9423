"""The DHCPv6 service for the real-relay test: `relayed_server.py IFACE PREFIX LEASES`.

Serves PREFIX, the relayed clients' link (the relay's link address lies in it), from
IFACE, which sits on the link to the relay only; no RAs. Runs until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from ipaddress import IPv6Network
from pathlib import Path

from ptftpd.dhcp6.config import Dhcp6Config
from ptftpd.dhcp6.service import Dhcp6Service


async def main(interface: str, prefix: str, leases: str) -> None:
    config = Dhcp6Config(
        interface=interface,
        prefix=IPv6Network(prefix),
        leases_path=Path(leases),
        send_ra=False,
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
    asyncio.run(main(*sys.argv[1:4]))
