"""Issue 23 item 1: router solicitations and the advertisements answering them are
steps of the machine's boot record (pxed --ipv6 sends the RAs).

A real pxed --ipv6 --api in a test namespace; the kernel of a peer namespace solicits a
router (with its source link-layer address) when its link comes up.
The API then shows that machine's attempt with `ra.solicit` and `ra.advert`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from pxe_harness import boot_network

from support import require_tool, script, wait_udp_bound

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]


def test_a_router_solicitation_and_its_answer_are_steps(tmp_path: Path) -> None:
    curl = require_tool("curl")
    root = tmp_path / "root"
    root.mkdir()
    (root / "ipxe.efi").write_bytes(b"x")
    with boot_network(tmp_path) as net:
        client = net.peer("10.78.0.50")
        mac = client.run("cat", "/sys/class/net/eth0/address").stdout.strip()
        argv = [script("pxed"), "-D", "--ipv6", "--api", "127.0.0.1:8023"]
        argv += ["--leases", str(tmp_path / "leases.sqlite"), net.bridge, str(root), "ipxe.efi"]
        pxed = net.start(argv, "pxed")
        wait_udp_bound(547, timeout=15, proc=pxed.proc, netns=net.ns.name)
        # The peer's kernel solicits a router when its link comes up (with its
        # link-layer address once its link-local address is no longer tentative;
        # ndisc6's rdisc6 sends none): bring the link down and up, bounded.
        deadline = time.monotonic() + 30
        while True:
            client.run("ip", "link", "set", "eth0", "down")
            client.run("ip", "link", "set", "eth0", "up")
            for _ in range(20):
                time.sleep(0.5)
                out = net.ns.run(
                    curl, "-sS", "--max-time", "5", f"http://127.0.0.1:8023/v1/machines/{mac}",
                    check=False,
                ).stdout  # fmt: skip
                attempts = json.loads(out).get("attempts", []) if out.strip() else []
                kinds = [s["kind"] for a in attempts for s in a["steps"]]
                if "ra.solicit" in kinds and "ra.advert" in kinds:
                    break
            else:
                assert time.monotonic() < deadline, (out, pxed.output()[-2000:])
                continue
            break
        solicit = next(s for a in attempts for s in a["steps"] if s["kind"] == "ra.solicit")
        assert solicit["peer"].startswith("fe80::"), solicit
        assert kinds.index("ra.solicit") < kinds.index("ra.advert")
        assert pxed.stop() == 0
        assert "Traceback" not in pxed.output()
