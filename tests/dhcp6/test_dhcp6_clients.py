"""Real DHCPv6 clients (ISC dhclient -6, dhcpcd -6) and rdisc6 against
`python -m ptftpd.dhcp6` on a veth pair between two namespaces these tests create.
The prefix fd00:77::/64 exists only on the server side of that pair; nothing leaves
the namespaces. Every wait is bounded; every process is stopped by its PID."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest

from ptftpd.dhcp6.codec import (
    ClientArch,
    ClientId,
    ElapsedTime,
    IaNa,
    Message,
    MsgType,
    OptionRequest,
    ServerId,
    VendorClass,
    encode,
)
from support import (
    VENV_BIN,
    Netns,
    Process,
    add_veth,
    require_root,
    require_tool,
    wait_udp_bound,
)

pytestmark = pytest.mark.netns

HERE = Path(__file__).resolve().parent
PREFIX = IPv6Network("fd00:77::/64")
SERVER_IP = IPv6Address("fd00:77::1")
CLIENT_DUID = bytes.fromhex("00030001525400c0ffee")


def wait_for(pred: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Lab6:
    server: Netns
    client: Netns
    sif: str
    cif: str
    tmp: Path
    procs: list[Process] = field(default_factory=list)

    def start_server(self, *args: str) -> Process:
        argv = self.server.popen_argv(
            [
                str(VENV_BIN / "python"),
                "-m",
                "ptftpd.dhcp6",
                self.sif,
                "--leases",
                str(self.tmp / "leases6.sqlite"),
                "-D",
                *args,
            ]
        )
        proc = Process(argv, self.tmp / "server.log")
        self.procs.append(proc)
        wait_udp_bound(547, timeout=15, proc=proc.proc, netns=self.server.name)
        return proc

    def client_addresses(self) -> set[IPv6Address]:
        out = self.client.run("ip", "-j", "-6", "addr", "show", "dev", self.cif).stdout
        return {
            IPv6Address(a["local"])
            for link in json.loads(out)
            for a in link.get("addr_info", [])
            if a.get("scope") == "global"
        }

    def probe(
        self,
        *packets: bytes,
        wait: float = 3.0,
        to: str = "ff02::1:2",
        port: int = 547,
        sport: int = 546,
    ) -> list[dict[str, object]]:
        res = self.client.run(
            str(VENV_BIN / "python"),
            str(HERE / "dhcp6probe.py"),
            self.cif,
            *(p.hex() for p in packets),
            "--wait",
            str(wait),
            "--to",
            to,
            "--port",
            str(port),
            "--sport",
            str(sport),
            timeout=wait + 20,
        )
        return [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]


@contextmanager
def lab6(tmp: Path) -> Iterator[Lab6]:
    require_root()
    require_tool("ip")
    server, client = Netns("d6s"), Netns("d6c")
    lab: Lab6 | None = None
    try:
        for ns in (server, client):
            # No duplicate address detection on this private link: addresses are usable
            # at once, link-local ones included (replies go to the client's).
            ns.run("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0")
            ns.run("sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
        sif, cif = "vs" + server.name[-8:], "vc" + client.name[-8:]
        add_veth(server, sif, client, cif)
        server.run("ip", "addr", "add", f"{SERVER_IP}/64", "dev", sif, "nodad")
        server.run("ip", "link", "set", sif, "up")
        client.run("ip", "link", "set", cif, "up")

        def link_local_ready() -> bool:
            out = server.run("ip", "-6", "addr", "show", "dev", sif).stdout
            out += client.run("ip", "-6", "addr", "show", "dev", cif).stdout
            return out.count("scope link") == 2 and "tentative" not in out

        wait_for(link_local_ready, 10, "link-local addresses")
        lab = Lab6(server, client, sif, cif, tmp)
        yield lab
    finally:
        if lab is not None:
            for proc in reversed(lab.procs):
                proc.stop(signal.SIGTERM, timeout=5)
        client.delete()
        server.delete()


def leased(tmp: Path) -> dict[IPv6Address, str]:
    with sqlite3.connect(tmp / "leases6.sqlite") as db:
        rows = db.execute("SELECT address, state FROM leases").fetchall()
    return {IPv6Address(a): s for a, s in rows}


def run_dhclient(
    lab: Lab6, name: str = "dhclient", *extra: str, conf_lines: str = ""
) -> tuple[Process, Path]:
    require_tool("dhclient")
    events = lab.tmp / f"{name}.events"
    hook = lab.tmp / f"{name}.sh"
    hook.write_text(
        "#!/bin/sh\n"
        f'{sys.executable} -c "import json,os; print(json.dumps('
        "{k: v for k, v in os.environ.items() if k == 'reason' or k.startswith('new_')}))\""
        f" >> {events}\n"
        'case "$reason" in BOUND6|RENEW6|REBIND6)\n'
        '  ip -6 addr add "$new_ip6_address/$new_ip6_prefixlen" dev "$interface" nodad;;\n'
        "esac\n"
    )
    hook.chmod(0o755)
    conf = lab.tmp / f"{name}.conf"
    conf.write_text("timeout 30;\ninitial-interval 1;\n" + conf_lines)
    argv = lab.client.popen_argv(
        [
            "dhclient",
            "-6",
            "-1",
            "-d",
            "-v",
            "-cf",
            str(conf),
            "-lf",
            str(lab.tmp / f"{name}.leases"),
            "-pf",
            str(lab.tmp / f"{name}.pid"),
            "-sf",
            str(hook),
            *extra,
            lab.cif,
        ]
    )
    proc = Process(argv, lab.tmp / f"{name}.log")
    lab.procs.append(proc)
    return proc, events


def bound_event(events: Path, timeout: float = 40) -> dict[str, str]:
    def found() -> list[dict[str, str]]:
        if not events.exists():
            return []
        lines = [json.loads(x) for x in events.read_text().splitlines() if x]
        return [e for e in lines if e.get("reason") == "BOUND6"]

    hits = wait_for(found, timeout, f"dhclient BOUND6 in {events}")
    assert isinstance(hits, list)
    return dict(hits[0])


def test_dhclient6_gets_an_address_from_the_prefix(tmp_path: Path) -> None:
    with lab6(tmp_path) as lab:
        server = lab.start_server("--no-ra")
        proc, events = run_dhclient(lab)
        got = bound_event(events)
        address = IPv6Address(got["new_ip6_address"])
        assert address in PREFIX and address != SERVER_IP
        assert got["new_max_life"] == "7200" and got["new_preferred_life"] == "3600"
        wait_for(lambda: address in lab.client_addresses(), 10, "address on the client link")
        assert leased(tmp_path) == {address: "bound"}, "committed before the Reply"
        assert f"leased {address} to DUID" in server.output()
        proc.stop()

        # The same client (same DUID, from its lease file) releases the address.
        release, _ = run_dhclient(lab, "dhclient", "-r")
        assert release.proc.wait(30) == 0, release.output()
        # Read at once after dhclient -r exited, the file still said bound once under
        # load 6 (cause not pinned down): wait for the Release's commit, bounded.
        wait_for(lambda: leased(tmp_path) == {address: "released"}, 10, "the release in the file")
        assert f"released {address} by DUID" in server.output()


def test_dhcpcd6_gets_an_address(tmp_path: Path) -> None:
    require_tool("dhcpcd")
    require_tool("unshare")
    with lab6(tmp_path) as lab:
        server = lab.start_server()
        db, conf, hook = tmp_path / "dhcpcd-db", tmp_path / "dhcpcd.conf", tmp_path / "hook.sh"
        db.mkdir()
        conf.write_text("ipv6only\nnoipv4ll\nnohook resolv.conf, ntp, hostname\nia_na 1\n")
        hook.write_text("#!/bin/sh\n")
        hook.chmod(0o755)
        # dhcpcd keeps its DUID and leases in /var/lib/dhcpcd and its pid file under
        # /run: a private mount namespace gives it temporary ones, so the host's stay
        # untouched. Every step execs, so the PID we hold is dhcpcd's.
        inner = (
            "mount --make-rprivate / && "
            f"mount --bind {db} /var/lib/dhcpcd && mount -t tmpfs tmpfs /run && "
            f"exec dhcpcd -6 -B -1 -d -t 30 -f {conf} -c {hook} {lab.cif}"
        )
        argv = lab.client.popen_argv(["unshare", "-m", "sh", "-c", inner])
        proc = Process(argv, tmp_path / "dhcpcd.log")
        lab.procs.append(proc)
        try:
            proc.proc.wait(45)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"dhcpcd did not finish: {proc.output()}") from None
        log = proc.output()
        assert proc.proc.returncode == 0, log
        mine = [a for a in lab.client_addresses() if a in PREFIX]
        assert len(mine) == 1 and mine[0] != SERVER_IP, (lab.client_addresses(), log)
        assert f"adding address {mine[0]}/128" in log
        assert leased(tmp_path) == {mine[0]: "bound"}
        assert f"leased {mine[0]}" in server.output()


def test_dhclient6_rapid_commit_two_message_exchange(tmp_path: Path) -> None:
    with lab6(tmp_path) as lab:
        server = lab.start_server("--no-ra", "--rapid-commit")
        proc, events = run_dhclient(lab, conf_lines="send dhcp6.rapid-commit;\n")
        address = IPv6Address(bound_event(events)["new_ip6_address"])
        assert address in PREFIX
        log = server.output()
        assert "REPLY to" in log and "ADVERTISE" not in log, log
        assert leased(tmp_path) == {address: "bound"}
        proc.stop()


def rdisc6(lab: Lab6, retries: int) -> subprocess.CompletedProcess[str]:
    require_tool("rdisc6")
    return lab.client.run(
        "rdisc6", "-1", "-n", "-r", str(retries), "-w", "1500", lab.cif, check=False, timeout=30
    )


def test_rdisc6_sees_our_ra_with_the_managed_flag(tmp_path: Path) -> None:
    with lab6(tmp_path) as lab:
        lab.start_server()
        res = rdisc6(lab, retries=6)
        assert res.returncode == 0, res.stdout + res.stderr
        fields = {
            k.strip(): v.strip()
            for k, _, v in (line.partition(":") for line in res.stdout.splitlines())
        }
        assert fields["Stateful address conf."] == "Yes"
        assert fields["Stateful other conf."] == "Yes"
        assert fields["Router lifetime"].startswith("0 ")
        assert fields["Prefix"] == str(PREFIX)
        assert fields["On-link"] == "Yes"
        assert fields["Autonomous address conf."] == "No"


def test_no_ra_sends_none(tmp_path: Path) -> None:
    with lab6(tmp_path) as lab:
        lab.start_server("--no-ra")
        res = rdisc6(lab, retries=2)
        assert res.returncode != 0 and "Stateful" not in res.stdout


def solicit(*extra: object, xid: int = 0x4242) -> bytes:
    options = (ClientId(CLIENT_DUID), ElapsedTime(0), *extra)
    return encode(Message(MsgType.SOLICIT, xid, options))  # type: ignore[arg-type]


MALFORMED = [
    b"",
    b"\x01\x00",
    bytes.fromhex("01000001000100200003"),  # client id overruns
    bytes.fromhex("010000010001000a00030001525400c0ffee000300050000000000"),
    bytes.fromhex("0300000100030014" + "00" * 12 + "00050004fd000000"),  # nested
    bytes.fromhex("0c00" + "00" * 40),  # relay-forward: not supported, dropped
    bytes.fromhex("07000001000d00030000ff"),  # a Reply from a "client"
    bytes(range(256)) * 4,
]


def test_malformed_packets_then_a_real_client_is_served(tmp_path: Path) -> None:
    with lab6(tmp_path) as lab:
        server = lab.start_server("--no-ra")
        assert lab.probe(*MALFORMED, wait=1.0) == [], "no answer to malformed packets"
        assert server.proc.poll() is None
        assert "dropped a malformed packet" in server.output()
        _proc, events = run_dhclient(lab)
        address = IPv6Address(bound_event(events)["new_ip6_address"])
        assert address in PREFIX
        assert "Traceback" not in server.output()


def test_proxy_mode_answers_netboot_clients_with_boot_url_only(tmp_path: Path) -> None:
    with lab6(tmp_path) as lab:
        url = f"tftp://[{SERVER_IP}]/ipxe.efi"
        server = lab.start_server("--proxy", "--no-ra", "--boot-url", url)
        firmware = solicit(
            IaNa(7, 0, 0),
            ClientArch((16,)),
            OptionRequest((59, 23)),
            VendorClass(343, (b"HTTPClient:Arch:00016:UNDI:003001",)),
        )
        plain = solicit(IaNa(7, 0, 0), xid=0x4343)
        replies = lab.probe(firmware, plain, wait=2.0)
        assert len(replies) == 1, (replies, server.output())
        (reply,) = replies
        assert reply["type"] == MsgType.ADVERTISE and reply["xid"] == 0x4242
        assert reply["ia_na"] == [] and reply["url"] == url
        assert str(reply["from"]).startswith("fe80::"), "replies come from our link-local"
        assert reply["vendor"] is None, "tftp URL: no HTTPClient echo"
        assert not (tmp_path / "leases6.sqlite").exists() or leased(tmp_path) == {}


def test_proxy_mode_pxe_firmware_exchange_with_the_boot_service(tmp_path: Path) -> None:
    """What EDK2 PXEv6 does beside another DHCPv6 server: a Solicit, then (after getting
    its address elsewhere) a Request with our server id to [URL host]:4011 from 4011."""
    with lab6(tmp_path) as lab:
        url = f"tftp://[{SERVER_IP}]/ipxe.efi"
        lab.start_server("--proxy", "--no-ra", "--boot-url", url)
        wait_udp_bound(4011, timeout=15, netns=lab.server.name)
        pxe = (
            ClientArch((7,)),
            OptionRequest((59, 60)),
            VendorClass(343, (b"PXEClient:Arch:00007:UNDI:003016",)),
        )
        (adv,) = lab.probe(solicit(IaNa(7, 0, 0), *pxe), wait=2.0)
        assert adv["type"] == MsgType.ADVERTISE and adv["url"] == url
        assert adv["vendor"] == ["PXEClient"], "EDK2 takes it for a proxy offer only then"
        server_id = bytes.fromhex(str(adv["server_id"]))
        # The address the site's own DHCPv6 server would have given the firmware.
        lab.client.run("ip", "addr", "add", "fd00:77::99/64", "dev", lab.cif, "nodad")
        request = encode(
            Message(
                MsgType.REQUEST,
                0x5151,
                (ClientId(CLIENT_DUID), ServerId(server_id), ElapsedTime(0), *pxe),
            )
        )
        (reply,) = lab.probe(request, to=str(SERVER_IP), port=4011, sport=4011, wait=2.0)
        assert reply["type"] == MsgType.REPLY and reply["xid"] == 0x5151
        assert reply["url"] == url and reply["ia_na"] == [] and reply["port"] == 4011


def test_cli_help_usage_and_start_errors(tmp_path: Path) -> None:
    py = [str(VENV_BIN / "python"), "-m", "ptftpd.dhcp6"]
    ok = subprocess.run([*py, "--help"], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and "--boot-url" in ok.stdout and "--proxy" in ok.stdout
    usage = subprocess.run([*py, "eth0"], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 2 and "--leases" in usage.stderr
    bad = subprocess.run(
        [*py, "nosuchif0", "--leases", str(tmp_path / "l.sqlite")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        "python -m ptftpd.dhcp6: error: no such interface or address: nosuchif0"
    ]


def test_second_server_on_the_interface_is_one_line_port_in_use(tmp_path: Path) -> None:
    """A full server never shares port 547: the second one on the link says so and exits."""
    with lab6(tmp_path) as lab:
        first = lab.start_server("--no-ra")
        argv = [str(VENV_BIN / "python"), "-m", "ptftpd.dhcp6", lab.sif, "--no-ra"]
        second = lab.server.run(
            *argv, "--leases", str(tmp_path / "second.sqlite"), check=False, timeout=30
        )
        assert second.returncode == 1
        assert second.stderr.splitlines() == [
            f"python -m ptftpd.dhcp6: error: UDP port 547 on {lab.sif} is already in use"
        ]
        assert first.proc.poll() is None
