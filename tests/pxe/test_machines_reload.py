"""pxed's inventory over the wire and through SIGHUP (issue 22 item 1): a real pxed in a
namespace, a scripted iPXE client (pxe_probe.py) and curl in a peer namespace. The
offer names the machine's script URL; curl reads the rendered script; the settings
file is rewritten and pxed gets SIGHUP: the next offer and script follow the new
profile; a broken inventory on the next SIGHUP is one line naming FILE:LINE and the
running inventory keeps serving."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from pxe_harness import boot_network
from test_pxe_sockets import PROBE, probe

from dhcp.dhcplab import wait_for
from support import require_tool, script, wait_udp_bound, world_readable_dir

pytestmark = [pytest.mark.netns, pytest.mark.timeout(180)]

MAC = "52:54:00:22:02:01"
URL = f"http://10.78.0.1:8080/pxed/machines/{MAC.replace(':', '-')}.ipxe"


def inventory(word: str) -> str:
    return (
        f'[[machine]]\nmac = "{MAC}"\nprofile = "p"\n\n'
        f'[profile.p]\nipxe-script = """#!ipxe\necho {word} {{{{ mac }}}}\n"""\n'
    )


def test_the_inventory_over_the_wire_and_sighup(tmp_path: Path) -> None:
    curl = require_tool("curl")
    assert PROBE.is_file()
    with world_readable_dir("ptftpd-machines-") as state, boot_network(tmp_path) as net:
        root = state / "root"
        root.mkdir(mode=0o755)
        (root / "undionly.kpxe").write_bytes(b"boot")
        config = state / "pxed.toml"
        config.write_text(inventory("FIRST"))
        argv = [script("pxed"), "-v", "--config", str(config), "--http-port", "8080",
                "--leases", str(tmp_path / "leases.sqlite"), net.bridge, str(root),
                "undionly.kpxe"]  # fmt: skip
        pxed = net.start(argv, "pxed")
        wait_udp_bound(67, timeout=15, proc=pxed.proc, netns=net.ns.name)
        pxed.wait_output("HTTP port 8080", timeout=15)
        client = net.peer("10.78.0.50")

        def offered() -> str:
            replies = probe(client, "discover", "--mac", MAC, "--arch", "0", "--ipxe")
            offers = [r for r in replies if r["type"] == "OFFER"]
            assert len(offers) == 1, replies
            return str(offers[0]["file"])

        def script_text() -> str:
            out = subprocess.run(
                client.popen_argv([curl, "-sf", URL]), capture_output=True, text=True,
                timeout=20, check=True,
            )  # fmt: skip
            return out.stdout

        assert offered() == URL
        assert script_text() == f"#!ipxe\necho FIRST {MAC}\n"
        config.write_text(inventory("SECOND"))
        pxed.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded" in pxed.output(), 15, "the reload line")
        assert offered() == URL
        assert script_text() == f"#!ipxe\necho SECOND {MAC}\n"
        config.write_text(inventory("THIRD").replace(f'"{MAC}"', '"52:54:00:zz"'))
        pxed.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "not a MAC address" in pxed.output(), 15, "the error line")
        assert offered() == URL  # the running inventory still decides
        assert script_text() == f"#!ipxe\necho SECOND {MAC}\n"
        pxed.stop()
        log = pxed.output()
    assert f"{config}:2: machine.mac: not a MAC address: '52:54:00:zz'" in log
    assert "Traceback" not in log


def test_proxy_mode_over_the_wire(tmp_path: Path) -> None:
    """--proxy: the machine's script URL in the proxy offer; a local machine that is not
    iPXE yet gets no proxy offer at all (the network's DHCP server still gives its
    address); unknown machines get the firmware table as before."""
    local = "52:54:00:22:02:02"
    with world_readable_dir("ptftpd-machines-") as state, boot_network(tmp_path) as net:
        root = state / "root"
        root.mkdir(mode=0o755)
        (root / "undionly.kpxe").write_bytes(b"boot")
        config = state / "pxed.toml"
        config.write_text(
            inventory("PROXY") + f'\n[[machine]]\nmac = "{local}"\nprofile = "disk"\n\n'
            "[profile.disk]\nlocal = true\n"
        )
        argv = [script("pxed"), "-v", "--proxy", "--config", str(config), "--http-port",
                "8080", net.bridge, str(root), "undionly.kpxe"]  # fmt: skip
        pxed = net.start(argv, "pxed")
        wait_udp_bound(4011, timeout=15, proc=pxed.proc, netns=net.ns.name)
        client = net.peer("10.78.0.50")

        def offers(mac: str, *extra: str, wait: float = 10.0) -> list[dict[str, object]]:
            replies = probe(client, "discover", "--mac", mac, "--arch", "0", *extra, wait=wait)
            return [r for r in replies if r["type"] == "OFFER"]

        [offer] = offers(MAC, "--ipxe")
        assert offer["file"] == URL and offer["yiaddr"] == "0.0.0.0"
        # No offer within 3 s, and pxed had decided that DISCOVER by then (its line):
        # the probe's 10 s would only wait longer for an answer already decided against.
        assert offers(local, wait=3.0) == []
        decided = f"proxyDHCP OFFER mac={local}: local disk (inventory machine #2): no answer"
        assert decided in pxed.output(), pxed.output()[-3000:]
        [other] = offers("52:54:00:22:02:03")
        assert other["file"] == "undionly.kpxe"
        pxed.stop()
        log = pxed.output()
    assert f"proxyDHCP OFFER mac={local}: local disk (inventory machine #2): no answer" in log
