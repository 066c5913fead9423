"""Every bad setting is one line and a usage exit (2): TOML values of the wrong type for
every key of every tool (a property test, keys taken from the parsers; in the tool's own
file or in its [TOOL] table of a shared file), unknown keys naming FILE:LINE and listing
the valid ones, other URL schemes for ptftp, usage mistakes
of every server, and IFACE arguments dhcpd cannot serve."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import math
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptftpd.cli import ptftpd as ptftpd_cli
from ptftpd.service import pxe_pool, runtime
from support import Netns, require_root, script

TOOLS = ("ptftpd", "dhcpd", "bootpd", "pxed", "ptftp")

# What each key accepts, as this test's own specification (kinds of TOML values): the
# DHCP keys (dhcpd, bootpd, pxed), ptftpd's and pxed's own.
ACCEPTS = {
    "range": {"pair_str"},
    "lease-time": {"int"},
    "leases": {"str"},
    "lease-sync": {"str"},
    "gateway": {"str"},
    "tftp-server": {"str"},
    "dns": {"str", "list_str", "pair_str", "empty_list"},
    "exclude": {"str", "list_str", "pair_str", "empty_list"},
    "domain": {"str"},
    "ipxe-bootfile": {"str"},
    "all": {"bool"},
    "authoritative": {"bool"},
    "hosts": {"list_str", "pair_str", "list_table", "empty_list"},
    "options": {"table"},
    "reply-delay": {"int", "float"},
    "peer-timeout": {"int", "float"},
    "pxe-vendor-class": {"list_str", "pair_str", "empty_list"},
    "port": {"int"},
    "subnet": {"list_table", "empty_list"},
}
KEY_KINDS = {
    ("read-only", "create", "verbose", "debug", "rfc1350", "proxy", "ipv6", "ra"): {"bool"},
    ("secure-boot",): {"bool"},
    ("http-max-connections", "http-rate-limit", "http-total-rate-limit"): {"int"},
    ("remote-cache-size", "remote-max-file"): {"int"},
    ("blksize-max", "windowsize-max", "retries", "max-sessions", "workers"): {"int"},
    ("tftp-port", "http-port"): {"int"},
    ("boot-records",): {"int"},
    ("boot-history",): {"int"},
    ("api", "api-token"): {"str"},
    ("otlp", "boot-api"): {"str"},
    ("boot-api-default",): {"bool"},
    ("timeout", "drain", "boot-idle", "boot-api-deadline", "remote-timeout"): {"int", "float"},
    ("map-file", "port-range", "umask", "user", "group", "metrics", "root"): {"str"},
    ("log-target",): {"str"},
    ("bios-bootfile", "efi32-bootfile", "efi64-bootfile", "arm64-bootfile"): {"str"},
}
OTHER_ACCEPTS = {key: kinds for keys, kinds in KEY_KINDS.items() for key in keys}
PTFTPD_ACCEPTS = {**OTHER_ACCEPTS, "port": {"int"}}
PTFTP_ACCEPTS = {
    **{key: {"int"} for key in ("port", "blksize", "windowsize", "retries")},
    "timeout": {"int", "float"},
    "mode": {"str"},
    **{key: {"bool"} for key in ("tsize", "rfc1350", "verbose", "debug", "quiet", "force")},
}
SPECS = {
    "ptftpd": PTFTPD_ACCEPTS,
    "ptftp": PTFTP_ACCEPTS,
    **{tool: {**OTHER_ACCEPTS, **ACCEPTS} for tool in ("dhcpd", "bootpd")},
    # pxed's inventory (issue 22): [[machine]] tables and [profile.NAME] tables
    "pxed": {
        **OTHER_ACCEPTS,
        **ACCEPTS,
        "machine": {"list_table", "empty_list"},
        "profile": {"table"},
    },
}

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)
keys = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)
table = st.dictionaries(keys, st.integers(), max_size=3)
KINDS = {
    "str": text,
    "int": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(allow_nan=False, allow_infinity=False),
    "bool": st.booleans(),
    "list_str": st.lists(text, min_size=3, max_size=4),
    "pair_str": st.lists(text, min_size=2, max_size=2),
    "list_int": st.lists(st.integers(-1000, 1000), min_size=1, max_size=4),
    "table": table,
    "list_table": st.lists(table, min_size=1, max_size=2),
    "empty_list": st.just([]),
}
# One value of each kind, to ask a key's check which kinds it takes.
SAMPLES = {
    "str": "x",
    "int": 7,
    "float": 1.5,
    "bool": True,
    "list_str": ["a", "b", "c"],
    "pair_str": ["a", "b"],
    "list_int": [1],
    "table": {"a": 1},
    "list_table": [{"a": 1}],
    "empty_list": [],
}


def tool_checks(tool: str) -> dict[str, Callable[[object], bool]]:
    """Every TOML key of `tool` and its type check, from the tool's table of fields (so
    a new field is a new key here without touching this test)."""
    table = importlib.import_module(f"ptftpd.cli.{tool}").FIELDS
    return {field.key: field.expected()[0] for field in table if field.in_file}


CHECKS = {tool: tool_checks(tool) for tool in TOOLS}


def accepted(check: Callable[[object], bool]) -> set[str]:
    return {kind for kind, sample in SAMPLES.items() if check(sample)}


def toml_value(value: object) -> str:
    """A TOML rendering of the small set of values generated here."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        assert math.isfinite(value)
        return repr(value)
    if isinstance(value, (int, str)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"


@st.composite
def wrong_setting(draw: st.DrawFn) -> tuple[str, str, object, bool]:
    """A tool, one of its keys, a value of a kind the key does not take, and whether
    the file is shared (the key in the tool's [TOOL] table) or the tool's own."""
    tool = draw(st.sampled_from(TOOLS))
    checks = CHECKS[tool]
    key = draw(st.sampled_from(sorted(checks)))
    kind = draw(st.sampled_from(sorted(set(KINDS) - accepted(checks[key]))))
    return tool, key, draw(KINDS[kind]), draw(st.booleans())


def settings_text(tool: str, key: str, value: object, shared: bool) -> tuple[str, int]:
    """A file setting `key` for `tool` and the line the key is on: alone in the tool's
    own file, or in its table of a shared file, after another tool's table holding the
    same key (with a value of the right kind, or of the same wrong one) and before
    another's."""
    line = f"{key} = {toml_value(value)}\n"
    if not shared:
        return line, 1
    others = [t for t in TOOLS if t != tool]
    before = f"[{others[0]}]\n{line}# not {tool}'s\n\n"
    return f"# shared\n{before}[{tool}]\n{line}[{others[1]}]\n{line}", 7


def is_setting_error(tool: str, err: str) -> bool:
    """The one style of a bad setting: one line, ``TOOL: WHERE: key: what (try --help)``."""
    return err.count("\n") == 1 and err.startswith(f"{tool}: ") and err.endswith(" (try --help)\n")


def run_main(
    tool: str, config_text: str | bytes, flags: list[str] | None = None
) -> tuple[int, str]:
    """`tool`'s main on a config file (and `flags`), in this process: its exit status and
    standard error; it must never reach serving."""
    work = Path(tempfile.mkdtemp(prefix="ptftpd-bad-"))
    (work / "pxelinux.0").write_bytes(b"boot")
    path = work / "settings.toml"
    if isinstance(config_text, str):
        config_text = config_text.encode()
    path.write_bytes(config_text)
    where = {
        "ptftpd": ["127.0.0.1", str(work)],
        "pxed": ["127.0.0.1", str(work), "pxelinux.0"],
        "ptftp": ["--print-config"],  # never a transfer, never interactive
    }.get(tool, ["127.0.0.1", "pxelinux.0"])
    err = io.StringIO()
    code: object = None
    never = mock.Mock(side_effect=AssertionError("reached serving"))
    try:
        with (
            mock.patch.object(runtime, "run", never),
            mock.patch.object(ptftpd_cli.tftp_pool, "run", never),
            mock.patch.object(pxe_pool, "run", never),
            contextlib.redirect_stderr(err),
        ):
            try:
                code = importlib.import_module(f"ptftpd.cli.{tool}").main(
                    ["--config", str(path), *(flags or []), *where]
                )
            except SystemExit as exc:
                code = exc.code
    finally:
        for item in work.iterdir():
            item.unlink()
        work.rmdir()
    assert isinstance(code, int), f"no exit for {tool} {config_text!r}"
    return code, err.getvalue()


def run_dhcpd(config_text: str) -> tuple[int, str]:
    return run_main("dhcpd", config_text)


@pytest.mark.parametrize("tool", TOOLS)
def test_the_key_checks_take_what_the_specification_says(tool: str) -> None:
    spec = SPECS[tool]
    checks = CHECKS[tool]
    assert {key: accepted(check) for key, check in checks.items()} == {
        key: spec[key] for key in checks
    }
    assert len(checks) >= 12
    if tool == "ptftp":  # every key but --host (interactive mode's server)
        assert set(checks) == set(PTFTP_ACCEPTS)


def test_every_flag_of_the_dhcp_tools_is_a_key() -> None:
    for tool in ("dhcpd", "bootpd", "pxed"):
        parser = importlib.import_module(f"ptftpd.cli.{tool}").build_parser()
        flags = {
            o[2:].replace("host", "hosts") if o == "--host" else o[2:]
            for a in parser._actions
            for o in a.option_strings
            if o.startswith("--") and not o.startswith("--no-")
        } - {"help", "config", "print-config", "version", "init-db"}
        assert flags <= set(CHECKS[tool]), tool
    pxed = set(CHECKS["pxed"])
    for key in ("bios-bootfile", "efi64-bootfile", "ipxe-bootfile", "tftp-port", "blksize-max"):
        assert key in pxed
    for key in ("windowsize-max", "timeout", "retries", "max-sessions", "http-port", "ipv6"):
        assert key in pxed
    for key in ("ra", "boot-idle", "proxy", "user", "group", "metrics", "drain", "subnet"):
        assert key in pxed
    assert "root" in CHECKS["bootpd"] and "user" in CHECKS["dhcpd"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wrong_setting())
def test_a_wrong_type_for_any_key_of_any_tool_is_one_line_exit_2(
    setting: tuple[str, str, object, bool],
) -> None:
    tool, key, value, shared = setting
    text, line = settings_text(tool, key, value, shared)
    code, err = run_main(tool, text)
    assert code == 2, err
    assert is_setting_error(tool, err), err
    assert f"settings.toml:{line}: {key}: expected " in err and ", got " in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("tool", "line", "shown"),
    [
        ("pxed", "blksize-max = 3", ":1: blksize-max: must be 8..65464"),
        ("pxed", "boot-idle = 0", ":1: boot-idle: must be more than 0 and at most 86400 s"),
        ("pxed", "tftp-port = 70000", ":1: tftp-port: not a UDP port: 70000"),
        ("pxed", 'metrics = "nowhere"', ":1: metrics: expected ADDR:PORT"),
        ("pxed", "lease-time = 0", ":1: lease-time: must be between 1 and 4294967294, not 0"),
        ("dhcpd", "drain = 7200", ":1: drain: must be 0..3600 seconds, not 7200"),
        ("bootpd", "port = 0", ":1: port: must be between 1 and 65534, not 0"),
        ("ptftpd", "timeout = 300", ":1: timeout: must be more than 0 and at most 255"),
    ],
)
def test_a_value_out_of_range_in_the_file_is_one_line_exit_2(
    tool: str, line: str, shown: str
) -> None:
    """A value of the right type still goes through the flag's own checks."""
    code, err = run_main(tool, line + "\n")
    assert code == 2 and is_setting_error(tool, err), err
    assert shown in err


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        # "1h" is a lease time now (issue 24: as dnsmasq users write it); "1 hour" is not
        ('lease-time = "1 hour"', "lease-time: expected seconds or a duration"),
        ('reply-delay = "short"', "reply-delay: expected a number of seconds, got 'short'"),
        ("domain = 5", "domain: expected a domain name string, got 5"),
        ('pxe-vendor-class = "HW-Client"', "pxe-vendor-class: expected a list of strings"),
        ('all = "no"', "all: expected true or false, got 'no'"),
    ],
)
def test_issue_examples(line: str, shown: str) -> None:
    code, err = run_dhcpd(line + "\n")
    assert code == 2
    assert shown in err


def test_unknown_key_lists_the_valid_ones() -> None:
    code, err = run_dhcpd("tenant = 5\n")
    assert code == 2
    assert "settings.toml:1: tenant: unknown key; valid keys: all, authoritative," in err


@pytest.mark.parametrize(
    ("tool", "line", "shown"),
    [
        ("dhcpd", "lease_tme = 5", ":1: lease-tme: unknown key (did you mean lease-time?)"),
        ("ptftpd", "timout = 5", ":1: timout: unknown key (did you mean timeout?)"),
        ("pxed", "efi64-botfile = 'x'", ":1: efi64-botfile: unknown key (did you mean efi64-"),
        ("dhcpd", "dhcp-range = 5", ":1: dhcp-range: unknown key (did you mean range?)"),
        ("dhcpd", "[options]\nntp-server = []", ":2: options.ntp-server: unknown option (did "),
        ("pxed", "[options]\nnetmask = ''", ":2: options.netmask: unknown option (did you mean s"),
    ],
)
def test_a_near_miss_or_a_dnsmasq_name_gets_a_suggestion(tool: str, line: str, shown: str) -> None:
    code, err = run_main(tool, line + "\n")
    assert code == 2 and is_setting_error(tool, err), err
    assert shown in err


@pytest.mark.parametrize(
    ("tool", "valid"),
    [
        ("ptftpd", "blksize-max, create"),
        ("dhcpd", "hosts, ipxe-bootfile, lease-sync, lease-time, leases"),
        ("bootpd", "reply-delay, root, subnet"),
        ("pxed", "efi32-bootfile, efi64-bootfile, exclude, gateway, group, hosts"),
        ("ptftp", "blksize, debug, force, mode, port, quiet, retries, rfc1350, timeout"),
    ],
)
def test_an_unknown_key_names_its_line_and_the_valid_keys(tool: str, valid: str) -> None:
    code, err = run_main(tool, "verbose = true\n\ntenant = 512\n")
    assert code == 2 and is_setting_error(tool, err), err
    assert "settings.toml:3: tenant: unknown key; valid keys: " in err
    assert valid in err


@pytest.mark.parametrize("url", ["http://host/file", "HTTPS://h/x", "ftp://h/f"])
def test_ptftp_rejects_other_url_schemes(url: str) -> None:
    res = subprocess.run(
        [script("ptftp"), url], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )
    assert res.returncode == 2
    scheme = url.split("://")[0]
    assert res.stderr == f"ptftp: error: only tftp:// URLs are supported, not {scheme}://\n"


@pytest.mark.parametrize("tool", ["dhcpd", "bootpd", "pxed", "ptftpd"])
def test_usage_mistakes_are_one_line_exit_2(tool: str) -> None:
    res = subprocess.run(
        [script(tool), "--drain", "soon", "lo", "x", "y"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 2
    assert res.stderr.startswith(f"{tool}: --drain: ") and "soon" in res.stderr
    assert is_setting_error(tool, res.stderr), res.stderr  # no usage block, ptftpd too


def test_dhcpd_on_an_ipv6_address_says_so() -> None:
    res = subprocess.run(
        [script("dhcpd"), "::1", "pxelinux.0"], capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 1
    assert res.stderr == (
        "dhcpd: error: ::1 is an IPv6 address; an IPv4 address or an interface with one "
        "is needed here\n"
    )


def test_dhcpd_on_an_interface_without_address_says_so() -> None:
    require_root()
    ns = Netns("pbs")
    try:
        ns.run("ip", "link", "add", "bare0", "type", "veth", "peer", "name", "bare1")
        res = ns.run(script("dhcpd"), "bare0", "pxelinux.0", check=False)
    finally:
        ns.delete()
    assert res.returncode == 1
    assert res.stderr == "dhcpd: error: interface bare0 exists but has no IPv4 address\n"
