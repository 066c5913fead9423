"""Issue 22: a relayed DHCPv6 client whose DUID names no MAC (DUID-EN) is known by the
client link-layer address option (79, RFC 6939) its relay adds, and that MAC picks its
inventory entry. A real relay that adds option 79 (dnsmasq's DHCPv6 relay; ISC
dhcrelay 4.4 adds none) between ISC dhclient -6, told its DUID through its lease file,
and the DHCPv6 engine with pxed's DHCPv6 policy and decisions (`relayed_server.py`).

    dhclient (DUID-EN) --(fd00:79::/64)-- dnsmasq relay --(fd00:88::/64)-- server
"""

from __future__ import annotations

import json
from ipaddress import IPv6Address
from pathlib import Path

import pytest
from test_dhcp6_clients import HERE, bound_event, run_dhclient
from test_dhcp6_relay import CLIENT_LINK, RELAY_DOWN, SERVER_IP, relay_lab

from support import VENV_BIN, Process, require_tool, wait_udp_bound

pytestmark = pytest.mark.netns

DUID_EN = bytes.fromhex("0002000000097076367265") + b"lay"  # enterprise 9, an id


def octal(data: bytes) -> str:
    return "".join(f"\\{b:03o}" for b in data)


def test_a_relayed_duid_en_client_is_decided_by_the_mac_its_relay_saw(tmp_path: Path) -> None:
    dnsmasq = require_tool("dnsmasq")
    with relay_lab(tmp_path) as (lab, relay, _up):
        link = json.loads(lab.client.run("ip", "-j", "link", "show", "dev", lab.cif).stdout)
        mac = link[0]["address"]
        inventory = {
            "machine": [{"mac": mac, "profile": "relayed"}],
            "profile": {"relayed": {"bootfile": {"default": "by-relay-mac.efi"}}},
        }
        (tmp_path / "inventory.json").write_text(json.dumps(inventory))
        argv = lab.server.popen_argv(
            [str(VENV_BIN / "python"), str(HERE / "relayed_server.py"), lab.sif,
             str(CLIENT_LINK), str(tmp_path / "leases6.sqlite"),
             str(tmp_path / "inventory.json"), str(SERVER_IP)]
        )  # fmt: skip
        server = Process(argv, tmp_path / "server.log")
        lab.procs.append(server)
        wait_udp_bound(547, timeout=15, proc=server.proc, netns=lab.server.name)
        down = "rd" + relay.name[-8:]
        relay_argv = [
            dnsmasq, "--keep-in-foreground", "--log-facility=-", "--log-dhcp",
            "--conf-file=/dev/null", "--port=0", f"--pid-file={tmp_path}/dnsmasq.pid",
            f"--interface={down}", "--bind-interfaces", f"--dhcp-relay={RELAY_DOWN},{SERVER_IP}",
        ]  # fmt: skip
        agent = Process(relay.popen_argv(relay_argv), tmp_path / "dnsmasq.log")
        lab.procs.append(agent)
        wait_udp_bound(547, timeout=15, proc=agent.proc, netns=relay.name)
        (tmp_path / "dhclient.leases").write_text(f'default-duid "{octal(DUID_EN)}";\n')
        proc, events = run_dhclient(lab, conf_lines="also request dhcp6.bootfile-url;\n")
        got = bound_event(events, timeout=60)
        assert IPv6Address(got["new_ip6_address"]) in CLIENT_LINK, (got, server.output())
        log = server.output()
        # The client said DUID-EN (no MAC in it): dhclient used the DUID it was given.
        assert f"to DUID {DUID_EN.hex(':')}" in log, log
        # The relay's option 79 named the MAC, and the MAC chose the inventory entry.
        url = got.get("new_dhcp6_bootfile_url", "")
        assert url == f"tftp://[{SERVER_IP}]/by-relay-mac.efi", (got, log, agent.output())
        proc.stop()
