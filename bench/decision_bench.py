#!/usr/bin/env python3
"""Per-machine decision latency (issue 22): pxed's DHCP answer with an inventory.

DISCOVERs from iPXE (user class iPXE: each gets its machine's script rendered) go
through pxed's real full-mode path - the DHCP engine with pxed's boot policy
(`PxeService.boot_policy` -> `Machines.choose` -> the decision chain -> the iPXE
script), leases in memory - paced at --rate per second (200), from --machines (1,000)
MACs. Configurations, in interleaved rounds (the same machine load for each):

- builtin:  no inventory (pxed's firmware table, as before issue 22);
- mac-1000: 1,000 ``[[machine]]`` entries selected by MAC (indexed), a profile each;
- glob-1000: 1,000 entries selected by hostname glob (no index: the worst case, every
  entry tried before the default).

Reported per configuration: p50 and p99 of one DISCOVER's handling (engine + decision
+ render) and of the decision alone (`Machines.choose`), in microseconds, and the
ratio of each p50 to builtin's. No sockets: what is measured is the decision's cost on
the loop, which every other client waits behind.

Run:  .venv/bin/python bench/decision_bench.py [--rounds 3] [--rate 200] [--count 1000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from tempfile import TemporaryDirectory

from ptftpd.dhcp import DhcpConfig, DhcpServer, Message, MessageType, Opt, encode
from ptftpd.dhcp.leases import MemoryStore
from ptftpd.pxe import BootFiles, PxeConfig, PxeService
from ptftpd.pxe.inventory import EMPTY, Inventory, inventory_from
from ptftpd.tftp.server import ServerConfig


def mac_of(i: int) -> str:
    return f"52:54:00:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"


def discover(i: int) -> bytes:
    msg = Message(xid=i, chaddr=bytes.fromhex(mac_of(i).replace(":", "")) + b"\x00" * 10)
    msg.options[Opt.MESSAGE_TYPE] = bytes([MessageType.DISCOVER])
    msg.options[Opt.VENDOR_CLASS] = b"PXEClient:Arch:00000:UNDI:002001"
    msg.options[Opt.CLIENT_ARCH] = b"\x00\x00"
    msg.options[Opt.USER_CLASS] = b"iPXE"
    msg.options[Opt.HOSTNAME] = f"node-{i}".encode()
    return encode(msg)


def inventories(machines: int) -> dict[str, Inventory]:
    profile = {
        "kernel": "debian/linux",
        "initrd": ["debian/initrd.gz"],
        "cmdline": "auto=true url=http://{{ server }}/preseed/{{ mac-hyphen }}.cfg",
    }
    by_mac = [{"mac": mac_of(i), "profile": f"p{i % 10}"} for i in range(machines)]
    by_glob = [{"hostname": f"host-{i}-*", "profile": f"p{i % 10}"} for i in range(machines)]
    profiles = {f"p{i}": profile for i in range(10)} | {"default": profile}
    return {
        "builtin": EMPTY,
        f"mac-{machines}": inventory_from({"machine": by_mac, "profile": profiles}),
        f"glob-{machines}": inventory_from({"machine": by_glob, "profile": profiles}),
    }


def service(root: Path, inventory: Inventory) -> PxeService:
    dhcp = DhcpConfig(
        server_ip=IPv4Address("10.78.0.1"),
        network=IPv4Network("10.78.0.0/16"),
        bootfile="undionly.kpxe",
        interface="br0",
    )
    config = PxeConfig(
        dhcp=dhcp,
        tftp=ServerConfig(root=root, read_only=True),
        files=BootFiles("undionly.kpxe"),
        http_port=8080,
        inventory=inventory,
    )
    pxe = PxeService(config)
    server = DhcpServer(pxe.config.dhcp, boot_policy=pxe.boot_policy, store=MemoryStore())
    server.engine = server.build_engine()
    pxe.dhcp_server = server
    return pxe


def one_round(
    pxe: PxeService, packets: list[bytes], rate: float
) -> tuple[list[float], list[float]]:
    """Handle `packets` at `rate` per second; (per-request µs, decision-only µs)."""
    engine = pxe.dhcp_server.engine if pxe.dhcp_server else None
    assert engine is not None
    handled: list[float] = []
    decided: list[float] = []
    choose = pxe.machines.choose

    def timed_choose(files: BootFiles, request: Message, now: float):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        out = choose(files, request, now)
        decided.append((time.perf_counter() - t0) * 1e6)
        return out

    pxe.machines.choose = timed_choose  # type: ignore[method-assign]
    start = time.perf_counter()
    for n, data in enumerate(packets):
        slot = start + n / rate
        while (now := time.perf_counter()) < slot:
            time.sleep(min(slot - now, 0.001))
        t0 = time.perf_counter()
        out = engine.handle(data, ("0.0.0.0", 68), time.time())
        handled.append((time.perf_counter() - t0) * 1e6)
        assert out, "no OFFER"
    pxe.machines.choose = choose  # type: ignore[method-assign]
    return handled, decided


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--count", type=int, default=1000, help="DISCOVERs per round")
    parser.add_argument("--machines", type=int, default=1000)
    args = parser.parse_args()
    with TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "undionly.kpxe").write_bytes(b"x")
        configs = inventories(args.machines)
        results: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in configs}
        packets = [discover(i % args.machines) for i in range(args.count)]
        for r in range(args.rounds):
            for name, inv in configs.items():
                handled, decided = one_round(service(root, inv), packets, args.rate)
                results[name][0].extend(handled)
                results[name][1].extend(decided)
                print(f"round {r + 1} {name}: p50 {statistics.median(handled):.0f} µs", flush=True)
    base = statistics.median(results["builtin"][0])
    print(f"\n{args.count} DISCOVERs x {args.rounds} rounds at {args.rate:.0f}/s, "
          f"{args.machines} machines; µs per DISCOVER (engine + decision + script)")  # fmt: skip
    print("| configuration | DISCOVER p50 | p99 | decision p50 | p99 | p50 vs builtin |")
    print("|---|---|---|---|---|---|")
    for name, (handled, decided) in results.items():
        ratio = statistics.median(handled) / base
        print(
            f"| {name} | {pct(handled, 0.5):.0f} | {pct(handled, 0.99):.0f} | "
            f"{pct(decided, 0.5):.0f} | {pct(decided, 0.99):.0f} | {ratio:.2f} |"
        )


if __name__ == "__main__":
    main()
