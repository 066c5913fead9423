"""Issue 24: the habits of tftpd-hpa and dnsmasq users: -u USER, -c, -s, -l; lease times
written as 30m, 12h, 7d wherever a lease time is given (flag, file, [[subnet]], DHCPv6)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ptftpd.cli import dhcp_family
from ptftpd.cli.dhcpd import DHCPD
from ptftpd.dhcp.engine import DhcpConfig
from ptftpd.dhcp6.__main__ import parser as dhcp6_parser
from support import script


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def config_from(argv: list[str]) -> DhcpConfig:
    read = dhcp_family.read_settings(DHCPD, argv)
    return dhcp_family.build(DHCPD, read.effective(), read.args)


def test_tftpd_hpa_flags_are_accepted(tmp_path: Path) -> None:
    res = run(
        script("ptftpd"), "-u", "nobody", "-c", "-s", "-l", "--print-config", "lo", str(tmp_path)
    )
    assert res.returncode == 0, res.stderr
    assert 'user = "nobody"' in res.stdout and "create = true" in res.stdout
    # -s and -l change nothing (always so), so a settings file never holds them
    assert "secure" not in res.stdout and "standalone" not in res.stdout
    helptext = run(script("ptftpd"), "--help").stdout
    assert (
        "-s, --secure" in helptext and "-l, --standalone" in helptext and "-c, --create" in helptext
    )
    for tool in ("dhcpd", "bootpd", "pxed"):
        assert "-u USER, --user USER" in run(script(tool), "--help").stdout


@pytest.mark.parametrize(
    ("text", "seconds"), [("600", 600), ("30m", 1800), ("12h", 43200), ("7d", 604800)]
)
def test_lease_time_units_on_the_flag_and_in_the_file(
    tmp_path: Path, text: str, seconds: int
) -> None:
    assert config_from(["--lease-time", text, "127.0.0.1", "x.0"]).lease_time == seconds
    toml = tmp_path / "dhcpd.toml"
    toml.write_text(
        f'lease-time = "{text}"\n[[subnet]]\nnetwork = "10.1.7.0/24"\n'
        f'range = ["10.1.7.100", "10.1.7.200"]\nlease-time = "{text}"\n'
    )
    config = config_from(["--config", str(toml), "127.0.0.1", "x.0"])
    assert config.lease_time == seconds
    assert config.subnets[0].lease_time == seconds
    assert (
        dhcp6_parser().parse_args(["--lease-time", text, "--leases", "l.sqlite", "lo"]).lease_time
        == seconds
    )


@pytest.mark.parametrize("text", ["12x", "h", "5q", "1.5h"])
def test_a_bad_lease_time_is_one_usage_line(text: str) -> None:
    res = run(script("dhcpd"), "--lease-time", text, "--print-config", "lo", "x.0")
    assert res.returncode == 2, res
    assert res.stderr.count("\n") == 1 and "30m, 12h, 7d" in res.stderr
