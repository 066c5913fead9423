"""A scripted PXE client for socket-level pxed tests, run with `ip netns exec` in a
test namespace: one DISCOVER (port 67, broadcast on IFACE) or one boot server REQUEST
(port 4011, unicast to SERVER), then the first reply for its xid (every reply within
--wait with --all) printed as a JSON line. ``dora``: a DISCOVER, its first OFFER, then
(--request-after seconds later, as EDK2 collecting offers) the REQUEST of that offer
with the same xid, and its answer; each reply's line says when it came ("after", seconds
since the DISCOVER).

Any architecture code can be sent, which real firmware in QEMU cannot do (ARM64,
32-bit UEFI, codes the registry does not know). Packets go only to the broadcast
address of the namespace's own interface or to SERVER; every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import threading
import time
from ipaddress import IPv4Address

from ptftpd.dhcp import Message, MessageType, Opt, PacketError, decode, encode


def build(args: argparse.Namespace, mtype: MessageType) -> Message:
    mac = bytes.fromhex(args.mac.replace(":", ""))
    msg = Message(xid=random.getrandbits(32), chaddr=mac + b"\x00" * 10, flags=0x8000)
    msg.options[Opt.MESSAGE_TYPE] = bytes([mtype])
    msg.options[Opt.CLIENT_ARCH] = args.arch.to_bytes(2, "big")
    msg.options[Opt.VENDOR_CLASS] = f"PXEClient:Arch:{args.arch:05d}:UNDI:003000".encode()
    if args.ipxe:
        msg.options[Opt.USER_CLASS] = b"iPXE"
    if args.ciaddr:
        msg.ciaddr = IPv4Address(args.ciaddr)
    return msg


def show(reply: Message, source: str, after: float) -> None:
    print(
        json.dumps(
            {
                "from": source,
                "type": reply.message_type.name if reply.message_type else None,
                "yiaddr": str(reply.yiaddr),
                "siaddr": str(reply.siaddr),
                "file": reply.file_str,
                "options": {str(k): v.hex() for k, v in reply.options.items()},
                "after": round(after, 3),
            }
        ),
        flush=True,
    )


def first_reply(sock: socket.socket, xid: int, wait: float, began: float) -> Message | None:
    """The first reply for `xid` within `wait` seconds, printed."""
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data, source = sock.recvfrom(4096)
        except TimeoutError:
            return None
        try:
            reply = decode(data)
        except PacketError:
            continue
        if reply.op == 2 and reply.xid == xid:
            show(reply, source[0], time.monotonic() - began)
            return reply
    return None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["discover", "bootserver", "dora"])
    parser.add_argument("--iface", required=True)
    parser.add_argument("--mac", required=True)
    parser.add_argument("--arch", type=int, required=True)
    parser.add_argument("--ipxe", action="store_true")
    parser.add_argument("--server", default="10.78.0.1")
    parser.add_argument("--ciaddr")
    parser.add_argument("--wait", type=float, default=5.0)
    parser.add_argument("--all", action="store_true", help="wait the whole time for replies")
    parser.add_argument("--request-after", type=float, default=0.0)
    parser.add_argument(
        "--again", default="", help="discover: send it again (same xid) at these seconds, a,b"
    )
    args = parser.parse_args()

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, args.iface.encode())
    sock.bind(("0.0.0.0", 68))
    began = time.monotonic()
    if args.mode == "bootserver":
        msg = build(args, MessageType.REQUEST)
        sock.sendto(encode(msg), (args.server, 4011))
    else:
        msg = build(args, MessageType.DISCOVER)
        sock.sendto(encode(msg), ("255.255.255.255", 67))
        for at in (float(a) for a in args.again.split(",") if a):  # retransmissions
            timer = threading.Timer(at, sock.sendto, (encode(msg), ("255.255.255.255", 67)))
            timer.daemon = True
            timer.start()
    if args.mode == "dora":
        offer = first_reply(sock, msg.xid, args.wait, began)
        if offer is None:
            return 0
        time.sleep(args.request_after)
        msg = build(args, MessageType.REQUEST)
        msg.xid = offer.xid
        msg.options[Opt.REQUESTED_IP] = offer.yiaddr.packed
        server_id = offer.options.get(Opt.SERVER_ID)
        if server_id is not None:
            msg.options[Opt.SERVER_ID] = server_id
        sock.sendto(encode(msg), ("255.255.255.255", 67))
        first_reply(sock, msg.xid, args.wait, began)
        return 0
    deadline = time.monotonic() + args.wait
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data, source = sock.recvfrom(4096)
        except TimeoutError:
            break
        try:
            reply = decode(data)
        except PacketError:
            continue
        if reply.op != 2 or reply.xid != msg.xid:
            continue
        show(reply, source[0], time.monotonic() - began)
        if not args.all:
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
