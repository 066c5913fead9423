"""Issue 23 items 1 and 2: the boot record per attempt per machine, its verdict, and the
diagnosis, fed by realistic sequences of typed events with a fake `now`."""

from __future__ import annotations

import asyncio
import json
import socket
import tracemalloc
from ipaddress import IPv4Address
from pathlib import Path

from ptftpd.events import (
    DhcpMessage,
    Failure,
    LeaseEvent,
    LeaseKind,
    TransferFinished,
    TransferRefused,
    TransferStarted,
)
from ptftpd.http import Served
from ptftpd.pxe.timeline import Timeline
from ptftpd.tftp.server import ServerConfig, TftpServer

MAC = "52:54:00:12:34:56"
IP = "192.168.50.10"
EDK2 = "PXEClient:Arch:00007:UNDI:003016"


def dora(tl: Timeline, t: float = 0.0, mac: str = MAC, ip: str = IP, vendor: str = EDK2) -> float:
    """DISCOVER/OFFER/REQUEST/ACK from `t`, one second apart; returns the next time."""
    address = IPv4Address(ip)
    tl.feed(DhcpMessage("in", "discover", mac, vendor_class=vendor), t)
    tl.feed(DhcpMessage("out", "offer", mac, address), t + 1)
    tl.feed(DhcpMessage("in", "request", mac, address, vendor_class=vendor), t + 2)
    tl.feed(DhcpMessage("out", "ack", mac, address), t + 3)
    return t + 4


def served(tl: Timeline, t: float, name: str = "ipxe.efi", size: int = 1_000_000) -> float:
    tl.feed(TransferStarted(IP, name, options=(("blksize", "1468"), ("tsize", "0"))), t)
    tl.feed(TransferFinished(IP, name, True, size, 2.0, None, blksize=1468), t + 2)
    return t + 3


def only(tl: Timeline, mac: str = MAC) -> dict[str, object]:
    attempts = tl.machine(mac)
    assert len(attempts) == 1, attempts
    return attempts[0]


# -- the record and its verdict ------------------------------------------------------


def test_completed_boot_record_is_json_with_every_step() -> None:
    tl = Timeline()
    served(tl, dora(tl, 100.0))
    view = only(tl)
    assert view["state"] == "completed"
    assert view["diagnosis"] == []
    steps = view["steps"]
    assert isinstance(steps, list)
    kinds = [s["kind"] for s in steps]
    assert kinds == [
        "dhcp.discover",
        "dhcp.offer",
        "dhcp.request",
        "dhcp.ack",
        "tftp.request",
        "tftp.done",
    ]
    assert [s["time"] for s in steps] == [100, 101, 102, 103, 104, 106]
    assert steps[3]["address"] == IP
    assert steps[4]["options"] == {"blksize": "1468", "tsize": "0"}
    done = steps[5]
    assert (done["bytes"], done["rate"], done["retransmissions"]) == (1_000_000, 500_000.0, 0)
    json.dumps(tl.machine(MAC))  # the API's form: plain JSON


def test_verdict_in_progress_then_stalled_then_moves_again() -> None:
    tl = Timeline(stall=30.0)
    tl.feed(DhcpMessage("in", "discover", MAC), 10.0)
    tl.feed(DhcpMessage("out", "offer", MAC, IPv4Address(IP)), 11.0)
    assert tl.get_timer() == 41.0
    tl.handle_timer(40.9)
    assert only(tl)["state"] == "in_progress"
    tl.handle_timer(41.0)
    view = only(tl)
    assert (view["state"], view["stalled_at"]) == ("stalled", "dhcp.offer")
    assert tl.get_timer() is None  # nothing more can stall
    tl.feed(DhcpMessage("in", "request", MAC, IPv4Address(IP)), 50.0)
    assert only(tl)["state"] == "in_progress"
    assert tl.get_timer() == 80.0


def test_a_running_transfer_does_not_stall_and_completes() -> None:
    tl = Timeline(stall=5.0)
    t = dora(tl)
    tl.feed(TransferStarted(IP, "big.img"), t)
    assert tl.get_timer() is None  # the TFTP server's own timeout ends it
    tl.handle_timer(t + 100)
    assert only(tl)["state"] == "in_progress"
    tl.feed(TransferFinished(IP, "big.img", True, 10, 100.0, None), t + 100)
    assert only(tl)["state"] == "completed"


def test_failed_with_reason_and_a_new_discover_starts_a_new_attempt() -> None:
    tl = Timeline()
    t = dora(tl)
    tl.feed(TransferRefused(IP, "pxelinux.0", "File not found", Failure.NOT_FOUND, 1), t)
    first = only(tl)
    assert first["state"] == "failed"
    assert first["reason"] == "pxelinux.0 over tftp: refused: File not found"
    # The next DISCOVER starts attempt 2; the DISCOVERs while it runs stay in it.
    tl.feed(DhcpMessage("in", "discover", MAC), t + 5)
    served(tl, dora(tl, t + 5))
    attempts = tl.machine(MAC)
    assert [a["state"] for a in attempts] == ["completed", "failed"]  # newest first
    assert [a["attempt"] for a in attempts] == [2, 1]


def test_a_discover_while_in_progress_stays_in_the_attempt() -> None:
    tl = Timeline()
    tl.feed(DhcpMessage("in", "discover", MAC), 0.0)
    tl.feed(DhcpMessage("in", "discover", MAC), 4.0)
    assert len(only(tl)["steps"]) == 2  # type: ignore[arg-type]


def test_http_download_completes_and_an_error_status_fails() -> None:
    tl = Timeline(http_port=8080)
    t = dora(tl, vendor="HTTPClient:Arch:00016")
    tl.feed(Served(IP, "GET", "/boot/grubx64.efi", 200, 4096, 0.5, True), t)
    view = only(tl)
    assert view["state"] == "completed" and view["diagnosis"] == []
    step = view["steps"][-1]  # type: ignore[index]
    assert (step["kind"], step["status"], step["rate"]) == ("http.request", 200, 8192.0)
    tl2 = Timeline(http_port=8080)
    dora(tl2)
    tl2.feed(Served(IP, "GET", "/nope", 500, 0, 0.0, True), t)
    assert only(tl2)["reason"] == "nope over http: HTTP status 500"


def test_a_file_served_wins_over_a_later_failure() -> None:
    tl = Timeline()
    t = served(tl, dora(tl))
    tl.feed(TransferRefused(IP, "pxelinux.cfg/01-52-54", "File not found", Failure.NOT_FOUND, 1), t)
    assert only(tl)["state"] == "completed"


# -- the diagnosis, one rule each ----------------------------------------------------


def test_diagnosis_file_not_there() -> None:
    tl = Timeline()
    t = dora(tl)
    tl.feed(TransferRefused(IP, "bootx64.efi", "File not found", Failure.NOT_FOUND, 1), t)
    assert only(tl)["diagnosis"] == ["file not there: the firmware asked for bootx64.efi over tftp"]


def test_diagnosis_file_not_there_over_http() -> None:
    tl = Timeline(http_port=80)
    t = dora(tl)
    tl.feed(Served(IP, "GET", "/shimx64.efi", 404, 0, 0.0, True), t)
    assert only(tl)["diagnosis"] == ["file not there: the firmware asked for shimx64.efi over http"]


def test_diagnosis_offered_but_never_requested() -> None:
    tl = Timeline(stall=20.0)
    tl.feed(DhcpMessage("in", "discover", MAC), 0.0)
    tl.feed(DhcpMessage("out", "offer", MAC, IPv4Address(IP)), 0.1)
    assert only(tl)["diagnosis"] == []  # not yet: it may still come
    timer = tl.get_timer()
    assert timer is not None
    tl.handle_timer(timer)
    view = only(tl)
    assert view["state"] == "stalled"
    assert view["diagnosis"] == [
        f"offered {IP} but never requested (another DHCP server answered first?)"
    ]


def test_diagnosis_address_naked() -> None:
    tl = Timeline()
    tl.feed(DhcpMessage("in", "request", MAC, IPv4Address("10.9.9.9")), 0.0)
    tl.feed(DhcpMessage("out", "nak", MAC), 0.1)
    view = only(tl)
    assert (view["state"], view["reason"]) == ("failed", "address NAKed")
    assert view["diagnosis"] == [
        "address NAKed: the client asked for an address this server would not give"
    ]


def test_diagnosis_address_declined() -> None:
    tl = Timeline()
    dora(tl)
    tl.feed(DhcpMessage("in", "decline", MAC, IPv4Address(IP)), 5.0)
    tl.feed(LeaseEvent(LeaseKind.DECLINED, IPv4Address(IP), MAC), 5.0)
    view = only(tl)
    assert view["state"] == "failed"
    assert view["diagnosis"] == [f"address {IP} declined by the client (in use on the link?)"]


def test_diagnosis_tftp_stalled_with_blksize_above_the_path_mtu() -> None:
    tl = Timeline()
    t = dora(tl)
    tl.feed(TransferStarted(IP, "vmlinuz", options=(("blksize", "8192"),)), t)
    failed = TransferFinished(
        IP, "vmlinuz", True, 0, 15.0, "timeout", Failure.TIMEOUT, None,
        last_block=1, retransmissions=5, blksize=8192,
    )  # fmt: skip
    tl.feed(failed, t + 15)
    view = only(tl)
    assert view["state"] == "failed"
    assert view["diagnosis"] == [
        "TFTP stalled at block 1 of vmlinuz after 5 retransmissions"
        " (blksize 8192 above the path MTU: fragments lost?)"
    ]


def test_diagnosis_tftp_stalled_midway_with_a_small_blksize() -> None:
    tl = Timeline()
    t = dora(tl)
    failed = TransferFinished(
        IP, "initrd", True, 512 * 700, 20.0, "timeout", Failure.TIMEOUT, None,
        last_block=700, retransmissions=6, blksize=512,
    )  # fmt: skip
    tl.feed(TransferStarted(IP, "initrd"), t)
    tl.feed(failed, t + 20)
    assert only(tl)["diagnosis"] == ["TFTP stalled at block 700 of initrd after 6 retransmissions"]


def test_diagnosis_edk2_size_probe_is_not_a_failure() -> None:
    tl = Timeline()
    t = dora(tl)
    tl.feed(TransferStarted(IP, "ipxe.efi", options=(("tsize", "0"), ("blksize", "1468"))), t)
    probe = TransferFinished(IP, "ipxe.efi", True, 0, 0.01, "peer error 8", Failure.PEER_ERROR, 8)
    assert probe.size_probe
    tl.feed(probe, t + 0.01)
    assert only(tl)["state"] == "in_progress"
    tl.feed(TransferStarted(IP, "ipxe.efi", options=(("blksize", "1468"),)), t + 0.1)
    tl.feed(TransferFinished(IP, "ipxe.efi", True, 1000, 1.0, None), t + 1.1)
    view = only(tl)
    assert view["state"] == "completed"
    assert view["diagnosis"] == [
        "the firmware aborted the transfer of ipxe.efi after learning its size"
        " and asked without tsize (normal for EDK2, not a failure)"
    ]


def test_diagnosis_http_boot_client_without_http_port() -> None:
    tl = Timeline(http_port=None)
    dora(tl, vendor="HTTPClient:Arch:00016")
    tl.handle_timer(1000.0)
    view = only(tl)
    assert view["diagnosis"] == ["HTTP boot client, but no HTTP port configured (pxed --http-port)"]
    configured = Timeline(http_port=8080)
    dora(configured, vendor="HTTPClient:Arch:00016")
    assert only(configured)["diagnosis"] == []


def test_diagnosis_secure_boot_refusal() -> None:
    tl = Timeline()
    t = served(tl, dora(tl), "shimx64.efi")
    # The firmware refused the signature: DISCOVER again 2 s later, same first stage.
    t = dora(tl, t + 2)
    tl.feed(TransferStarted(IP, "shimx64.efi"), t)
    newest = tl.machine(MAC)[0]
    assert newest["attempt"] == 2
    assert newest["diagnosis"] == [
        "fetched shimx64.efi, then a new DISCOVER 3.0 s later"
        " (Secure Boot refused the first stage?)"
    ]


def test_no_secure_boot_diagnosis_for_an_ipxe_chain_or_a_late_reboot() -> None:
    tl = Timeline()
    t = served(tl, dora(tl), "ipxe.efi")
    t = dora(tl, t + 1, vendor="PXEClient")  # iPXE's own DHCP, then its script
    tl.feed(TransferStarted(IP, "boot.ipxe"), t)
    assert tl.machine(MAC)[0]["diagnosis"] == []
    late = Timeline()
    t = served(late, dora(late), "shimx64.efi")
    dora(late, t + 300)
    assert late.machine(MAC)[0]["diagnosis"] == []


# -- bounds --------------------------------------------------------------------------


def storm_mac(n: int) -> str:
    return ":".join(f"{b:02x}" for b in (0x52, 0x54, 0, n >> 16 & 255, n >> 8 & 255, n & 255))


def storm(tl: Timeline, machines: int, rounds: int) -> None:
    """`machines` clients, each booting `rounds` times (half of them failing)."""
    t = 0.0
    for r in range(rounds):
        for n in range(machines):
            mac, ip = storm_mac(n), f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
            address = IPv4Address(ip)
            tl.feed(DhcpMessage("in", "discover", mac), t)
            tl.feed(DhcpMessage("out", "offer", mac, address), t)
            tl.feed(DhcpMessage("in", "request", mac, address), t)
            tl.feed(DhcpMessage("out", "ack", mac, address), t)
            tl.feed(TransferStarted(ip, "ipxe.efi"), t)
            kind = Failure.NOT_FOUND if (n + r) % 2 else None
            tl.feed(TransferFinished(ip, "ipxe.efi", True, 10, 1.0, kind and "x", kind), t)
            t += 0.001
        tl.handle_timer(t)


def test_storm_of_1000_machines_keeps_attempts_and_memory_bounded() -> None:
    tl = Timeline(max_attempts=500, max_steps=4)
    tracemalloc.start()
    try:
        storm(tl, 1000, 2)
        first, _ = tracemalloc.get_traced_memory()
        storm(tl, 1000, 8)
        second, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(tl) == 500
    assert len(tl._current) <= 500 and len(tl._numbers) <= 500
    assert len(tl._mac_of_ip) <= tl.max_addresses
    # Four times the events, (almost) no more memory: nothing grows with traffic.
    assert second < first * 1.2, (first, second)
    kept = tl.attempts()
    assert all(len(a.steps) <= 4 and a.steps_dropped == 2 for a in kept)
    assert {a.mac for a in kept} == {storm_mac(n) for n in range(500, 1000)}


def test_addresses_are_bounded_oldest_first() -> None:
    tl = Timeline(max_addresses=10)
    for n in range(50):
        dora(tl, float(n), storm_mac(n), f"10.0.0.{n}")
    assert len(tl._mac_of_ip) == 10
    assert "10.0.0.49" in tl._mac_of_ip and "10.0.0.0" not in tl._mac_of_ip


# -- a real TFTP server's events, over real sockets -------------------------------------


def test_a_real_tftp_server_s_events_make_the_record_and_diagnosis(tmp_path: Path) -> None:
    """A raw UDP client asks ptftpd's TftpServer for a missing file (file not there), then
    takes block 1 of a real one with blksize 1468 and goes silent (the server resends,
    gives up): the events carry options, last block, retransmissions and blksize."""
    (tmp_path / "vmlinuz").write_bytes(bytes(1468 * 4))
    tl = Timeline()
    now = [0.0]

    def sink(event: TransferStarted | TransferFinished | TransferRefused) -> None:
        now[0] += 1.0
        tl.feed(event, now[0])

    async def run() -> None:
        config = ServerConfig(tmp_path, read_only=True, timeout=0.2, retries=2)
        server = TftpServer(config, on_started=sink, on_finished=sink, on_refused=sink)
        await server.start(["127.0.0.1"], 0)
        port = server.bound[0][1]
        dora(tl, mac=MAC, ip="127.0.0.1")
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.setblocking(False)
            client.bind(("127.0.0.1", 0))
            rrq = b"\x00\x01bootx64.efi\x00octet\x00"
            await loop.sock_sendto(client, rrq, ("127.0.0.1", port))
            error, _ = await asyncio.wait_for(loop.sock_recvfrom(client, 2048), 5)
            assert error[:4] == b"\x00\x05\x00\x01"  # ERROR 1, file not found
            rrq = b"\x00\x01vmlinuz\x00octet\x00blksize\x001468\x00tsize\x000\x00"
            await loop.sock_sendto(client, rrq, ("127.0.0.1", port))
            oack, peer = await asyncio.wait_for(loop.sock_recvfrom(client, 2048), 5)
            assert oack[:2] == b"\x00\x06"
            await loop.sock_sendto(client, b"\x00\x04\x00\x00", peer)
            data, _ = await asyncio.wait_for(loop.sock_recvfrom(client, 2048), 5)
            assert data[:4] == b"\x00\x03\x00\x01" and len(data) == 4 + 1468
            for _ in range(100):  # silent: the server resends block 1, then gives up
                if tl.attempts(MAC)[0].steps[-1].kind == "tftp.failed":
                    break
                await asyncio.sleep(0.05)
        server.close()

    asyncio.run(run())
    view = tl.machine(MAC)[0]
    steps = view["steps"]
    assert isinstance(steps, list)
    assert [s["kind"] for s in steps][-3:] == ["tftp.refused", "tftp.request", "tftp.failed"]
    assert steps[-2]["options"] == {"blksize": "1468", "tsize": "0"}
    failed = steps[-1]
    assert (failed["last_block"], failed["blksize"]) == (1, 1468)
    assert failed["retransmissions"] == 2
    assert view["state"] == "failed"
    assert view["diagnosis"] == [
        "file not there: the firmware asked for bootx64.efi over tftp",
        # Its first 1468-byte block never acknowledged: the MTU symptom.
        "TFTP stalled at block 1 of vmlinuz after 2 retransmissions"
        " (blksize 1468 above the path MTU: fragments lost?)",
    ]


def test_pxed_s_proxy_tells_the_record_of_an_http_boot_client_without_http_port() -> None:
    """pxed --proxy without --http-port: an EDK2 HTTP boot DISCOVER goes unanswered, and
    the record's diagnosis says why (the event carries the vendor class)."""
    from pxe_requests import FILES, SERVER, request

    from ptftpd.dhcp import encode
    from ptftpd.pxe.proxy import ProxyResponder

    tl = Timeline(http_port=None)
    proxy = ProxyResponder(SERVER, FILES)
    discover = request(arch=16, vendor="HTTPClient:Arch:00016")
    replies = proxy.handle(
        encode(discover), ("0.0.0.0", 68), False, now=5.0, events=lambda e: tl.feed(e, 5.0)
    )
    assert replies == []
    view = only(tl)
    assert view["steps"][0]["vendor_class"] == "HTTPClient:Arch:00016"  # type: ignore[index]
    assert view["diagnosis"] == ["HTTP boot client, but no HTTP port configured (pxed --http-port)"]


def test_proxy_67_and_boot_server_4011_exchanges_show_their_port(tmp_path: Path) -> None:
    """pxed --proxy: the DISCOVER on 67 and its proxy OFFER, then the REQUEST to the boot
    server on 4011 and its ACK, each step with the port it came to or went from (the
    service's own sockets, with an endpoint that records instead of sending)."""
    from ipaddress import IPv4Network

    from pxe_requests import FILES, SERVER, request

    from ptftpd.dhcp import DhcpConfig, MessageType, Opt, encode
    from ptftpd.pxe import PxeConfig, PxeService

    dhcp = DhcpConfig(server_ip=SERVER, network=IPv4Network("10.78.0.0/24"), bootfile="x")
    svc = PxeService(
        PxeConfig(dhcp=dhcp, tftp=ServerConfig(root=tmp_path), files=FILES, proxy=True)
    )
    sent: list[tuple[bytes, object]] = []

    class Recorder:
        def send(self, data: bytes, address: object, *, delay: float = 0.0) -> None:
            sent.append((data, address))

    async def run() -> None:
        for port in (67, 4011):
            svc._endpoints[port] = Recorder()  # type: ignore[assignment]
        uefi = "PXEClient:Arch:00007:UNDI:003016"
        svc._received(encode(request(arch=7, vendor=uefi)), ("0.0.0.0", 68), port=67)
        boot_item = {Opt.VENDOR_SPECIFIC: bytes([71, 4, 0, 0, 0, 0, 255])}
        req = request(MessageType.REQUEST, arch=7, vendor=uefi, ciaddr="10.78.0.50")
        req.options.update(boot_item)
        svc._received(encode(req), ("10.78.0.50", 68), port=4011)
        await asyncio.sleep(0.05)

    asyncio.run(run())
    assert len(sent) == 2
    tl = svc.timeline.timeline
    steps = [(s["kind"], s["direction"], s.get("port")) for s in only(tl)["steps"]]  # type: ignore[union-attr]
    assert steps == [
        ("dhcp.discover", "in", 67),
        ("dhcp.offer", "out", 67),
        ("dhcp.request", "in", 4011),
        ("dhcp.ack", "out", 4011),
    ]


def test_the_dhcp_engine_says_its_port(tmp_path: Path) -> None:
    from ipaddress import IPv4Network

    from pxe_requests import SERVER, request

    from ptftpd.dhcp import DhcpConfig, DhcpServer, encode
    from ptftpd.dhcp.leases import MemoryStore

    dhcp = DhcpConfig(server_ip=SERVER, network=IPv4Network("10.78.0.0/24"), port=1067)
    server = DhcpServer(dhcp, store=MemoryStore())
    engine = server.build_engine()
    tl = Timeline()
    engine.events = lambda event: tl.feed(event, 1.0)
    engine.handle(encode(request()), ("0.0.0.0", 68), 1.0)
    steps = [(s["kind"], s.get("port")) for s in only(tl)["steps"]]  # type: ignore[union-attr]
    assert steps == [("dhcp.discover", 1067), ("lease.offered", None), ("dhcp.offer", 1067)]


def test_dhcpv6_steps_join_the_machine_s_attempt_and_its_tftp() -> None:
    """The real DHCPv6 engine's events (Solicit/Advertise/Request/Reply, the binding)
    go to the attempt of the MAC inside the client's DUID-LL, the same attempt as its
    IPv4 steps; the leased IPv6 address then ties a TFTP download to it."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "dhcp6"))
    from test_dhcp6_engine import SERVER_DUID, address_of, make_engine, msg, one

    from ptftpd.dhcp6.codec import IaNa, MsgType, ServerId

    mac = "52:54:00:00:00:07"
    client = bytes.fromhex("00030001525400000007")  # DUID-LL of that MAC
    tl = Timeline()
    tl.feed(DhcpMessage("in", "discover", mac, port=67), 0.0)  # PXEv4 tried first
    engine = make_engine()
    engine.events = lambda event: tl.feed(event, 5.0)
    adv = one(engine, msg(MsgType.SOLICIT, client, IaNa(1, 0, 0)))
    offered = address_of(adv)
    one(engine, msg(MsgType.REQUEST, client, ServerId(SERVER_DUID), IaNa(1, 0, 0, (offered,))))
    ip = str(offered.address)
    tl.feed(TransferStarted(ip, "ipxe.efi"), 6.0)
    tl.feed(TransferFinished(ip, "ipxe.efi", True, 1000, 0.5, None), 7.0)
    view = only(tl, mac)
    kinds = [s["kind"] for s in view["steps"]]  # type: ignore[index]
    assert kinds == [
        "dhcp.discover",
        "dhcp6.solicit",
        "lease6.offered",
        "dhcp6.advertise",
        "dhcp6.request",
        "lease6.bound",
        "dhcp6.reply",
        "tftp.request",
        "tftp.done",
    ], kinds
    assert view["state"] == "completed"
    reply = view["steps"][6]  # type: ignore[index]
    assert reply["addresses"] == [ip] and reply["direction"] == "out"


def test_a_dhcpv6_decline_fails_the_attempt() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "dhcp6"))
    from test_dhcp6_engine import SERVER_DUID, address_of, make_engine, msg, one

    from ptftpd.dhcp6.codec import IaNa, MsgType, ServerId

    client = bytes.fromhex("00030001525400000008")
    tl = Timeline()
    engine = make_engine()
    engine.events = lambda event: tl.feed(event, 1.0)
    offered = address_of(one(engine, msg(MsgType.SOLICIT, client, IaNa(1, 0, 0))))
    one(engine, msg(MsgType.REQUEST, client, ServerId(SERVER_DUID), IaNa(1, 0, 0, (offered,))))
    engine.handle(
        msg(MsgType.DECLINE, client, ServerId(SERVER_DUID), IaNa(1, 0, 0, (offered,))),
        ("fe80::5054:ff:fe00:8", 546),
        2.0,
    )
    view = only(tl, "52:54:00:00:00:08")
    assert view["state"] == "failed"
    assert view["reason"] == f"address {offered.address} declined"


def test_a_config_search_that_ends_in_a_file_served_is_no_missing_file() -> None:
    """pxelinux asks for pxelinux.cfg/01-MAC and its IP's hex names (not there) before
    `default` (served): no "file not there"; a search that ends with nothing served is."""
    tl = Timeline()
    t = served(tl, dora(tl), "pxelinux.0")
    for name in ("pxelinux.cfg/01-52-54-00-12-34-56", "pxelinux.cfg/C0A8320A"):
        tl.feed(TransferRefused(IP, name, "file not found", Failure.NOT_FOUND, 1), t)
    assert len(only(tl)["diagnosis"]) == 1  # the search goes on: said so far
    t = served(tl, t + 1, "pxelinux.cfg/default")
    assert only(tl)["diagnosis"] == []
    tl.feed(TransferRefused(IP, "vmlinuz", "file not found", Failure.NOT_FOUND, 1), t)
    assert only(tl)["diagnosis"] == ["file not there: the firmware asked for vmlinuz over tftp"]


def test_diagnosis_first_block_lost_with_blocks_above_512_hints_the_mtu() -> None:
    """iPXE's 1432-byte blocks on a 1280-byte path: the first block never arrives (the
    hint); the same block size stalling later in the file does not hint at the MTU."""
    tl = Timeline()
    t = dora(tl)
    first = TransferFinished(
        IP, "pxelinux.0", True, 0, 3.0, "timeout", Failure.TIMEOUT, None,
        last_block=1, retransmissions=2, blksize=1432,
    )  # fmt: skip
    tl.feed(TransferStarted(IP, "pxelinux.0"), t)
    tl.feed(first, t + 3)
    assert only(tl)["diagnosis"] == [
        "TFTP stalled at block 1 of pxelinux.0 after 2 retransmissions"
        " (blksize 1432 above the path MTU: fragments lost?)"
    ]
    later = Timeline()
    t = dora(later)
    midway = TransferFinished(
        IP, "pxelinux.0", True, 1432 * 14, 3.0, "timeout", Failure.TIMEOUT, None,
        last_block=15, retransmissions=2, blksize=1432,
    )  # fmt: skip
    later.feed(TransferStarted(IP, "pxelinux.0"), t)
    later.feed(midway, t + 3)
    assert only(later)["diagnosis"] == [
        "TFTP stalled at block 15 of pxelinux.0 after 2 retransmissions"
    ]
