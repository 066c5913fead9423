"""One scripted DHCP DISCOVER as a firmware that sends its architecture only in the
vendor class (some EDK2 builds, the Pi 4's UEFI firmware among them: no option 93, or
one that cannot be read), run with `ip netns exec` in a test namespace. Prints the first
reply's file, vendor class and option 43 as JSON. Broadcast only on the namespace's own
interface; the wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import time

import dhcpprobe  # tests/dhcp, on PYTHONPATH

from ptftpd.dhcp import Message, MessageType, Opt, encode


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iface", default="eth0")
    parser.add_argument("--mac", required=True)
    parser.add_argument("--vendor", required=True)
    parser.add_argument("--option-93", default=None, help="raw hex; absent: no option 93")
    parser.add_argument("--wait", type=float, default=5.0)
    args = parser.parse_args()
    mac = bytes.fromhex(args.mac.replace(":", ""))
    msg = Message(xid=random.getrandbits(32), chaddr=mac + b"\x00" * 10, flags=0x8000)
    msg.options[Opt.MESSAGE_TYPE] = bytes([MessageType.DISCOVER])
    msg.options[Opt.VENDOR_CLASS] = args.vendor.encode()
    if args.option_93 is not None:
        msg.options[Opt.CLIENT_ARCH] = bytes.fromhex(args.option_93)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, args.iface.encode())
    sock.bind(("0.0.0.0", 68))
    sock.sendto(encode(msg), ("255.255.255.255", 67))
    deadline = time.monotonic() + args.wait
    reply = dhcpprobe.receive(sock, msg.xid, max(0.0, deadline - time.monotonic()))
    if reply is None:
        print(json.dumps(None))
        return 0
    print(
        json.dumps(
            {
                "file": reply.file_str,
                "60": reply.options.get(Opt.VENDOR_CLASS, b"").decode(errors="replace"),
                "43": reply.options.get(Opt.VENDOR_SPECIFIC, b"").hex(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
