"""Issue 22 item 4, proxy mode on a Secure Boot chain: a grub with Red Hat's config
search asks for ``grub.cfg-01-<mac>`` first, and pxed serves that machine's own grub
configuration by the MAC in the name, even though it never learned the machine's
address (another server gave it); the same name with ``$net_default_mac``'s colons
is what a ROOT grub.cfg sources for Debian's grub, which searches no per-MAC name.
A real proxy-mode pxed service (responder), the real TFTP server and tftp-hpa's
client asking from an address pxed knows nothing of."""

from __future__ import annotations

import asyncio
import subprocess
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from ptftpd.dhcp import DhcpConfig, Message, MessageType, Opt, decode, encode
from ptftpd.pxe import BootFiles, PxeConfig, PxeService
from ptftpd.pxe.inventory import inventory_from
from ptftpd.tftp.server import ServerConfig, TftpServer
from support import free_udp_port, require_tool

NOW = 1_700_000_000.0
COLONS_A = "/grub/grub.cfg-01-52:54:00:22:03:01"
MAC_A, MAC_B, MAC_NEVER = "52:54:00:22:03:01", "52:54:00:22:03:02", "52:54:00:22:03:09"


def uefi_discover(mac: str) -> bytes:
    msg = Message(xid=9, chaddr=bytes.fromhex(mac.replace(":", "")) + b"\x00" * 10)
    msg.options[Opt.MESSAGE_TYPE] = bytes([MessageType.DISCOVER])
    msg.options[Opt.VENDOR_CLASS] = b"PXEClient:Arch:00007:UNDI:003016"
    msg.options[Opt.CLIENT_ARCH] = b"\x00\x07"
    return encode(msg)


def test_proxy_mode_serves_grubs_per_mac_name_without_knowing_the_address(
    tmp_path: Path,
) -> None:
    tftp_client = require_tool("tftp")
    curl = require_tool("curl")
    root = tmp_path / "root"
    (root / "grub").mkdir(parents=True)
    for name in ("shimx64.efi", "grubx64.efi"):
        (root / name).write_bytes(b"efi")
    (root / "grub" / "grub.cfg").write_text("echo ROOT's own grub.cfg\n")
    inventory = inventory_from(
        {
            "machine": [{"mac": MAC_A, "profile": "a"}, {"mac": MAC_B, "profile": "b"}],
            "profile": {
                "a": {"kernel": "a/vmlinuz", "cmdline": "marker=A mac={{ mac }}"},
                "b": {"kernel": "b/vmlinuz", "cmdline": "marker=B"},
            },
        }
    )
    dhcp = DhcpConfig(
        server_ip=IPv4Address("10.78.3.1"),
        network=IPv4Network("10.78.3.0/24"),
        bootfile="pxelinux.0",
        interface="br0",
    )
    cfg = PxeConfig(
        dhcp=dhcp,
        tftp=ServerConfig(root=root, read_only=True),
        files=BootFiles("pxelinux.0", secure_boot=True),
        inventory=inventory,
        proxy=True,
    )
    service = PxeService(cfg)
    for mac in (MAC_A, MAC_B):
        out = service.responder.handle(uefi_discover(mac), ("0.0.0.0", 68), False, now=NOW)
        assert out, f"no proxy offer to {mac}"
        assert decode(out[0].payload).file_str == "shimx64.efi"  # the chain's first stage
    assert service.boot_log.mac_of_ip == {}  # proxy mode: no address learned

    def per_mac(mac: str) -> str:
        return "grub/grub.cfg-01-" + mac.replace(":", "-")

    async def run() -> dict[str, str]:
        tftp = TftpServer(cfg.tftp)
        tftp.generated = service._generated
        port = free_udp_port()
        await tftp.start(["127.0.0.1"], port)

        def fetch() -> dict[str, str]:
            got: dict[str, str] = {}
            names = [per_mac(MAC_A), per_mac(MAC_B).upper().replace("GRUB.CFG", "grub.cfg"),
                     per_mac(MAC_NEVER), "grub/grub.cfg"]  # fmt: skip
            for i, name in enumerate(names):
                dest = tmp_path / f"got{i}"
                subprocess.run(
                    [tftp_client, "127.0.0.1", str(port), "-m", "binary", "-c", "get",
                     name, str(dest)],
                    timeout=20, cwd=tmp_path, capture_output=True,
                )  # fmt: skip
                got[name] = dest.read_text() if dest.exists() and dest.stat().st_size else ""
            # tftp-hpa reads "a:b" as host:file: curl's TFTP client asks for this name
            got[COLONS_A] = subprocess.run(
                [curl, "-s", f"tftp://127.0.0.1:{port}{COLONS_A}"],
                timeout=20, capture_output=True, text=True,
            ).stdout  # fmt: skip
            return got

        try:
            return await asyncio.get_running_loop().run_in_executor(None, fetch)
        finally:
            tftp.close()

    got = asyncio.run(run())
    a = got[per_mac(MAC_A)]
    assert "pxed: profile a for " + MAC_A in a
    assert f"linux /a/vmlinuz marker=A mac={MAC_A}" in a
    b = next(v for k, v in got.items() if k.upper() == per_mac(MAC_B).upper())
    assert "linux /b/vmlinuz marker=B" in b
    assert got[per_mac(MAC_NEVER)] == ""  # nothing decided for it: ROOT has no such file
    # ${net_default_mac}'s colons: what a ROOT grub.cfg for Debian's grub can source
    assert got[COLONS_A] == a
    assert got["grub/grub.cfg"] == "echo ROOT's own grub.cfg\n"  # unknown address: ROOT's
