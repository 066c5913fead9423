"""Issue 22's decision core without sockets: inventory selectors (all keys must match,
a list is any of, first match wins), the precedence chain (local state, inventory,
API, default, built-in), `Pending` from an asynchronous source, and the recipes
(iPXE scripts, grub configurations, per-family first stages, templates with facts)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from ptftpd.config import ConfigError
from ptftpd.pxe.decision import (
    BUILTIN,
    Decider,
    Decision,
    Fallback,
    Kind,
    MachineFacts,
    MachineState,
    Pending,
    Profile,
    Source,
    StateTable,
)
from ptftpd.pxe.firmware import BootClass
from ptftpd.pxe.inventory import Inventory, inventory_from
from ptftpd.pxe.recipes import LOCAL_SCRIPT, first_stage, render, render_grub, render_ipxe

MAC1, MAC2, MAC3 = "52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:03"


def facts(mac: str = MAC1, **kw: object) -> MachineFacts:
    base: dict[str, object] = {"mac": mac, "server": "10.0.0.1", "arch": 0}
    base.update(kw)
    return MachineFacts(**base)  # type: ignore[arg-type]


def inventory(machines: list[dict[str, object]], **profiles: dict[str, object]) -> Inventory:
    table: dict[str, object] = {"a": {"ipxe-script": "#!ipxe\necho a"}}
    table.update(profiles)
    return inventory_from({"machine": machines, "profile": table})


def chosen(inv: Inventory, f: MachineFacts) -> str | None:
    entry = inv.match(f)
    return None if entry is None else entry.rule


def test_mac_selector_and_lists_and_first_match_wins() -> None:
    inv = inventory(
        [
            {"mac": [MAC1, "52-54-00-00-00-02"], "profile": "a", "name": "pair"},
            {"mac": MAC1, "profile": "a", "name": "later"},
            {"architecture": "efi64", "profile": "a", "name": "uefi"},
        ]
    )
    assert chosen(inv, facts(MAC1)) == "machine pair"
    assert chosen(inv, facts(MAC2)) == "machine pair"
    assert chosen(inv, facts(MAC3)) is None
    assert chosen(inv, facts(MAC3, arch=7)) == "machine uefi"
    assert chosen(inv, facts(MAC3, arch=16)) == "machine uefi"  # x64 HTTP boot: efi64 too


def test_all_given_keys_must_match() -> None:
    inv = inventory(
        [
            {
                "subnet": "10.0.5.0/24",
                "vendor-class": "PXEClient:Arch:00007*",
                "hostname": "web-*",
                "profile": "a",
            },
            {"uuid": "8A3C9E6B-1F2D-4C5E-9A7B-0123456789AB", "user-class": "iPXE", "profile": "a"},
        ]
    )
    good = facts(
        MAC3,
        ip=IPv4Address("10.0.5.9"),
        vendor_class="PXEClient:Arch:00007:UNDI:003016",
        hostname="Web-3",
    )
    assert chosen(inv, good) == "machine #1"
    from dataclasses import replace

    assert chosen(inv, replace(good, ip=IPv4Address("10.0.6.9"))) is None
    # no address yet: the network it is served on counts
    assert chosen(inv, replace(good, ip=None, subnet=IPv4Network("10.0.5.0/24"))) == "machine #1"
    assert chosen(inv, replace(good, hostname="db-1")) is None
    assert chosen(inv, replace(good, vendor_class="HTTPClient:Arch:00016")) is None
    uuid = "8a3c9e6b1f2d4c5e9a7b0123456789ab"
    assert chosen(inv, facts(MAC3, uuid=uuid)) is None  # user class missing
    assert chosen(inv, facts(MAC3, uuid=uuid, user_classes=("iPXE",))) == "machine #2"


def test_a_thousand_machines_are_indexed_by_mac_yet_file_order_holds() -> None:
    machines: list[dict[str, object]] = [{"hostname": "special", "profile": "a", "name": "first"}]
    machines += [
        {"mac": f"52:54:00:00:{i >> 8:02x}:{i & 255:02x}", "profile": "a"} for i in range(1000)
    ]
    inv = inventory(machines)
    assert chosen(inv, facts("52:54:00:00:03:e7")) == "machine #1001"
    assert chosen(inv, facts("52:54:00:00:03:e7", hostname="special")) == "machine first"


def test_precedence_state_inventory_api_default() -> None:
    inv = inventory([{"mac": MAC1, "profile": "a"}], default={"local": True})
    states = StateTable({MAC1: MachineState.LOCAL})
    api_answer = Decision(Kind.BOOT, Source.API, Profile("from-api", ipxe_script="#!ipxe"))

    class Api:
        def __init__(self) -> None:
            self.asked: list[str] = []

        def decide(self, f: MachineFacts, now: float) -> Decision | Pending | None:
            self.asked.append(f.mac)
            if f.mac == MAC3:
                return Pending(Source.API, now + 2.0)
            return api_answer if f.mac == MAC2 else None

    api = Api()
    decider = Decider([states, inv, api], Fallback(inv.default))
    first = decider.decide(facts(MAC1), 0.0)
    assert isinstance(first, Decision) and first.source is Source.LOCAL_STATE
    assert first.kind is Kind.LOCAL
    states.set(MAC1, MachineState.INSTALL)
    again = decider.decide(facts(MAC1), 0.0)
    assert isinstance(again, Decision) and again.source is Source.INVENTORY
    assert api.asked == []  # an explicit inventory match is never sent to the API
    assert decider.decide(facts(MAC2), 0.0) is api_answer
    assert decider.decide(facts(MAC3), 5.0) == Pending(Source.API, 7.0)
    unknown = decider.decide(facts("52:54:00:00:00:09"), 0.0)
    assert isinstance(unknown, Decision)
    assert unknown.source is Source.DEFAULT and unknown.kind is Kind.LOCAL
    assert unknown.describe() == "local default (default)"
    assert Decider([], Fallback(None)).decide(facts(), 0.0) is BUILTIN


def test_profile_kinds_and_their_errors(tmp_path: Path) -> None:
    (tmp_path / "s.ipxe").write_text("#!ipxe\necho from a file {{ mac }}\n")
    inv = inventory_from(
        {
            "profile": {
                "f": {"ipxe-script": "s.ipxe"},
                "off": {"ignore": True},
                "chain": {"bootfile": {"efi64": "shimx64.efi", "bios": "undionly.kpxe"}},
            }
        },
        base=tmp_path,
    )
    assert inv.profiles["off"].kind is Kind.IGNORE
    assert render_ipxe(inv.profiles["f"], facts()) == b"#!ipxe\necho from a file " + (
        MAC1.encode() + b"\n"
    )
    chain = inv.profiles["chain"]
    assert first_stage(chain, BootClass.EFI64) == "shimx64.efi"
    assert first_stage(chain, BootClass.ARM64) is None
    bad = [
        ({"k": {"kernel": "v", "local": True}}, "kernel and local exclude each other"),
        ({"k": {"cmdline": "quiet"}}, "profile.k.cmdline: needs a kernel"),
        ({"k": {"kernel": "v", "cmdline": "x={{ secret }}"}}, "unknown fact"),
        ({"k": {"ipxe-script": "missing.ipxe"}}, "nor a readable file"),
        ({"k": {"bootfile": {"ppc": "x"}}}, "ppc: not a firmware family"),
        ({"k": {"kernal": "v"}}, "profile.k.kernal: unknown key"),
        ({"k": {}}, "boots nothing"),
    ]
    for profiles, message in bad:
        with pytest.raises(ConfigError, match=message):
            inventory_from({"profile": profiles}, base=tmp_path)
    machines = [
        ([{"mac": MAC1}], "names the profile"),
        ([{"mac": MAC1, "profile": "nope"}], r"no \[profile.nope\] table"),
        ([{"mac": "52:54:00", "profile": "a"}], "not a MAC address"),
        ([{"profile": "a"}], "selects nothing"),
        ([{"architecture": "sparc", "profile": "a"}], "IANA architecture code"),
        ([{"subnet": "10.0.0.300/24", "profile": "a"}], "machine.subnet"),
    ]
    for entries, message in machines:
        with pytest.raises(ConfigError, match=message) as caught:
            inventory_from({"machine": entries, "profile": {"a": {"local": True}}})
        assert caught.value.at[:2] == ("machine", 0)


def test_ipxe_script_kernel_initrd_cmdline_templated_and_safe() -> None:
    profile = Profile(
        "debian",
        kernel="debian/vmlinuz",
        initrd=("debian/initrd.gz", "http://mirror.example/extra.cpio"),
        cmdline="console=ttyS0 host={{ hostname }} mac={{mac}} url={{ http }}/{{ mac-hyphen }}",
    )
    f = facts(http_base="http://10.0.0.1:8080", hostname="node-1")
    script = render_ipxe(profile, f).decode()
    assert script.splitlines() == [
        "#!ipxe",
        f"echo pxed: profile debian for {MAC1}",
        "initrd --name initrd0 http://10.0.0.1:8080/debian/initrd.gz",
        "initrd --name initrd1 http://mirror.example/extra.cpio",
        "kernel http://10.0.0.1:8080/debian/vmlinuz initrd=initrd0 initrd=initrd1 "
        f"console=ttyS0 host=node-1 mac={MAC1} url=http://10.0.0.1:8080/52-54-00-00-00-01",
        "boot",
    ]
    # a machine-chosen hostname cannot add a line or an argument to its script
    hostile = render_ipxe(profile, facts(hostname="x\nshell")).decode()
    assert "shell" not in hostile and "host= " in hostile
    assert "kernel tftp://10.0.0.1/debian/vmlinuz" in hostile  # no --http-port: TFTP
    grub = render_grub(profile, f).decode().splitlines()
    assert grub[1].startswith("linux /debian/vmlinuz console=ttyS0 host=node-1")
    assert grub[2] == "initrd /debian/initrd.gz (http,mirror.example)/extra.cpio"
    local = Decision(Kind.LOCAL, Source.LOCAL_STATE)
    assert render(local, f) == LOCAL_SCRIPT and b"\nexit\n" in LOCAL_SCRIPT
    assert render(BUILTIN, f) is None
