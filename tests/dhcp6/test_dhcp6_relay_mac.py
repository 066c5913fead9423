"""Issue 22: a relayed DHCPv6 client whose DUID names no MAC (DUID-EN) is known by the
client link-layer address option (79, RFC 6939) its relay adds, and that MAC picks its
inventory entry, and is the MAC the decision API is asked about. A real relay that
adds option 79 (dnsmasq's DHCPv6 relay; ISC dhcrelay 4.4 adds none) between ISC
dhclient -6, told its DUID through its lease file, and either the DHCPv6 engine with
pxed's DHCPv6 policy and decisions (`relayed_server.py`: a full server for the
client's link) or a real pxed --ipv6 --proxy --boot-api (a proxy answers any link).

    dhclient (DUID-EN) --(fd00:79::/64)-- dnsmasq relay --(fd00:88::/64)-- server
"""

from __future__ import annotations

import json
import sys
import time
from ipaddress import IPv6Address
from pathlib import Path

import pytest
from test_dhcp6_clients import HERE, bound_event, run_dhclient
from test_dhcp6_relay import CLIENT_LINK, RELAY_DOWN, SERVER_IP, relay_lab

from support import VENV_BIN, Netns, Process, require_tool, script, wait_udp_bound

pytestmark = pytest.mark.netns

API = Path(__file__).parent.parent / "pxe" / "pixie_api.py"
API_PORT = 8037
DUID_EN = bytes.fromhex("0002000000097076367265") + b"lay"  # enterprise 9, an id


def octal(data: bytes) -> str:
    return "".join(f"\\{b:03o}" for b in data)


def dnsmasq_relay(relay: Netns, tmp: Path) -> Process:
    """dnsmasq as the DHCPv6 relay on the client link (it adds option 79)."""
    down = "rd" + relay.name[-8:]
    argv = [
        require_tool("dnsmasq"), "--keep-in-foreground", "--log-facility=-", "--log-dhcp",
        "--conf-file=/dev/null", "--port=0", f"--pid-file={tmp}/dnsmasq.pid",
        f"--interface={down}", "--bind-interfaces", f"--dhcp-relay={RELAY_DOWN},{SERVER_IP}",
    ]  # fmt: skip
    agent = Process(relay.popen_argv(argv), tmp / "dnsmasq.log")
    wait_udp_bound(547, timeout=15, proc=agent.proc, netns=relay.name)
    return agent


def test_a_relayed_duid_en_client_is_decided_by_the_mac_its_relay_saw(tmp_path: Path) -> None:
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
        agent = dnsmasq_relay(relay, tmp_path)
        lab.procs.append(agent)
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


def test_pxed_proxy_asks_the_api_for_the_mac_the_relay_saw(tmp_path: Path) -> None:
    """Real pxed --ipv6 --proxy --boot-api behind the relay; dhclient -6 -S (stateless:
    Information-request) as iPXE with a DUID-EN: the API is asked for the MAC of option
    79, and the Reply carries that machine's script URL."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "ipxe.efi").write_bytes(b"x")
    with relay_lab(tmp_path) as (lab, relay, _up):
        link = json.loads(lab.client.run("ip", "-j", "link", "show", "dev", lab.cif).stdout)
        mac = link[0]["address"]
        lab.server.run("ip", "addr", "add", "10.99.8.1/24", "dev", lab.sif)
        rules = tmp_path / "rules.json"
        rules.write_text(json.dumps({mac: [0, 200, '{"ipxe-script": "#!ipxe\\necho api\\n"}']}))
        api = Process(
            lab.server.popen_argv([sys.executable, str(API), str(API_PORT), str(rules)]),
            tmp_path / "api.log",
        )
        lab.procs.append(api)
        argv = [script("pxed"), "-D", "--ipv6", "--proxy", "--no-ra", "--boot-api",
                f"http://127.0.0.1:{API_PORT}", lab.sif, str(root), "ipxe.efi"]  # fmt: skip
        pxed = Process(lab.server.popen_argv(argv), tmp_path / "pxed.log")
        lab.procs.append(pxed)
        wait_udp_bound(547, timeout=15, proc=pxed.proc, netns=lab.server.name)
        lab.procs.append(dnsmasq_relay(relay, tmp_path))
        (tmp_path / "dhclient.leases").write_text(f'default-duid "{octal(DUID_EN)}";\n')
        conf = (
            "also request dhcp6.bootfile-url;\n"
            "option dhcp6.ipxe-class code 15 = string;\n"
            "send dhcp6.ipxe-class 00:04:69:50:58:45;\n"  # user class iPXE
        )
        proc, events = run_dhclient(lab, "dhclient", "-S", conf_lines=conf)
        deadline = time.monotonic() + 40
        info: dict[str, str] = {}
        while not info and time.monotonic() < deadline:
            time.sleep(0.2)
            lines = events.read_text().splitlines() if events.exists() else []
            found = [json.loads(x) for x in lines if x]
            # dhclient 4.4 runs its script with reason RENEW6 for a stateless Reply
            info = next((e for e in found if "new_dhcp6_bootfile_url" in e), {})
        log = pxed.output()
        assert info, (log[-3000:], proc.output()[-2000:])
        script_url = f"tftp://[{SERVER_IP}]/pxed/machines/{mac.replace(':', '-')}.ipxe"
        assert info.get("new_dhcp6_bootfile_url") == script_url, (info, log[-3000:])
        asked = [line for line in api.output().splitlines() if "/v1/boot/" in line]
        assert asked and all(f"/v1/boot/{mac}" in line for line in asked), asked
        proc.stop()
        assert "Traceback" not in pxed.output()
