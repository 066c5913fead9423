"""Every bad setting is one line and a usage exit (2): TOML values of the wrong type for
every dhcpd key (a property test), unknown keys listing the valid ones, other URL schemes
for ptftp, usage mistakes of every server, and IFACE arguments dhcpd cannot serve."""

from __future__ import annotations

import contextlib
import io
import json
import math
import subprocess
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptftpd.cli import dhcpd
from ptftpd.dhcp.toml_types import KEY_TYPES
from support import Netns, require_root, script

# What each key accepts, as this test's own specification (kinds of TOML values).
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
    "pxe-vendor-class": {"list_str", "pair_str", "empty_list"},
    "port": {"int"},
    "subnet": {"list_table", "empty_list"},
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
def wrong_setting(draw: st.DrawFn) -> tuple[str, object]:
    key = draw(st.sampled_from(sorted(ACCEPTS)))
    kind = draw(st.sampled_from(sorted(set(KINDS) - ACCEPTS[key])))
    return key, draw(KINDS[kind])


def run_dhcpd(config_text: str) -> tuple[int, str]:
    """dhcpd's main on a config file, in this process; it must never reach serving."""
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(config_text)
    err = io.StringIO()
    code: object = None
    try:
        with (
            mock.patch.object(dhcpd, "serve", side_effect=AssertionError("reached serve")),
            contextlib.redirect_stderr(err),
        ):
            try:
                dhcpd.main(["--config", f.name, "127.0.0.1", "pxelinux.0"])
            except SystemExit as exc:
                code = exc.code
    finally:
        Path(f.name).unlink()
    assert isinstance(code, int), f"no exit for {config_text!r}"
    return code, err.getvalue()


def test_the_specification_covers_every_key() -> None:
    assert set(ACCEPTS) == set(KEY_TYPES)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wrong_setting())
def test_a_wrong_type_for_any_key_is_one_line_exit_2(setting: tuple[str, object]) -> None:
    key, value = setting
    code, err = run_dhcpd(f"{key} = {toml_value(value)}\n")
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("dhcpd: error: "), err
    assert f"{key} = " in err and "expected" in err


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ('lease-time = "1h"', "lease-time = '1h': expected an integer number of seconds"),
        ('reply-delay = "short"', "reply-delay = 'short': expected a number of seconds"),
        ("domain = 5", "domain = 5: expected a domain name string"),
        ('pxe-vendor-class = "HW-Client"', "pxe-vendor-class = 'HW-Client': expected a list"),
        ('all = "no"', "all = 'no': expected true or false"),
    ],
)
def test_issue_examples(line: str, shown: str) -> None:
    code, err = run_dhcpd(line + "\n")
    assert code == 2
    assert shown in err


def test_unknown_key_lists_the_valid_ones() -> None:
    code, err = run_dhcpd("lease_tme = 5\n")
    assert code == 2
    assert "unknown key(s) lease-tme; valid keys: all, authoritative, dns," in err


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
    assert "--drain" in res.stderr and "soon" in res.stderr
    if tool != "ptftpd":  # ptftpd keeps argparse's usage line before the error
        assert res.stderr.count("\n") == 1, res.stderr


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
