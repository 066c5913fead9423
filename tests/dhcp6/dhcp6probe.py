"""A scripted DHCPv6 client for the namespace tests: sends raw datagrams from port 546
on IFACE to ff02::1:2 and prints each reply as one JSON line. Every wait is bounded.

    dhcp6probe.py IFACE HEX [HEX ...] [--wait SECONDS] [--to ADDR] [--port N] [--sport N]
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import time

from ptftpd.dhcp6.codec import BootFileUrl, IaNa, PacketError, ServerId, VendorClass, decode


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("iface")
    p.add_argument("packets", nargs="+")
    p.add_argument("--wait", type=float, default=3.0)
    p.add_argument("--to", default="ff02::1:2")
    p.add_argument("--port", type=int, default=547)
    p.add_argument("--sport", type=int, default=546)
    args = p.parse_args()
    index = socket.if_nametoindex(args.iface)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, args.iface.encode())
    sock.bind(("::", args.sport))
    scope = index if args.to.startswith(("ff02:", "fe80:")) else 0
    for hexdata in args.packets:
        sock.sendto(bytes.fromhex(hexdata), (args.to, args.port, 0, scope))
    deadline = time.monotonic() + args.wait
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            break
        data, addr = sock.recvfrom(65536)
        try:
            msg = decode(data)
        except PacketError as exc:
            print(json.dumps({"error": str(exc), "from": addr[0]}), flush=True)
            continue
        url = msg.first(BootFileUrl)
        vendor = msg.first(VendorClass)
        print(
            json.dumps(
                {
                    "type": msg.msg_type,
                    "xid": msg.transaction_id,
                    "from": addr[0],
                    "ia_na": [[str(a.address) for a in ia.addresses] for ia in msg.all(IaNa)],
                    "url": url.url if url else None,
                    "vendor": [i.decode() for i in vendor.items] if vendor else None,
                    "server_id": server.duid.hex() if (server := msg.first(ServerId)) else None,
                    "port": addr[1],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
