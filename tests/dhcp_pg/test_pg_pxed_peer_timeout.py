"""pxed --ipv6 on PostgreSQL leases: the `peer-timeout` of its settings file (the field
dhcpd takes, issue 25) reaches its DHCPv6 side too, not only DHCPv4: the DHCPv6
heartbeat beats every third of it and a silent DHCPv6 peer is dropped after it.

A real pxed in the PXE tests' namespace (tests/pxe/pxe_harness.py: a bridge with
10.78.0.1/24 and fd78::1/64), its leases in the throw-away cluster."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_pg_dhcp6_failover import assert_dhcp6_peer_timeout

from support import script, wait_udp_bound
from support.postgres import PgCluster

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pxe"))
from pxe_harness import boot_network

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]


def test_pxed_ipv6_takes_the_peer_timeout_of_its_file(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    url = pg_cluster.uri(pg_cluster.create_database())
    root = tmp_path / "root"
    root.mkdir()
    (root / "ipxe.efi").write_bytes(b"x")
    settings = tmp_path / "pxed.toml"
    settings.write_text("[pxed]\npeer-timeout = 1.2\n")
    with boot_network(tmp_path) as net:
        argv = [script("pxed"), "-D", "--ipv6", "--no-ra", "--config", str(settings)]
        argv += ["--leases", url, net.bridge, str(root), "ipxe.efi"]
        pxed = net.start(argv, "pxed")
        wait_udp_bound(547, timeout=15, proc=pxed.proc, netns=net.ns.name)
        assert_dhcp6_peer_timeout(url, pxed)
        assert pxed.stop() == 0
        assert "Traceback" not in pxed.output()
