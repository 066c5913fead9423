"""Issue 23 item 1: the boot record carries pxed's per-machine decision (issue 22) and
where it came from, as one `decision` step of the attempt.

Full mode through the real DHCP engine and pxed's boot policy, proxy mode through the
real responder (its proxyDHCP offer and its 4011 ACK both decide: one step); the
timeline is pxed's own (`PxeService.timeline`). Without an inventory (pxed's built-in
firmware table) the record has no decision step, as the boot log line has none."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from test_machines_service import (
    MAC_A,
    MAC_LOCAL,
    MAC_OFF,
    MAC_OTHER,
    SERVER,
    config,
    full_mode,
    request,
    the_inventory,
)

from ptftpd.dhcp import MessageType, Opt, decode, encode
from ptftpd.pxe import PxeService
from ptftpd.pxe.inventory import inventory_from

NOW = 1_700_000_000.0


def steps(service: PxeService, mac: str) -> list[dict[str, Any]]:
    [attempt] = service.timeline.timeline.machine(mac)
    return list(attempt["steps"])


def decisions(service: PxeService, mac: str) -> list[dict[str, Any]]:
    return [
        {k: s[k] for k in ("decision", "profile", "source", "rule")}
        for s in steps(service, mac)
        if s["kind"] == "decision"
    ]


def test_full_mode_records_each_machines_decision_once_after_its_discover(
    tmp_path: Path,
) -> None:
    service = full_mode(config(tmp_path, the_inventory()))
    engine = service.dhcp_server.engine  # type: ignore[union-attr]
    assert engine is not None
    engine.events = service.timeline.feed
    for mac in (MAC_A, MAC_LOCAL, MAC_OFF, MAC_OTHER):
        engine.handle(request(mac, ipxe=True), ("0.0.0.0", 68), NOW)
    kinds = [s["kind"] for s in steps(service, MAC_A)]
    assert kinds[:2] == ["dhcp.discover", "decision"], kinds
    assert kinds.count("decision") == 1, kinds
    assert decisions(service, MAC_A) == [
        {"decision": "boot", "profile": "a", "source": "inventory", "rule": "machine #1"}
    ]
    assert decisions(service, MAC_LOCAL) == [
        {"decision": "local", "profile": "disk", "source": "inventory", "rule": "machine #2"}
    ]
    assert decisions(service, MAC_OFF) == [
        {"decision": "ignore", "profile": "off", "source": "inventory", "rule": "machine #3"}
    ]
    # no inventory entry, no default profile: pxed's table, no decision step
    assert decisions(service, MAC_OTHER) == []
    # a default profile decides for it after a reload
    inventory = inventory_from({"profile": {"default": {"bootfile": {"bios": "undionly.kpxe"}}}})
    service.reload(dataclasses.replace(service.config, inventory=inventory))
    engine.handle(request(MAC_OTHER, ipxe=False), ("0.0.0.0", 68), NOW + 1)
    [attempt] = service.timeline.timeline.machine(MAC_OTHER)[:1]
    got = [s for s in attempt["steps"] if s["kind"] == "decision"]
    assert [(s["decision"], s["profile"], s["source"]) for s in got] == [
        ("boot", "default", "default")
    ], attempt


def test_proxy_mode_records_the_decision_once_for_offer_and_4011_ack(tmp_path: Path) -> None:
    cfg = dataclasses.replace(config(tmp_path, the_inventory()), proxy=True)
    service = PxeService(cfg)
    feed = service.timeline.feed
    service.responder.handle(
        request(MAC_A, ipxe=False), ("0.0.0.0", 68), False, now=NOW, events=feed, port=67
    )
    ask = decode(request(MAC_A, ipxe=False, mtype=MessageType.REQUEST))
    ask.options[Opt.VENDOR_SPECIFIC] = bytes([71, 4, 0x80, 0x00, 0x00, 0x00, 255])
    service.responder.handle(encode(ask), ("10.78.0.50", 68), True, now=NOW, events=feed, port=4011)
    kinds = [s["kind"] for s in steps(service, MAC_A)]
    assert kinds.count("decision") == 1 and kinds.index("decision") == 1, kinds
    assert decisions(service, MAC_A) == [
        {"decision": "boot", "profile": "a", "source": "inventory", "rule": "machine #1"}
    ]


def test_dhcpv6_records_the_decision_once_in_the_machines_attempt() -> None:
    """The real DHCPv6 engine with pxed's DHCPv6 boot policy (`Pxe6Policy`, wired to a
    timeline as pxed wires it): a Solicit and a Request from the DUID-LL of an
    inventory machine add one `decision` step, after the Solicit, to that MAC's
    attempt; a machine pxed's table serves gets none."""
    import sys
    from ipaddress import IPv6Address

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "dhcp6"))
    from test_dhcp6_engine import SERVER_DUID, address_of, make_engine, msg, one

    from ptftpd.dhcp6.codec import ClientArch, IaNa, MsgType, ServerId, UserClass
    from ptftpd.pxe import BootFiles
    from ptftpd.pxe.ipv6 import Pxe6Policy
    from ptftpd.pxe.machines import Machines
    from ptftpd.pxe.timeline import Timeline

    machines = Machines(the_inventory(), SERVER)
    machines.serve_ipv6("fd00:77::1", 8080)
    policy = Pxe6Policy(BootFiles("ipxe.efi"), IPv6Address("fd00:77::1"), 8080, None, machines)
    tl = Timeline()
    policy.on_event = lambda event: tl.feed(event, 2.0)
    engine = make_engine(boot_policy=policy)
    engine.events = lambda event: tl.feed(event, 1.0)
    for mac in (MAC_A, MAC_OTHER):
        duid = b"\x00\x03\x00\x01" + bytes.fromhex(mac.replace(":", ""))
        asks = (ClientArch((7,)), UserClass((b"iPXE",)))
        adv = one(engine, msg(MsgType.SOLICIT, duid, IaNa(1, 0, 0), *asks))
        got = (IaNa(1, 0, 0, (address_of(adv),)),)
        one(engine, msg(MsgType.REQUEST, duid, ServerId(SERVER_DUID), *got, *asks))
    [attempt] = tl.machine(MAC_A)
    kinds = [s["kind"] for s in attempt["steps"]]
    assert kinds.count("decision") == 1, kinds
    assert kinds.index("dhcp6.solicit") < kinds.index("decision") < kinds.index("dhcp6.advertise")
    [step] = [s for s in attempt["steps"] if s["kind"] == "decision"]
    assert (step["decision"], step["profile"], step["source"]) == ("boot", "a", "inventory")
    [other] = tl.machine(MAC_OTHER)
    assert "decision" not in [s["kind"] for s in other["steps"]], other


@pytest.mark.netns
@pytest.mark.timeout(120)
def test_a_running_pxed_shows_the_decision_in_the_api(tmp_path: Path) -> None:
    """A real pxed (full DHCP mode, an inventory in its settings file, --api) in a
    namespace; busybox udhcpc as the machine in a peer namespace; curl reads
    /v1/machines/<mac>: the attempt's steps hold the inventory's decision after the
    DISCOVER."""
    import json

    from pxe_harness import boot_network

    from dhcp.dhcplab import wait_for
    from support import free_udp_port, require_tool, script, wait_udp_bound

    curl, udhcpc = require_tool("curl"), require_tool("udhcpc")
    mac = "52:54:00:aa:23:22"
    root = tmp_path / "root"
    root.mkdir()
    (root / "pxelinux.0").write_bytes(b"boot")
    settings = tmp_path / "pxed.toml"
    settings.write_text(
        f'[pxed]\n\n[[pxed.machine]]\nmac = "{mac}"\nprofile = "disk"\n\n'
        "[pxed.profile.disk]\nlocal = true\n"
    )
    with boot_network(tmp_path) as net:
        client = net.peer("10.78.0.50")
        client.run("ip", "link", "set", "eth0", "address", mac)
        port = free_udp_port()
        argv = [script("pxed"), "-v", "--config", str(settings), "--api", f"127.0.0.1:{port}",
                "--range", "10.78.0.100", "10.78.0.120",
                "--leases", str(tmp_path / "leases.sqlite"), net.bridge, str(root),
                "pxelinux.0"]  # fmt: skip
        pxed = net.start(argv, "pxed")
        wait_udp_bound(4011, timeout=15, proc=pxed.proc, netns=net.ns.name)
        dhcp = [udhcpc, "-i", "eth0", "-n", "-q", "-f", "-t", "3", "-T", "2", "-s", "/bin/true",
                "-V", "PXEClient:Arch:00000:UNDI:002001"]  # fmt: skip
        client.run(*dhcp, timeout=30)
        url = f"http://127.0.0.1:{port}/v1/machines/{mac}"

        def record() -> list[dict[str, Any]]:
            out = net.ns.run(curl, "-sS", "--max-time", "5", url, check=False).stdout
            got = json.loads(out).get("attempts", []) if out.strip() else []
            return [a for a in got if "dhcp.ack" in [s["kind"] for s in a["steps"]]]

        wait_for(record, 5.0, "the attempt with its ACK in the API")
        [attempt] = record()
        pxed.stop()
    kinds = [s["kind"] for s in attempt["steps"]]
    assert kinds[:2] == ["dhcp.discover", "decision"] and kinds.count("decision") == 1, kinds
    [step] = [s for s in attempt["steps"] if s["kind"] == "decision"]
    assert step["decision"] == "local" and step["profile"] == "disk", step
    assert step["source"] == "inventory" and step["rule"] == "machine #1", step


def test_a_local_or_ignored_machine_going_quiet_is_diagnosed_as_decided() -> None:
    """A PXE ROM decided `local` gets its address and no boot file, then boots its
    disk: the attempt stalls after the ACK, and the diagnosis says it was decided; an
    ignored machine (no answer at all) likewise; a machine decided `boot` that goes
    quiet gets no such line."""
    from ipaddress import IPv4Address

    from ptftpd.events import BootDecided, DhcpMessage
    from ptftpd.pxe.timeline import Timeline

    tl = Timeline(stall=30.0)
    ip = IPv4Address("10.78.0.100")
    for mac, kind in ((MAC_LOCAL, "local"), (MAC_OFF, "ignore"), (MAC_A, "boot")):
        tl.feed(DhcpMessage("in", "discover", mac, port=67), 0.0)
        tl.feed(BootDecided(mac, kind, "inventory", "p", "machine #2"), 0.0)
        if kind != "ignore":
            tl.feed(DhcpMessage("out", "offer", mac, ip, port=67), 0.1)
            tl.feed(DhcpMessage("in", "request", mac, ip, port=67), 1.0)
            tl.feed(DhcpMessage("out", "ack", mac, ip, port=67), 1.1)
    tl.handle_timer(60.0)
    [local] = tl.machine(MAC_LOCAL)
    assert local["state"] == "stalled" and local["diagnosis"] == [
        "decided local (inventory machine #2): no boot file, the machine boots its next"
        " device (as decided, not a failure)"
    ], local
    [ignored] = tl.machine(MAC_OFF)
    assert ignored["diagnosis"] == [
        "decided ignore (inventory machine #2): no boot answer, the machine boots its next"
        " device (as decided, not a failure)"
    ], ignored
    [booting] = tl.machine(MAC_A)
    assert booting["state"] == "stalled" and booting["diagnosis"] == [], booting
