"""Issue 22: pxed --ipv6 with --boot-api waits for a slow decision API as over DHCPv4.

A real pxed --ipv6 (full DHCPv6 mode) in a namespace, the pixiecore-format test API
(tests/pxe/pixie_api.py) on that namespace's loopback answering in 0.3 s (within the
3 s deadline), and ISC dhclient -6 on the other end of a veth pair as an iPXE client
(DUID-LL, user class iPXE, asking for boot-file-url). While the API has not answered,
pxed does not answer the client's Solicit at all (no address without its boot URL);
it holds the Solicit and answers it (Advertise) as soon as the API's answer arrives,
not at the client's retransmission (dhclient: about 1 s later; EDK2's PXEv6: 4 s),
and the Reply carries the machine's own boot-file-url (its script)."""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from test_dhcp6_clients import SERVER_IP, bound_event, lab6, run_dhclient

from support import Process, require_tool, script, wait_udp_bound

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

API = Path(__file__).parent.parent / "pxe" / "pixie_api.py"
API_PORT = 8036
USER_CLASS_IPXE = "00:04:69:50:58:45"  # RFC 8415 user class: one item, "iPXE"


def test_a_dhcpv6_client_waits_for_the_api_and_gets_its_own_boot_url(tmp_path: Path) -> None:
    require_tool("dhclient")
    root = tmp_path / "root"
    root.mkdir()
    (root / "ipxe.efi").write_bytes(b"x")
    with lab6(tmp_path) as lab:
        mac = json.loads(lab.client.run("ip", "-j", "link", "show", "dev", lab.cif).stdout)[0][
            "address"
        ]
        lab.server.run("ip", "addr", "add", "10.99.7.1/24", "dev", lab.sif)
        rules = tmp_path / "rules.json"
        rules.write_text(json.dumps({mac: [0.3, 200, '{"ipxe-script": "#!ipxe\\necho api\\n"}']}))
        api = Process(
            lab.server.popen_argv([sys.executable, str(API), str(API_PORT), str(rules)]),
            tmp_path / "api.log",
        )
        lab.procs.append(api)
        argv = [script("pxed"), "-D", "--ipv6", "--no-ra", "--leases", str(tmp_path / "l.sqlite"),
                "--boot-api", f"http://127.0.0.1:{API_PORT}", "--boot-api-deadline", "3",
                lab.sif, str(root), "ipxe.efi"]  # fmt: skip
        pxed = Process(lab.server.popen_argv(argv), tmp_path / "pxed.log")
        lab.procs.append(pxed)
        wait_udp_bound(547, timeout=15, proc=pxed.proc, netns=lab.server.name)
        began = time.monotonic()
        conf = (
            "also request dhcp6.bootfile-url;\n"  # dhclient 4.4 names no user class option
            "option dhcp6.ipxe-class code 15 = string;\n"
            f"send dhcp6.ipxe-class {USER_CLASS_IPXE};\n"
        )
        proc, events = run_dhclient(lab, "dhclient", "-D", "LL", conf_lines=conf)
        got = bound_event(events, timeout=40)
        took = time.monotonic() - began
        log = pxed.output()
        script_url = f"tftp://[{SERVER_IP}]/pxed/machines/{mac.replace(':', '-')}.ipxe"
        assert got.get("new_dhcp6_bootfile_url") == script_url, (got, log[-3000:])
        # pxed held the Solicit(s) sent while the API was still thinking, then answered
        assert "held SOLICIT" in log, log[-3000:]
        asked = [line for line in api.output().splitlines() if mac in line]
        assert len(asked) == 1, asked  # one request for the whole exchange
        assert took < 20, took
        # answered on the API's answer: the held Solicit's Advertise 0.3 s after it
        gap = _seconds(log, "held SOLICIT", "ADVERTISE to")
        print(f"held Solicit -> Advertise: {gap:.3f} s (dhclient took {took:.1f} s)")
        assert gap < 0.8, (gap, log[-3000:])
        proc.stop()
        assert "Traceback" not in pxed.output()


def _seconds(log: str, first: str, then: str) -> float:
    """Seconds from the first log line with `first` to the next one with `then`."""
    stamp = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
    began = None
    for line in log.splitlines():
        found = stamp.match(line)
        if found is None:
            continue
        when = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f")
        if began is None and first in line:
            began = when
        elif began is not None and then in line:
            return (when - began).total_seconds()
    raise AssertionError(f"{first!r} then {then!r} not in the log:\n{log[-3000:]}")
