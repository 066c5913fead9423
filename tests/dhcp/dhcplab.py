"""A small lab for DHCP tests: a server namespace with a bridge and N client namespaces,
each on its own veth (so each client has its own MAC), plus wrappers for dhcpd,
udhcpc and dhclient that are stopped by PID and whose every wait is bounded.

All addresses exist only inside the namespaces created here.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from support import (
    VENV_BIN,
    Netns,
    Process,
    add_veth,
    require_root,
    require_tool,
    script,
    wait_udp_bound,
)

HERE = Path(__file__).resolve().parent
SERVER_IP = "10.77.0.1"
PREFIX = 24


def wait_for(pred: Callable[[], object], timeout: float, what: str, step: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Lab:
    server: Netns
    server_if: str
    clients: list[tuple[Netns, str]]
    tmp: Path
    procs: list[Process] = field(default_factory=list)
    extra: list[Netns] = field(default_factory=list)

    def dhcpd(
        self,
        *args: str,
        tool: str = "dhcpd",
        leases: Path | None = None,
        bootfile: str = "pxelinux.0",
        name: str = "dhcpd",
        iface: str | None = None,
        netns: Netns | None = None,
        lease_url: str | None = None,
    ) -> Process:
        """Start a server (in `netns`, default the lab's server namespace) with a
        lease file of its own, or the shared database `lease_url`."""
        where = netns or self.server
        lease_file = lease_url or str(leases or self.tmp / f"{name}.sqlite")
        argv = where.popen_argv(
            [
                script(tool),
                "-D",
                "--leases",
                lease_file,
                *args,
                iface or self.server_if,
                bootfile,
            ]
        )
        proc = Process(argv, self.tmp / f"{name}.log")
        self.procs.append(proc)
        wait_udp_bound(67, timeout=15, proc=proc.proc, netns=where.name)
        return proc

    def add_server(self, address: str) -> tuple[Netns, str]:
        """A second server namespace on the same segment (a veth into the bridge) with
        `address`, for several DHCP servers sharing one wire; removed with the lab."""
        ns = Netns("dhs")
        inner = "vi" + ns.name[-8:]
        outer = "vo" + ns.name[-8:]
        self.extra.append(ns)
        add_veth(self.server, outer, ns, inner)
        self.server.run("ip", "link", "set", outer, "master", self.server_if)
        self.server.run("ip", "link", "set", outer, "up")
        ns.run("ip", "addr", "add", f"{address}/{PREFIX}", "dev", inner)
        ns.run("ip", "link", "set", inner, "up")
        wait_for(
            lambda: "forwarding" in self.server.run("bridge", "link", "show", "dev", outer).stdout,
            10,
            "the second server's bridge port to forward",
        )
        return ns, inner

    def client_mac(self, client: int) -> str:
        """The MAC address of client `client`'s interface (for `--host MAC=...`)."""
        ns, iface = self.clients[client]
        return ns.run("cat", f"/sys/class/net/{iface}/address").stdout.strip()

    def probe(self, client: int, *args: str, timeout: float = 20) -> list[dict[str, object]]:
        ns = self.clients[client][0]
        res = ns.run(
            str(VENV_BIN / "python"),
            str(HERE / "dhcpprobe.py"),
            *args,
            check=False,
            timeout=timeout,
        )
        return [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.stop(signal.SIGTERM, timeout=5)


@contextmanager
def lab(tmp: Path, n_clients: int = 1) -> Iterator[Lab]:
    require_root()
    require_tool("ip")
    require_tool("bridge")
    server = Netns("dhs")
    clients: list[tuple[Netns, str]] = []
    the_lab: Lab | None = None
    try:
        br = "br" + server.name[-8:]
        server.run("ip", "link", "add", br, "type", "bridge")
        server.run("ip", "addr", "add", f"{SERVER_IP}/{PREFIX}", "dev", br)
        server.run("ip", "link", "set", br, "up")
        for i in range(n_clients):
            ns = Netns("dhc")
            clients.append((ns, "vc" + ns.name[-8:]))
            sif = f"vs{i}" + ns.name[-8:]
            add_veth(server, sif, ns, clients[-1][1])
            server.run("ip", "link", "set", sif, "master", br)
            server.run("ip", "link", "set", sif, "up")
            ns.run("ip", "link", "set", clients[-1][1], "up")
        # A bridge port needs a moment to forward; wait on its state, bounded.
        wait_for(
            lambda: (
                server.run("bridge", "link", "show", check=False).stdout.count("forwarding")
                >= n_clients
            ),
            10,
            "bridge ports to forward",
        )
        the_lab = Lab(server, br, clients, tmp)
        yield the_lab
    finally:
        if the_lab is not None:
            the_lab.stop_all()
            for ns in the_lab.extra:
                ns.delete()
        for ns, _ in clients:
            ns.delete()
        server.delete()


class Udhcpc:
    """busybox udhcpc in a client namespace; its script appends each event as JSON."""

    def __init__(self, lab: Lab, client: int, *args: str, name: str = "udhcpc") -> None:
        require_tool("udhcpc")
        self.out = lab.tmp / f"{name}.events"
        self.out.unlink(missing_ok=True)
        hook = lab.tmp / f"{name}.sh"
        hook.write_text(
            "#!/bin/sh\n"
            f'{sys.executable} -c "import json,os,sys; print(json.dumps('
            "{'reason': sys.argv[1], **{k: v for k, v in os.environ.items() "
            "if k in ('ip','subnet','router','boot_file','siaddr','serverid','lease',"
            "'dns','tftp','hostname','opt43','vendor','sname')}}))\" \"$1\" >> "
            f"{self.out}\n"
            'if [ "$1" = bound ] || [ "$1" = renew ]; then\n'
            '  ip addr flush dev "$interface"; ip addr add "$ip/$mask" dev "$interface"\n'
            'elif [ "$1" = deconfig ]; then ip addr flush dev "$interface"; fi\n'
        )
        hook.chmod(0o755)
        ns, iface = lab.clients[client]
        argv = ns.popen_argv(
            [
                "udhcpc",
                "-f",
                "-i",
                iface,
                "-s",
                str(hook),
                "-t",
                "4",
                "-T",
                "1",
                "-A",
                "1",
                "-O",
                "bootfile",
                "-O",
                "tftp",
                *args,
            ]
        )
        self.proc = Process(argv, lab.tmp / f"{name}.log")
        lab.procs.append(self.proc)

    def events(self) -> list[dict[str, str]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line]

    def wait_event(self, reason: str, count: int = 1, timeout: float = 20) -> dict[str, str]:
        def found() -> list[dict[str, str]]:
            hits = [e for e in self.events() if e["reason"] == reason]
            return hits if len(hits) >= count else []

        hits = wait_for(found, timeout, f"udhcpc event {reason} x{count}: {self.events()}")
        assert isinstance(hits, list)
        return dict(hits[-1])

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)


class Dhclient:
    """ISC dhclient in the foreground with its own config, lease and pid files."""

    def __init__(
        self,
        lab: Lab,
        client: int,
        vendor: str | None = None,
        name: str = "dhclient",
        extra_conf: str = "",
    ) -> None:
        require_tool("dhclient")
        self.lab, self.client, self.name = lab, client, name
        self.out = lab.tmp / f"{name}.events"
        self.lease_file = lab.tmp / f"{name}.leases"
        self.hook = lab.tmp / f"{name}.sh"
        self.conf = lab.tmp / f"{name}.conf"
        self.hook.write_text(
            "#!/bin/sh\n"
            f'{sys.executable} -c "import json,os; print(json.dumps('
            "{k: v for k, v in os.environ.items() if k == 'reason' or k.startswith('new_')}))\""
            f" >> {self.out}\n"
            'case "$reason" in BOUND|RENEW|REBIND|REBOOT)\n'
            '  ip addr flush dev "$interface"\n'
            '  ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface";;\n'
            '  EXPIRE|FAIL|RELEASE|STOP) ip addr flush dev "$interface";;\n'
            "esac\n"
        )
        self.hook.chmod(0o755)
        lines = [
            "request subnet-mask, broadcast-address, routers, domain-name-servers, host-name,"
            " tftp-server-name, bootfile-name, vendor-class-identifier;",
            "timeout 20;",
            "retry 1;",
            "initial-interval 1;",
            "backoff-cutoff 1;",
        ]
        if vendor:
            lines.append(f'send vendor-class-identifier "{vendor}";')
        self.conf.write_text("\n".join(lines) + "\n" + extra_conf)
        self.proc: Process | None = None

    def argv(self, *extra: str) -> list[str]:
        ns, iface = self.lab.clients[self.client]
        return ns.popen_argv(
            [
                "dhclient",
                "-4",
                "-cf",
                str(self.conf),
                "-lf",
                str(self.lease_file),
                "-pf",
                str(self.lab.tmp / f"{self.name}.pid"),
                "-sf",
                str(self.hook),
                *extra,
                iface,
            ]
        )

    def start(self) -> None:
        self.proc = Process(self.argv("-d", "-v"), self.lab.tmp / f"{self.name}.log")
        self.lab.procs.append(self.proc)

    def release(self) -> None:
        subprocess.run(self.argv("-r"), timeout=20, capture_output=True)

    def events(self) -> list[dict[str, str]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line]

    def wait_event(
        self, reasons: tuple[str, ...], count: int = 1, timeout: float = 30
    ) -> dict[str, str]:
        def found() -> list[dict[str, str]]:
            hits = [e for e in self.events() if e.get("reason") in reasons]
            return hits if len(hits) >= count else []

        hits = wait_for(found, timeout, f"dhclient {reasons} x{count}: {self.events()}")
        assert isinstance(hits, list)
        return dict(hits[-1])

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(signal.SIGTERM, timeout=5)


def scrape_metrics(the_lab: Lab, port: int, prefix: str = "ptftpd_") -> dict[str, float]:
    """The server's /metrics (curl in the server's namespace) as {sample: value}."""
    curl = require_tool("curl")
    out = the_lab.server.run(curl, "-sf", f"http://127.0.0.1:{port}/metrics").stdout
    pattern = rf"^({re.escape(prefix)}\S+) (\S+)$"
    return {k: float(v) for k, v in re.findall(pattern, out, re.M)}
