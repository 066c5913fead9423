"""pxed --boot-api answers a held request as soon as the API answers, and a decision
holds for its whole exchange (issue 22). A real pxed (full DHCP mode) in a namespace,
the test API (pixie_api.py) answering in 0.3 s:

- busybox udhcpc (retransmission every 3 s) gets its OFFER (and lease) in well under
  its retransmission interval: the held DISCOVER is fed to the engine again when the
  API's answer arrives, not left for the client's retransmission;
- a scripted client retransmitting its DISCOVER while it is held and after the API's
  answer gets one offer when the API answers and the same offer again, never another;
- a scripted client that, like EDK2 collecting offers, sends its REQUEST 11 s after
  the OFFER (past the 10 s freshness window) gets its ACK at once with the same boot
  file, and the API is asked once for that machine, not twice.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pxe_harness import boot_network, udhcpc_ipxe
from pxe_probe import __file__ as probe_file

from support import script, wait_udp_bound

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

FAST = "52:54:00:22:03:41"  # udhcpc
RETRANSMITS = "52:54:00:22:03:43"  # retransmits while held, and after the answer
SLOW_REQUEST = "52:54:00:22:03:42"  # the scripted client, REQUEST 11 s after its OFFER
API_PORT = 8032
HERE = Path(__file__).parent
RETRANSMIT = 3  # udhcpc -T: seconds between its DISCOVERs


def test_a_held_request_is_answered_when_the_api_answers(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "ipxe.efi").write_bytes(b"boot")
    rules = tmp_path / "rules.json"
    body = json.dumps({"ipxe-script": "#!ipxe\necho api-marker\n"})
    rules.write_text(
        json.dumps(
            {FAST: [0.3, 200, body], SLOW_REQUEST: [0.3, 200, body], RETRANSMITS: [1.0, 200, body]}
        )
    )
    with boot_network(tmp_path) as net:
        api = net.start(
            [sys.executable, str(HERE / "pixie_api.py"), str(API_PORT), str(rules)], "api"
        )
        argv = [script("pxed"), "-v", "--http-port", "8080", "--range", "10.78.0.100",
                "10.78.0.120", "--leases", str(tmp_path / "leases.sqlite"),
                "--boot-api", f"http://127.0.0.1:{API_PORT}/",
                net.bridge, str(root), "ipxe.efi"]  # fmt: skip
        pxed = net.start(argv, "pxed")
        wait_udp_bound(67, timeout=15, proc=pxed.proc, netns=net.ns.name)
        scripted = net.peer("10.78.0.51")
        dora = [sys.executable, probe_file, "dora", "--mac", SLOW_REQUEST, "--arch", "7",
                "--ipxe", "--iface", "eth0", "--wait", "6", "--request-after", "11"]  # fmt: skip
        probe = subprocess.Popen(
            scripted.popen_argv(dora), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        again = [sys.executable, probe_file, "discover", "--mac", RETRANSMITS, "--arch", "7",
                 "--ipxe", "--iface", "eth0", "--wait", "3", "--all",
                 "--again", "0.5,1.6"]  # fmt: skip
        retransmits = subprocess.Popen(
            scripted.popen_argv(again), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            # 1. udhcpc: its lease well inside its first retransmission interval.
            file, took = udhcpc_ipxe(net.peer("10.78.0.50"), tmp_path, FAST, RETRANSMIT, 3)
            expected = "http://10.78.0.1:8080/pxed/machines/{}.ipxe"
            assert file == expected.format(FAST.replace(":", "-")), pxed.output()[-3000:]
            print(f"udhcpc: lease {took:.3f} s after its start (retransmits every {RETRANSMIT} s)")
            assert took < 1.2, (took, pxed.output()[-3000:])

            # 2. DISCOVERs at 0, 0.5 (held) and 1.6 s (after the 1 s answer): one offer
            # when the API answers, the same one again for the late retransmission.
            out, err = retransmits.communicate(timeout=20)
            offers = [json.loads(line) for line in out.splitlines()]
            print("retransmitting client: offers at", [o["after"] for o in offers])
            assert len(offers) == 2, (out, err, pxed.output()[-3000:])
            assert 1.0 <= offers[0]["after"] < 1.5 and offers[1]["after"] >= 1.6, offers
            same = {(o["yiaddr"], o["file"], o["type"]) for o in offers}
            assert len(same) == 1, offers

            # 3. The REQUEST 11 s after its OFFER: answered, no second API request.
            out, err = probe.communicate(timeout=40)
        finally:
            for proc in (probe, retransmits):
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
        replies = [json.loads(line) for line in out.splitlines()]
        assert [r["type"] for r in replies] == ["OFFER", "ACK"], (out, err, pxed.output()[-3000:])
        offer, ack = replies
        print(f"scripted client: OFFER {offer['after']} s, ACK {ack['after']} s")
        assert offer["after"] < 1.2, offer
        assert ack["after"] - offer["after"] < 11 + 1.0, (offer, ack)
        assert ack["file"] == offer["file"] == expected.format(SLOW_REQUEST.replace(":", "-"))
        asked = [line for line in api.output().splitlines() if SLOW_REQUEST in line]
        assert len(asked) == 1, asked
        assert pxed.stop() == 0
        assert "Traceback" not in pxed.output()
