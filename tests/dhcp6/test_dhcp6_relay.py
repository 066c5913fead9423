"""DHCPv6 through a real relay agent (issue 19 item 14): ISC dhcrelay -6 between a
client link and the server's link, ISC dhclient -6 on the client link. Three
namespaces this test creates, joined by veth pairs; the addresses exist only in them.

    dhclient --(fd00:79::/64, link-local)-- dhcrelay --(fd00:88::/64)-- server

The server serves fd00:79::/64 (the relay's link address lies in it) and answers each
Relay-forward with a Relay-reply to the relay, port 547, echoing the Interface-ID
dhcrelay adds (-I); dhcrelay hands the Reply to dhclient, which takes the address."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest
from test_dhcp6_clients import HERE, Lab6, bound_event, leased, run_dhclient, wait_for

from support import VENV_BIN, Netns, Process, add_veth, require_root, require_tool, wait_udp_bound

pytestmark = pytest.mark.netns

CLIENT_LINK = IPv6Network("fd00:79::/64")
RELAY_DOWN = IPv6Address("fd00:79::1")
SERVER_IP = IPv6Address("fd00:88::1")
RELAY_UP = IPv6Address("fd00:88::2")


@contextmanager
def relay_lab(tmp: Path) -> Iterator[tuple[Lab6, Netns, str]]:
    """Server, relay and client namespaces; yields a `Lab6` whose client side is the
    client link, the relay namespace and its upper interface name."""
    require_root()
    require_tool("ip")
    server, relay, client = Netns("d6s"), Netns("d6r"), Netns("d6c")
    lab: Lab6 | None = None
    try:
        for ns in (server, relay, client):
            ns.run("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0")
            ns.run("sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
        sif, up = "vs" + server.name[-8:], "ru" + relay.name[-8:]
        down, cif = "rd" + relay.name[-8:], "vc" + client.name[-8:]
        add_veth(server, sif, relay, up)
        add_veth(relay, down, client, cif)
        server.run("ip", "addr", "add", f"{SERVER_IP}/64", "dev", sif, "nodad")
        relay.run("ip", "addr", "add", f"{RELAY_UP}/64", "dev", up, "nodad")
        relay.run("ip", "addr", "add", f"{RELAY_DOWN}/64", "dev", down, "nodad")
        for ns, dev in ((server, sif), (relay, up), (relay, down), (client, cif)):
            ns.run("ip", "link", "set", dev, "up")
        relay.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")

        def link_local_ready() -> bool:
            out = "".join(
                ns.run("ip", "-6", "addr", "show", "dev", dev).stdout
                for ns, dev in ((server, sif), (relay, up), (relay, down), (client, cif))
            )
            return out.count("scope link") == 4 and "tentative" not in out

        wait_for(link_local_ready, 10, "link-local addresses")
        lab = Lab6(server, client, sif, cif, tmp)
        yield lab, relay, up
    finally:
        if lab is not None:
            for proc in reversed(lab.procs):
                proc.stop(signal.SIGTERM, timeout=5)
        for ns in (client, relay, server):
            ns.delete()


def test_dhclient6_gets_an_address_through_dhcrelay(tmp_path: Path) -> None:
    dhcrelay = require_tool("dhcrelay")
    with relay_lab(tmp_path) as (lab, relay, up):
        argv = lab.server.popen_argv(
            [
                str(VENV_BIN / "python"),
                str(HERE / "relayed_server.py"),
                lab.sif,
                str(CLIENT_LINK),
                str(tmp_path / "leases6.sqlite"),
            ]
        )
        server = Process(argv, tmp_path / "server.log")
        lab.procs.append(server)
        wait_udp_bound(547, timeout=15, proc=server.proc, netns=lab.server.name)
        down = "rd" + relay.name[-8:]
        agent = Process(
            relay.popen_argv(
                [dhcrelay, "-6", "-d", "--no-pid", "-I", "-l", down, "-u", f"{SERVER_IP}%{up}"]
            ),
            tmp_path / "dhcrelay.log",
        )
        lab.procs.append(agent)
        wait_udp_bound(547, timeout=15, proc=agent.proc, netns=relay.name)
        proc, events = run_dhclient(lab)
        got = bound_event(events, timeout=60)
        address = IPv6Address(got["new_ip6_address"])
        assert address in CLIENT_LINK and address != RELAY_DOWN, (got, server.output())
        wait_for(lambda: address in lab.client_addresses(), 10, "address on the client link")
        assert leased(tmp_path) == {address: "bound"}
        log = server.output()
        assert f"leased {address} to DUID" in log, log
        # The replies went to the relay, wrapped (the client never talked to us).
        assert f"to {RELAY_UP}" in log and "ADVERTISE" in log, log
        relay_log = agent.output()
        assert "Relaying Advertise to" in relay_log and "Relaying Reply to" in relay_log, relay_log
        proc.stop()
