"""dhcpd/bootpd settings: TOML file, flags overriding it, and one-line errors; the
settings model (`ptftpd.dhcp.server_settings`) on a plain mapping, without argparse."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from ptftpd.cli import dhcp_family
from ptftpd.cli.dhcpd import DHCPD
from ptftpd.dhcp.engine import DhcpConfig
from ptftpd.dhcp.options import Opt
from ptftpd.dhcp.server_settings import dhcp_config, lease_location
from ptftpd.dhcp.settings import ConfigError, parse_host


def config_from(argv: list[str]) -> DhcpConfig:
    """What dhcpd would serve for `argv` (defaults, then --config, then flags)."""
    read = dhcp_family.read_settings(DHCPD, argv)
    return dhcp_family.build(DHCPD, read.effective(), read.args)


def test_toml_settings_and_flag_override(tmp_path: Path) -> None:
    toml = tmp_path / "dhcpd.toml"
    toml.write_text(
        """
range = ["127.0.0.10", "127.0.0.20"]
exclude = ["127.0.0.15"]
lease-time = 120
leases = "%s"
gateway = "127.0.0.254"
tftp-server = "127.0.0.9"
dns = ["127.0.0.53"]
domain = "lab.test"
all = true
reply-delay = 0.5
pxe-vendor-class = ["HW-Client"]
ipxe-bootfile = "boot.ipxe"
lease-sync = "full"
hosts = ["52:54:00:12:34:56=127.0.0.30,build01", {mac = "52-54-00-AB-CD-EF", ip = "127.0.0.31"}]

[options]
ntp-servers = ["127.0.0.123"]
252 = "68747470"
"""
        % (tmp_path / "l.sqlite")
    )
    cfg = config_from(["--config", str(toml), "lo", "pxelinux.0"])
    assert isinstance(cfg, DhcpConfig)
    assert cfg.interface == "lo" and cfg.server_ip == IPv4Address("127.0.0.1")
    assert (cfg.range_start, cfg.range_end) == (
        IPv4Address("127.0.0.10"),
        IPv4Address("127.0.0.20"),
    )
    assert cfg.lease_time == 120 and cfg.leases_path == tmp_path / "l.sqlite"
    assert cfg.routers == (IPv4Address("127.0.0.254"),)
    assert cfg.next_server == IPv4Address("127.0.0.9")
    assert cfg.dns == (IPv4Address("127.0.0.53"),)
    assert cfg.domain_name == "lab.test" and cfg.answer_all and cfg.reply_delay == 0.5
    assert cfg.pxe_vendor_prefixes == ("PXEClient", "HW-Client")
    assert cfg.ipxe_bootfile == "boot.ipxe" and cfg.lease_sync == "full"
    assert IPv4Address("127.0.0.15") in cfg.exclude
    assert [(h.mac, str(h.address), h.hostname) for h in cfg.static_hosts] == [
        ("52:54:00:12:34:56", "127.0.0.30", "build01"),
        ("52:54:00:ab:cd:ef", "127.0.0.31", None),
    ]
    assert cfg.extra_options[Opt.NTP_SERVERS] == IPv4Address("127.0.0.123").packed
    assert cfg.extra_options[252] == b"http"

    # Flags win over the file.
    cfg2 = config_from(
        [
            "--config",
            str(toml),
            "--lease-time",
            "999",
            "-n",
            "127.0.0.99",
            "-g",
            "127.0.0.1",
            "--range",
            "127.0.0.40",
            "127.0.0.41",
            "--host",
            "02:00:00:00:00:01=127.0.0.50",
            "lo",
            "other.efi",
        ]
    )
    assert isinstance(cfg2, DhcpConfig)
    assert cfg2.lease_time == 999 and cfg2.dns == (IPv4Address("127.0.0.99"),)
    assert cfg2.routers == (IPv4Address("127.0.0.1"),) and cfg2.bootfile == "other.efi"
    assert cfg2.range_start == IPv4Address("127.0.0.40")
    assert len(cfg2.static_hosts) == 3


def test_defaults() -> None:
    cfg = config_from(["lo", "pxelinux.0"])
    assert isinstance(cfg, DhcpConfig)
    assert not cfg.answer_all and cfg.lease_time == 3600 and cfg.routers is None
    assert cfg.leases_path == Path("/var/lib/ptftpd/dhcpd-lo.sqlite")
    assert cfg.port == 67 and cfg.client_port == 68


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("bogus = 1", "unknown key"),
        ('range = ["127.0.0.9"]', "range"),
        ('range = ["127.0.0.9", "127.0.0.2"]', "after"),
        ("[options]\nnope = 1", "unknown option"),
        ('[options]\nrouter = "x"', "router"),
        ('hosts = ["zz:00:00:00:00:01=127.0.0.5"]', "MAC"),
        ('hosts = ["02:00:00:00:00:01=10.0.0.5"]', "not on"),
        ("lease-time = 0", "lease-time"),
        ('lease-sync = "sometimes"', "lease-sync"),
        ('authoritative = "yes"', "authoritative"),
        ('[[subnet]]\nrange = ["10.7.0.1", "10.7.0.9"]', "network"),
        ('[[subnet]]\nnetwork = "10.7.0.0/33"', "bad network"),
        ('[[subnet]]\nnetwork = "127.0.0.0/24"', "overlaps"),
        ('[[subnet]]\nnetwork = "10.7.0.0/24"\n[[subnet]]\nnetwork = "10.7.0.0/16"', "overlaps"),
        ('[[subnet]]\nnetwork = "10.7.0.0/24"\nrange = ["10.8.0.1", "10.8.0.2"]', "not inside"),
        ('[[subnet]]\nnetwork = "10.7.0.0/24"\nhosts = ["02:00:00:00:00:01=10.8.0.5"]', "not on"),
        (
            '[[subnet]]\nnetwork = "10.7.0.0/24"\nrouter = "10.7.0.1"',
            r"bad.toml:3: subnet.router: unknown key of a \[\[subnet\]\] \(did you mean gateway",
        ),
        ('[[subnet]]\nnetwork = "10.7.0.0/24"\nlease-time = -1', "lease-time"),
        ('[[subnet]]\nnetwork = "10.7.0.0/24"\n[subnet.options]\nrouter = "x"', "router"),
    ],
)
def test_bad_config_is_a_config_error(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ConfigError, match=message):
        config_from(["--config", str(path), "lo", "pxelinux.0"])


def test_parse_host() -> None:
    host = parse_host("AA-BB-CC-DD-EE-FF=10.0.0.5,pc")
    assert host.mac == "aa:bb:cc:dd:ee:ff" and host.hostname == "pc"
    with pytest.raises(ConfigError):
        parse_host("aa:bb=10.0.0.5")
    with pytest.raises(ConfigError):
        parse_host("aa:bb:cc:dd:ee:ff=10.0.0.500")


def test_subnet_tables(tmp_path: Path) -> None:
    toml = tmp_path / "dhcpd.toml"
    toml.write_text(
        """
authoritative = true

[[subnet]]
network = "10.7.0.0/24"
range = ["10.7.0.100", "10.7.0.200"]
gateway = "10.7.0.1"
dns = ["10.0.0.53", "10.0.0.54"]
domain = "rack7.lab"
bootfile = "rack7/pxelinux.0"
tftp-server = "10.7.0.5"
ipxe-bootfile = "rack7.ipxe"
lease-time = 600
hosts = ["52:54:00:aa:bb:cc=10.7.0.10,r7n10"]
exclude = ["10.7.0.150"]
[subnet.options]
ntp-servers = ["10.7.0.1"]

[[subnet]]
network = "10.8.0.0/22"
"""
    )
    cfg = config_from(["--config", str(toml), "lo", "pxelinux.0"])
    assert isinstance(cfg, DhcpConfig) and cfg.authoritative
    rack7, rack8 = cfg.subnets
    assert str(rack7.network) == "10.7.0.0/24"
    assert (str(rack7.range_start), str(rack7.range_end)) == ("10.7.0.100", "10.7.0.200")
    assert rack7.routers == (IPv4Address("10.7.0.1"),)
    assert rack7.dns == (IPv4Address("10.0.0.53"), IPv4Address("10.0.0.54"))
    assert rack7.domain_name == "rack7.lab" and rack7.bootfile == "rack7/pxelinux.0"
    assert rack7.next_server == IPv4Address("10.7.0.5") and rack7.ipxe_bootfile == "rack7.ipxe"
    assert rack7.lease_time == 600 and rack7.exclude == (IPv4Address("10.7.0.150"),)
    assert [(h.mac, str(h.address), h.hostname) for h in rack7.static_hosts] == [
        ("52:54:00:aa:bb:cc", "10.7.0.10", "r7n10")
    ]
    assert rack7.extra_options[Opt.NTP_SERVERS] == IPv4Address("10.7.0.1").packed
    assert str(rack8.network) == "10.8.0.0/22" and rack8.routers == ()
    assert rack8.bootfile is None and rack8.lease_time is None
    # --authoritative on the command line, and off by default.
    assert config_from(["--authoritative", "lo", "x"]).authoritative
    assert not config_from(["lo", "x"]).authoritative


@pytest.mark.parametrize(
    ("value", "path", "url"),
    [
        ("/tmp/x.sqlite", Path("/tmp/x.sqlite"), None),
        ("postgresql://dhcp@db.lab/leases", None, "postgresql://dhcp@db.lab/leases"),
        ("postgres://dhcp@db.lab:5433/leases", None, "postgres://dhcp@db.lab:5433/leases"),
        # pxed parses --leases as a Path, which folds the URI's `//`: put it back.
        (Path("postgresql://dhcp@db.lab/leases"), None, "postgresql://dhcp@db.lab/leases"),
        (
            Path("postgresql:///leases?host=/run/postgresql"),
            None,
            "postgresql:///leases?host=/run/postgresql",
        ),
        (
            Path("postgresql://u@/t?host=%2Ftmp%2Fpg&port=5"),
            None,
            "postgresql://u@/t?host=%2Ftmp%2Fpg&port=5",
        ),
    ],
)
def test_lease_location(value: object, path: Path | None, url: str | None) -> None:
    assert lease_location(value, "dhcpd", "eth0") == (path, url)


def test_lease_location_refuses_a_uri_without_authority() -> None:
    with pytest.raises(ConfigError, match="postgresql://USER@HOST/DB"):
        lease_location("postgresql:leases", "dhcpd", "eth0")
    assert lease_location(None, "dhcpd", "eth0")[0] == Path("/var/lib/ptftpd/dhcpd-eth0.sqlite")


def test_leases_uri_from_toml_and_flag(tmp_path: Path) -> None:
    toml = tmp_path / "dhcpd.toml"
    toml.write_text('leases = "postgresql://dhcp@db.lab/leases"\n')
    config = config_from(["--config", str(toml), "127.0.0.1", "pxelinux.0"])
    assert (config.leases_url, config.leases_path) == ("postgresql://dhcp@db.lab/leases", None)
    config = config_from(
        ["--config", str(toml), "--leases", str(tmp_path / "l.sqlite"), "127.0.0.1", "x"]
    )
    assert (config.leases_url, config.leases_path) == (None, tmp_path / "l.sqlite")


def test_the_model_takes_one_mapping_without_argparse() -> None:
    """The settings model is the mapping --print-config prints: no Namespace needed."""
    settings = {
        "range": ["127.0.0.10", "127.0.0.20"],
        "hosts": ["52:54:00:12:34:56=127.0.0.30"],
        "dns": "127.0.0.53",
        "all": True,
        "lease-time": 60,
        "leases": "postgresql://dhcp@db.lab/leases",
    }
    cfg = dhcp_config(settings, "lo", "pxelinux.0", "dhcpd")
    assert cfg.answer_all and cfg.lease_time == 60 and cfg.bootfile == "pxelinux.0"
    assert cfg.dns == (IPv4Address("127.0.0.53"),) and len(cfg.static_hosts) == 1
    assert cfg.leases_url == "postgresql://dhcp@db.lab/leases"
    assert (cfg.port, cfg.client_port, cfg.reply_delay) == (67, 68, 0.0)
    with pytest.raises(ConfigError, match="all: expected true or false"):
        dhcp_config({**settings, "all": "yes"}, "lo", "x", "dhcpd")


def test_file_hosts_and_flag_hosts_add_up_but_flags_replace_other_lists(tmp_path: Path) -> None:
    toml = tmp_path / "dhcpd.toml"
    toml.write_text('hosts = ["02:00:00:00:00:01=127.0.0.50"]\ndns = ["127.0.0.1", "127.0.0.2"]\n')
    flags = ["--host", "02:00:00:00:00:02=127.0.0.51", "-n", "127.0.0.3"]
    cfg = config_from(["--config", str(toml), *flags, "lo", "x"])
    assert [h.mac for h in cfg.static_hosts] == ["02:00:00:00:00:01", "02:00:00:00:00:02"]
    assert cfg.dns == (IPv4Address("127.0.0.3"),)
