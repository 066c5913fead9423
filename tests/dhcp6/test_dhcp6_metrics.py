"""pxed --ipv6 --metrics and python -m ptftpd.dhcp6 --metrics: DHCPv6 messages in
and out counted by type and the bindings' events by kind, scraped from the real
/metrics endpoint with curl (exact values).

The server serves one end of a veth pair in a namespace; the scripted client
(dhcp6probe.py) on the other end sends a Solicit, a Request for the advertised address
and a Release, then the same for a second IA ending in a Decline and a third IA kept:
each message counted by its type in, the Advertises and Replies out; three bindings
offered and bound, one released, one declined; the DHCPv6 module's kept binding (4 s
lease time) expired."""

from __future__ import annotations

import re
from ipaddress import IPv6Address
from pathlib import Path

import pytest
from test_dhcp6_clients import PREFIX, lab6

from dhcp.dhcplab import wait_for
from ptftpd.dhcp6.codec import (
    ClientId,
    ElapsedTime,
    IaAddress,
    IaNa,
    Message,
    MsgType,
    ServerId,
    encode,
)
from support import VENV_BIN, Process, free_udp_port, require_tool, script, wait_udp_bound

pytestmark = [
    pytest.mark.netns,
    pytest.mark.timeout(120),
    pytest.mark.side_by_side(bound=110),  # independent labs: run at once
]

CLIENT_DUID = bytes.fromhex("00030001525400aa0601")


def scrape(text: str) -> dict[str, float]:
    """The ptftpd_dhcp6_* samples, without their `_created` timestamps."""
    pairs = re.findall(r"^(ptftpd_dhcp6_\S+) (\S+)$", text, re.M)
    return {k: float(v) for k, v in pairs if not re.search(r"_created\b", k)}


@pytest.mark.parametrize("server", ["pxed", "dhcp6"])
def test_dhcpv6_messages_and_binding_events_are_counted(tmp_path: Path, server: str) -> None:
    curl = require_tool("curl")
    root = tmp_path / "root"
    root.mkdir()
    (root / "ipxe.efi").write_bytes(b"x")
    with lab6(tmp_path) as lab:
        lab.server.run("ip", "addr", "add", "10.99.6.1/24", "dev", lab.sif)
        mport = free_udp_port()
        leases = str(tmp_path / "leases.sqlite")
        if server == "pxed":
            argv = [script("pxed"), "--ipv6", "--leases", leases, lab.sif, str(root), "ipxe.efi"]
        else:
            argv = [str(VENV_BIN / "python"), "-m", "ptftpd.dhcp6", lab.sif, "--leases", leases]
            argv += ["--lease-time", "4"]  # the kept binding expires during the test
        argv += ["-D", "--no-ra", "--metrics", f"127.0.0.1:{mport}"]
        proc = Process(lab.server.popen_argv(argv), tmp_path / "pxed.log")
        lab.procs.append(proc)
        wait_udp_bound(547, timeout=15, proc=proc.proc, netns=lab.server.name)

        def metrics() -> dict[str, float]:
            url = f"http://127.0.0.1:{mport}/metrics"
            return scrape(lab.server.run(curl, "-sf", url).stdout)

        assert metrics() == {}, "nothing counted before the first message"

        def ask(mtype: MsgType, xid: int, *options: object) -> dict[str, object]:
            msg = Message(mtype, xid, (ClientId(CLIENT_DUID), ElapsedTime(0), *options))  # type: ignore[arg-type]
            [reply] = lab.probe(encode(msg), wait=1.0)
            return reply

        # One binding released, another (a second IA of the same client) declined, a
        # third kept.
        endings = {1: MsgType.RELEASE, 2: MsgType.DECLINE, 3: None}
        for iaid, ending in endings.items():
            xid = 0x600000 + 0x10 * iaid
            advertise = ask(MsgType.SOLICIT, xid, IaNa(iaid, 0, 0))
            assert advertise["type"] == MsgType.ADVERTISE, advertise
            [[offered]] = advertise["ia_na"]  # type: ignore[misc]
            address = IPv6Address(offered)
            assert address in PREFIX
            server_id = ServerId(bytes.fromhex(str(advertise["server_id"])))
            ia = IaNa(iaid, 0, 0, (IaAddress(address, 0, 0),))
            reply = ask(MsgType.REQUEST, xid + 1, server_id, ia)
            assert reply["type"] == MsgType.REPLY and reply["ia_na"] == [[offered]], reply
            if ending is not None:
                reply = ask(ending, xid + 2, server_id, ia)
                assert reply["type"] == MsgType.REPLY, reply

        message = 'ptftpd_dhcp6_messages_total{direction="%s",type="%s"}'
        event = 'ptftpd_dhcp6_lease_events_total{kind="%s"}'
        expected = {
            message % ("in", "solicit"): 3,
            message % ("out", "advertise"): 3,
            message % ("in", "request"): 3,
            message % ("out", "reply"): 5,
            message % ("in", "release"): 1,
            message % ("in", "decline"): 1,
            event % "offered": 3,
            event % "bound": 3,
            event % "released": 1,
            event % "declined": 1,
        }
        if server == "dhcp6":  # the kept binding's 4 s end: one EXPIRED, by the timer
            expected[event % "expired"] = 1
            wait_for(lambda: event % "expired" in metrics(), 10, "the binding to expire")
        assert metrics() == expected
        assert proc.stop() == 0
        assert "Traceback" not in proc.output()
