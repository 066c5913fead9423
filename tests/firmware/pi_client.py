"""A scripted Raspberry Pi network bootloader (Pi 4/5 EEPROM, as Raspberry Pi documents
it), run with `ip netns exec` in a test namespace. There is no Pi emulator that boots
over the network, so this follows the documented behaviour step by step:

1. DHCP DISCOVER with vendor class `PXEClient:Arch:00000:UNDI:002001`, architecture 0,
   NDI 1.2.1 and option 97 as the EEPROM's default DHCP_OPTION97 (the fourcc `RPi4`, the
   board revision, the MAC's low 4 bytes, the serial number). The broadcast flag is set:
   this script's socket cannot receive unicast to an address it does not have yet.
2. Offers without option 43 holding the PXE menu string "Raspberry Pi Boot" (the
   PXE_OPTION43 setting) are ignored as boot offers; an address may come from another
   server's plain offer (proxyDHCP set-ups). It waits until it has both, bounded.
3. REQUEST / ACK with the address server, then the address goes on the interface.
4. TFTP (server: option 66, else siaddr, else the boot offer's server identifier) in
   the EEPROM's order with TFTP_PREFIX=0: `<serial>/start4.elf`, then
   `<serial>/start.elf`; when neither exists the prefix is dropped; then `config.txt`,
   `start4.elf`, `fixup4.dat` under the prefix that worked. Each read request asks
   `tsize` and `blksize 1024`.

Prints one JSON object: the offers seen (option 43 in hex), the DISCOVER-to-boot-offer
time, the address, and each file read (name, size, sha256 or the TFTP error).
Packets go only to the broadcast address of the namespace's own interface or to the
servers that answered; every wait is bounded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import socket
import struct
import subprocess
import sys
import time
from ipaddress import IPv4Address

import dhcpprobe  # tests/dhcp, on PYTHONPATH (see test_pi_boot.run_pi)

from ptftpd.dhcp import Message, MessageType, Opt, encode

MENU = b"Raspberry Pi Boot"


def guid(mac: bytes, serial: int) -> bytes:
    return b"\x00RPi4" + (0x00C03111).to_bytes(4, "little") + mac[2:] + serial.to_bytes(4, "little")


def dhcp_message(mac: bytes, serial: int, mtype: MessageType, xid: int) -> Message:
    msg = Message(xid=xid, chaddr=mac + b"\x00" * 10, flags=0x8000)
    msg.options[Opt.MESSAGE_TYPE] = bytes([mtype])
    msg.options[Opt.PARAMETER_LIST] = bytes([1, 3, 43, 60, 66, 67])
    msg.options[Opt.CLIENT_ARCH] = b"\x00\x00"
    msg.options[94] = b"\x01\x02\x01"
    msg.options[Opt.CLIENT_UUID] = guid(mac, serial)
    msg.options[Opt.VENDOR_CLASS] = b"PXEClient:Arch:00000:UNDI:002001"
    return msg


def receive(sock: socket.socket, xid: int, deadline: float) -> Message | None:
    """The next reply for `xid` before `deadline` (dhcpprobe's bounded wait)."""
    return dhcpprobe.receive(sock, xid, max(0.0, deadline - time.monotonic()))


def tftp_read(server: str, name: str, timeout: float = 3.0) -> dict[str, object]:
    """One read request (octet, tsize, blksize 1024), bounded: at most 4096 blocks."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    rrq = b"\x00\x01" + name.encode() + b"\x00octet\x00tsize\x000\x00blksize\x001024\x00"
    sock.sendto(rrq, (server, 69))
    blksize, expected, data = 512, 1, bytearray()
    try:
        for _ in range(4096):
            packet, peer = sock.recvfrom(65536)
            opcode = int.from_bytes(packet[:2], "big")
            if opcode == 5:
                code = int.from_bytes(packet[2:4], "big")
                return {"name": name, "error": code, "message": packet[4:-1].decode()}
            if opcode == 6:  # OACK: take blksize, acknowledge block 0
                fields = packet[2:].split(b"\x00")
                opts = dict(zip(fields[0::2], fields[1::2], strict=False))
                blksize = int(opts.get(b"blksize", b"512"))
                sock.sendto(b"\x00\x04\x00\x00", peer)
                continue
            if opcode == 3:
                block = int.from_bytes(packet[2:4], "big")
                if block == expected & 0xFFFF:
                    data += packet[4:]
                    expected += 1
                sock.sendto(struct.pack("!HH", 4, block), peer)
                if block == (expected - 1) & 0xFFFF and len(packet) - 4 < blksize:
                    return {
                        "name": name,
                        "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(),
                    }
    except TimeoutError:
        return {"name": name, "error": "timeout"}
    finally:
        sock.close()
    return {"name": name, "error": "too many blocks"}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iface", default="eth0")
    parser.add_argument("--mac", required=True)
    parser.add_argument("--serial", type=lambda v: int(v, 16), required=True)
    parser.add_argument("--wait", type=float, default=6.0, help="DHCP wait (s)")
    parser.add_argument("--discover-only", action="store_true")
    args = parser.parse_args()
    mac = bytes.fromhex(args.mac.replace(":", ""))
    report: dict[str, object] = {"offers": []}

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, args.iface.encode())
    sock.bind(("0.0.0.0", 68))
    xid = random.getrandbits(32)
    sent = time.monotonic()
    sock.sendto(
        encode(dhcp_message(mac, args.serial, MessageType.DISCOVER, xid)), ("255.255.255.255", 67)
    )
    address_offer: Message | None = None
    boot_offer: Message | None = None
    deadline = sent + args.wait
    offers: list[dict[str, object]] = []
    # (--discover-only wants the boot offer alone: in proxy set-ups without an address
    # server no address offer ever comes, and waiting out --wait for it cost 11 s a run)
    while boot_offer is None or (address_offer is None and not args.discover_only):
        offer = receive(sock, xid, deadline)
        if offer is None:
            break
        if offer.message_type is not MessageType.OFFER:
            continue
        vendor = offer.options.get(Opt.VENDOR_SPECIFIC, b"")
        offers.append(
            {
                "server": str(IPv4Address(offer.options.get(Opt.SERVER_ID, bytes(4)))),
                "yiaddr": str(offer.yiaddr),
                "siaddr": str(offer.siaddr),
                "43": vendor.hex(),
                "60": offer.options.get(Opt.VENDOR_CLASS, b"").decode(errors="replace"),
                "after": round(time.monotonic() - sent, 3),
            }
        )
        if offer.yiaddr != IPv4Address(0) and address_offer is None:
            address_offer = offer
        if MENU in vendor and boot_offer is None:
            boot_offer = offer
            report["boot_offer_after"] = round(time.monotonic() - sent, 3)
    report["offers"] = offers
    if args.discover_only or address_offer is None or boot_offer is None:
        report["booted"] = False
        print(json.dumps(report))
        return 0

    request = dhcp_message(mac, args.serial, MessageType.REQUEST, xid)
    request.options[Opt.REQUESTED_IP] = address_offer.yiaddr.packed
    request.options[Opt.SERVER_ID] = address_offer.options[Opt.SERVER_ID]
    sock.sendto(encode(request), ("255.255.255.255", 67))
    ack = None
    ack_deadline = time.monotonic() + args.wait
    while ack is None:
        reply = receive(sock, xid, ack_deadline)
        if reply is None:
            break
        if reply.message_type is MessageType.ACK:
            ack = reply
    sock.close()
    if ack is None:
        report["booted"] = False
        report["error"] = "no ACK"
        print(json.dumps(report))
        return 0
    report["address"] = str(ack.yiaddr)
    subprocess.run(["ip", "addr", "add", f"{ack.yiaddr}/24", "dev", args.iface], check=True)

    server = boot_offer.options.get(Opt.TFTP_SERVER_NAME, b"").decode(errors="replace")
    if not server:
        server = str(boot_offer.siaddr)
        if server == "0.0.0.0":
            server = str(IPv4Address(boot_offer.options[Opt.SERVER_ID]))
    report["tftp_server"] = server
    prefix = f"{args.serial:08x}/"
    reads = []
    for first in ("start4.elf", "start.elf"):
        result = tftp_read(server, prefix + first)
        reads.append(result)
        if "error" not in result:
            break
    else:
        prefix = ""
    for name in ("config.txt", "start4.elf", "fixup4.dat"):
        reads.append(tftp_read(server, prefix + name))
    report["reads"] = reads
    report["booted"] = all("error" not in r for r in reads[-3:])
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
