"""Hand-crafted DHCP/BOOTP exchanges, run inside a test namespace with `ip netns exec`.

Prints one JSON object per reply on stdout. Every wait is bounded; packets go only to
the address given on the command line (an address inside the test's namespaces) or to
the broadcast address of the namespace's own interface.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sys
import time
from ipaddress import IPv4Address

from ptftpd.dhcp import Message, MessageType, Opt, PacketError, decode, encode


def describe(msg: Message) -> dict[str, object]:
    return {
        "type": msg.message_type.name if msg.message_type else None,
        "xid": msg.xid,
        "yiaddr": str(msg.yiaddr),
        "siaddr": str(msg.siaddr),
        "ciaddr": str(msg.ciaddr),
        "giaddr": str(msg.giaddr),
        "flags": msg.flags,
        "sname": msg.sname_str,
        "file": msg.file_str,
        "cookie": msg.cookie,
        "options": {str(k): v.hex() for k, v in msg.options.items()},
    }


def receive(sock: socket.socket, xid: int, timeout: float) -> Message | None:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data, _ = sock.recvfrom(4096)
        except TimeoutError:
            return None
        try:
            msg = decode(data)
        except PacketError:
            continue
        if msg.xid == xid and msg.op == 2:
            return msg
    return None


def mac_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def relay(args: argparse.Namespace) -> int:
    """Act as a relay agent at `giaddr`: DISCOVER then REQUEST, both relayed."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.giaddr, 67))
    xid = random.getrandbits(32)
    chaddr = mac_bytes(args.mac)
    agent_info = bytes.fromhex("0106") + b"port-7" + bytes.fromhex("0204") + b"sw01"
    base: dict[int, bytes] = {Opt.RELAY_AGENT_INFO: agent_info}
    if args.vendor:
        base[Opt.VENDOR_CLASS] = args.vendor.encode()
    if args.arch is not None:
        base[Opt.CLIENT_ARCH] = args.arch.to_bytes(2, "big")
    if args.hostname:
        base[Opt.HOSTNAME] = args.hostname.encode()
    discover = Message(
        xid=xid,
        hops=1,
        giaddr=IPv4Address(args.giaddr),
        chaddr=chaddr,
        options={Opt.MESSAGE_TYPE: bytes([MessageType.DISCOVER]), **base},
    )
    sock.sendto(encode(discover), (args.server, 67))
    offer = receive(sock, xid, args.timeout)
    print(json.dumps({"step": "offer", "reply": describe(offer) if offer else None}))
    if offer is None:
        return 1
    request = Message(
        xid=xid,
        hops=1,
        giaddr=IPv4Address(args.giaddr),
        chaddr=chaddr,
        options={
            Opt.MESSAGE_TYPE: bytes([MessageType.REQUEST]),
            Opt.REQUESTED_IP: offer.yiaddr.packed,
            Opt.SERVER_ID: offer.options[Opt.SERVER_ID],
            **base,
        },
    )
    sock.sendto(encode(request), (args.server, 67))
    ack = receive(sock, xid, args.timeout)
    print(json.dumps({"step": "ack", "reply": describe(ack) if ack else None}))
    return 0 if ack else 1


def bootp(args: argparse.Namespace) -> int:
    """A plain RFC 951 client: BOOTREQUEST without option 53, broadcast flag set."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, args.iface.encode())
    sock.bind(("0.0.0.0", 68))
    xid = random.getrandbits(32)
    request = Message(
        xid=xid, flags=0x8000, chaddr=mac_bytes(args.mac), cookie=args.cookie, options={}
    )
    for _ in range(3):
        sock.sendto(encode(request), ("255.255.255.255", 67))
        reply = receive(sock, xid, args.timeout / 3)
        if reply is not None:
            print(json.dumps({"step": "bootreply", "reply": describe(reply)}))
            return 0
    print(json.dumps({"step": "bootreply", "reply": None}))
    return 1


def decline(args: argparse.Namespace) -> int:
    """A client that finds its new address in use (what a real client learns from an
    ARP probe, RFC 2131 3.1 step 5): DISCOVER, REQUEST the offer, then DECLINE it.
    Replies asked for by broadcast (flag): the namespace holds no address."""
    sock = _crowd_socket(args.iface)
    xid = random.getrandbits(32)

    def send(mtype: MessageType, **options: bytes) -> None:
        by_code = {Opt.MESSAGE_TYPE: bytes([mtype])}
        by_code |= {Opt[name.upper()]: value for name, value in options.items()}
        msg = Message(xid=xid, flags=0x8000, chaddr=mac_bytes(args.mac), options=by_code)
        sock.sendto(encode(msg), ("255.255.255.255", 67))

    offer = None
    for _ in range(3):
        send(MessageType.DISCOVER)
        offer = receive(sock, xid, args.timeout / 3)
        if offer is not None:
            break
    print(json.dumps({"step": "offer", "reply": describe(offer) if offer else None}))
    if offer is None:
        return 1
    chosen = {"server_id": offer.options[Opt.SERVER_ID], "requested_ip": offer.yiaddr.packed}
    send(MessageType.REQUEST, **chosen)
    ack = receive(sock, xid, args.timeout)
    print(json.dumps({"step": "ack", "reply": describe(ack) if ack else None}))
    if ack is None or ack.message_type is not MessageType.ACK:
        return 1
    send(MessageType.DECLINE, **chosen)
    return 0


def client_mac(seed: int, i: int) -> bytes:
    return bytes([0x02, 0x5C, seed & 0xFF, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF])


def _crowd_socket(iface: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(("0.0.0.0", 68))
    return sock


def crowd(args: argparse.Namespace) -> int:
    """N scripted clients at once (MACs from --seed): DORA, or with --rebind MAC=ADDR...
    each MAC REBINDs (ciaddr, broadcast, no server id) for its ADDR. Replies are asked
    for by broadcast (flag), so one namespace can play every client (a reply to a
    REBINDING client goes to its ciaddr: the namespace must hold those addresses).
    Prints one JSON line per client: its MAC, the ACKed address, the server."""
    sock = _crowd_socket(args.iface)
    pairs = [item.split("=", 1) for item in args.rebind or []]
    rebind = [IPv4Address(addr) for _, addr in pairs]
    macs = [mac_bytes(mac) for mac, _ in pairs]
    count = len(rebind) if rebind else args.count

    def mac_of(i: int) -> bytes:
        return macs[i] if rebind else client_mac(args.seed, i)

    rng = random.Random(args.seed)
    state: dict[int, dict[str, object]] = {}
    by_xid: dict[int, int] = {}

    def send(i: int, mtype: MessageType, extra: dict[int, bytes], ciaddr: str = "0.0.0.0") -> None:
        xid = rng.getrandbits(32)
        by_xid[xid] = i
        msg = Message(
            xid=xid,
            flags=0x8000,
            ciaddr=IPv4Address(ciaddr),
            chaddr=mac_of(i),
            options={Opt.MESSAGE_TYPE: bytes([mtype]), **extra},
        )
        state[i]["sent"] = time.monotonic()
        state[i]["xid"] = xid
        sock.sendto(encode(msg), ("255.255.255.255", 67))

    prefer = [IPv4Address(a).packed for a in args.prefer or []]

    def choose(i: int, yiaddr: IPv4Address, sid: bytes) -> None:
        entry = state[i]
        entry["step"] = "requesting"
        entry.pop("offer", None)
        send(i, MessageType.REQUEST, {Opt.REQUESTED_IP: yiaddr.packed, Opt.SERVER_ID: sid})

    def start(i: int) -> None:
        state[i].pop("offer", None)
        if rebind:
            state[i]["step"] = "requesting"
            send(i, MessageType.REQUEST, {}, str(rebind[i]))
        else:
            state[i]["step"] = "selecting"
            send(i, MessageType.DISCOVER, {})

    for i in range(count):
        state[i] = {"mac": mac_of(i).hex(":"), "tries": 1}
        start(i)
    deadline = time.monotonic() + args.timeout
    linger: float | None = None  # --linger: read on after the last ACK (late OFFERs)

    def going() -> bool:
        nonlocal linger
        now = time.monotonic()
        if now >= deadline:
            return False
        if any(v["step"] != "bound" for v in state.values()):
            return True
        if linger is None:
            linger = now + args.linger
        return now < linger

    while going():
        sock.settimeout(0.1)
        try:
            data, _ = sock.recvfrom(4096)
        except TimeoutError:
            data = b""
        msg = None
        if data:
            try:
                msg = decode(data)
            except PacketError:
                msg = None
        if msg is not None and msg.op == 2 and msg.xid in by_xid:
            i = by_xid[msg.xid]
            entry = state[i]
            mtype = msg.message_type
            sid = msg.options.get(Opt.SERVER_ID, b"")
            if mtype is MessageType.OFFER:  # every OFFER, whenever it comes
                offers = entry.setdefault("offers", [])
                assert isinstance(offers, list)
                offers.append(str(IPv4Address(sid)) if len(sid) == 4 else None)
            if mtype is MessageType.OFFER and entry["step"] == "selecting":
                # Clients spread over the servers (--prefer): client i waits a moment
                # for server i mod N, then takes the first offer it got.
                first = entry.setdefault("offer", (time.monotonic(), msg.yiaddr, sid))
                if not prefer or sid == prefer[i % len(prefer)]:
                    choose(i, msg.yiaddr, sid)
                else:
                    entry["offer"] = first
            elif mtype is MessageType.ACK and entry["step"] == "requesting":
                entry["step"] = "bound"
                entry["address"] = str(msg.yiaddr)
                entry["server"] = str(IPv4Address(sid)) if len(sid) == 4 else None
            elif mtype is MessageType.NAK and entry["step"] == "requesting":
                entry["naks"] = int(str(entry.get("naks", 0))) + 1
                start(i)
        now = time.monotonic()
        for i, entry in state.items():
            held = entry.get("offer")
            if entry["step"] == "selecting" and isinstance(held, tuple) and now - held[0] > 1:
                choose(i, held[1], held[2])
            # Retransmit what got no answer (bounded by the overall deadline).
            if entry["step"] != "bound" and now - float(str(entry["sent"])) > args.retry:
                entry["tries"] = int(str(entry["tries"])) + 1
                start(i)
    for entry in state.values():
        keys = ("mac", "address", "server", "tries", "naks", "offers")
        out = {k: entry.get(k) for k in keys}
        print(json.dumps(out))
    return 0 if all(v["step"] == "bound" for v in state.values()) else 1


def garbage(args: argparse.Namespace) -> int:
    """Malformed datagrams of every kind the codec must refuse."""
    valid = encode(Message(xid=1, options={Opt.MESSAGE_TYPE: bytes([MessageType.DISCOVER])}))
    rng = random.Random(args.seed)
    bad = [
        b"",
        b"\x01",
        valid[:100],  # truncated header
        valid[:236] + b"\x00\x00\x00\x00\x35\x01\x01\xff",  # bad cookie
        valid[:240] + b"\x35\x40\x01",  # option runs past the end
        valid[:240] + b"\x34\x01\x03\x35\x01\x01\xff",  # overload with empty fields
        valid[:108]
        + b"\x34\x01\x01\xff".ljust(128, b"\x00")
        + valid[236:240]
        + b"\x34\x01\x01\x35\x01\x01\xff",  # overload loop
        bytes([3]) + valid[1:],  # bad op
    ]
    bad += [rng.randbytes(rng.randrange(1, 600)) for _ in range(args.count)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for data in bad:
        sock.sendto(data, (args.server, 67))
    print(json.dumps({"sent": len(bad)}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("relay")
    r.add_argument("--giaddr", required=True)
    r.add_argument("--server", required=True)
    r.add_argument("--mac", required=True)
    r.add_argument("--vendor")
    r.add_argument("--arch", type=int)
    r.add_argument("--hostname")
    b = sub.add_parser("bootp")
    b.add_argument("--iface", required=True)
    b.add_argument("--mac", required=True)
    b.add_argument("--no-cookie", dest="cookie", action="store_false")
    g = sub.add_parser("garbage")
    g.add_argument("--server", required=True)
    g.add_argument("--count", type=int, default=50)
    g.add_argument("--seed", type=int, default=4)
    c = sub.add_parser("crowd")
    c.add_argument("--iface", required=True)
    c.add_argument("--count", type=int, default=200)
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--retry", type=float, default=3.0)
    c.add_argument("--rebind", nargs="*", metavar="MAC=ADDR")
    c.add_argument("--prefer", nargs="*", metavar="SERVER")
    c.add_argument("--linger", type=float, default=0.0)
    d = sub.add_parser("decline")
    d.add_argument("--iface", required=True)
    d.add_argument("--mac", required=True)
    for p in (r, b, g, c, d):
        p.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    if not (args.mode == "garbage" or os.geteuid() == 0):
        print("needs root", file=sys.stderr)
        return 2
    modes = {"relay": relay, "bootp": bootp, "garbage": garbage, "crowd": crowd, "decline": decline}
    return int(modes[args.mode](args))


if __name__ == "__main__":
    sys.exit(main())
