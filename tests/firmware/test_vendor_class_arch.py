"""Firmware that sends no readable option 93 (some EDK2 builds, the Raspberry Pi 4's UEFI
firmware among them) still gets its architecture's file from pxed, taken from the
vendor class `PXEClient:Arch:00011:...` / `HTTPClient:Arch:00019:...`: scripted
DISCOVERs (arch_probe.py) to a real pxed in a namespace, full and proxy mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fwlab import SERVER_IP, lan

from support import REPO, VENV_BIN, Netns

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]

PROBE = Path(__file__).with_name("arch_probe.py")
MAC = "52:54:00:0b:0b:0b"
URL = f"http://{SERVER_IP}:8080/grubaa64.efi"
CASES = [
    # (vendor class, raw option 93 or None, expected file, expected vendor class back)
    ("PXEClient:Arch:00011:UNDI:003000", None, "grubaa64.efi", "PXEClient"),
    ("PXEClient:Arch:00011:UNDI:003000", "0b", "grubaa64.efi", "PXEClient"),
    ("PXEClient:Arch:00011:UNDI:003000", "000b00", "grubaa64.efi", "PXEClient"),
    ("HTTPClient:Arch:00019:UNDI:003000", None, URL, "HTTPClient"),
    ("PXEClient:Arch:00007:UNDI:003000", None, "ipxe.efi", "PXEClient"),
    ("PXEClient", None, "default.0", "PXEClient"),  # nothing to go by: BOOTFILE
]


def probe(host: Netns, vendor: str, option_93: str | None) -> dict[str, str]:
    argv = [str(VENV_BIN / "python"), str(PROBE), "--mac", MAC, "--vendor", vendor]
    if option_93 is not None:
        argv += ["--option-93", option_93]
    path = f"PYTHONPATH={REPO / 'src'}:{REPO / 'tests' / 'dhcp'}"
    out = host.run("env", path, *argv, timeout=60).stdout
    reply: dict[str, str] | None = json.loads(out)
    assert reply is not None, f"no reply to {vendor} / 93={option_93}"
    return reply


@pytest.mark.parametrize("mode", ["full", "proxy"])
def test_arch_from_the_vendor_class(tmp_path: Path, mode: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for name in ("grubaa64.efi", "ipxe.efi", "default.0"):
        (root / name).write_bytes(b"x")
    root.chmod(0o755)
    with lan(tmp_path) as net:
        host = net.host(MAC)
        flags = ["--arm64-bootfile", "grubaa64.efi", "--efi64-bootfile", "ipxe.efi"]
        flags += ["--http-port", "8080", *(["--proxy"] if mode == "proxy" else [])]
        net.pxed(root, "default.0", *flags)
        got = [(probe(host, vendor, raw), file, back) for vendor, raw, file, back in CASES]
    for (reply, file, back), case in zip(got, CASES, strict=True):
        assert (reply["file"], reply["60"]) == (file, back), case
