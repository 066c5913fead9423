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

from test_machines_service import (
    MAC_A,
    MAC_LOCAL,
    MAC_OFF,
    MAC_OTHER,
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
