"""No settings file can crash or fool a tool's loader (issue 17): every tool, fed a
hostile TOML file, says one line (``TOOL: FILE:LINE: key: what (try --help)``) and
exits 2. The files are valid structure with one hostile part: a value of the wrong
type for a real key, an integer past any range (also past Python's 4300-digit limit),
brackets nested past any setting, bytes that are not UTF-8 inside a value, one key
spelled twice (``map-file`` and ``map_file``), a ``[[subnet]]`` key of the wrong type,
an ``[options]`` entry the server must own or of the wrong type. The loader runs
in-process through each tool's `main` (fast); a few real runs check the installed
scripts say the same."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bad_settings import (
    CHECKS,
    KINDS,
    TOOLS,
    accepted,
    is_setting_error,
    run_main,
    toml_value,
)

from ptftpd.dhcp.settings import PROTOCOL_OPTIONS, SUBNET_KEYS
from support import script

DHCP_TOOLS = ("dhcpd", "bootpd", "pxed")
INVALID_UTF8 = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80")


def wrong_value(key: str, checks: dict[str, object]) -> st.SearchStrategy[bytes]:
    check = checks[key]
    wrong = sorted(set(KINDS) - accepted(check))  # type: ignore[arg-type]
    return st.sampled_from(wrong).flatmap(KINDS.__getitem__).map(lambda v: toml_value(v).encode())


def huge_integer() -> st.SearchStrategy[bytes]:
    """Past 2**64 (no setting takes it), sometimes past Python's int-from-text limit."""
    digits = st.one_of(st.integers(20, 60), st.integers(4301, 6000))
    sign = st.sampled_from(["", "-", "+"])
    return st.tuples(sign, digits).map(lambda sd: f"{sd[0]}{'9' * sd[1]}".encode())


def deep_nesting() -> st.SearchStrategy[bytes]:
    depth = st.one_of(st.integers(17, 60), st.integers(900, 3000))
    shape = st.sampled_from(["array", "table"])

    def build(depth_shape: tuple[int, str]) -> bytes:
        depth, shape = depth_shape
        if shape == "array":
            return b"[" * depth + b"1" + b"]" * depth
        return b"{a = " * depth + b"1" + b"}" * depth

    return st.tuples(depth, shape).map(build)


def bad_bytes() -> st.SearchStrategy[bytes]:
    text = st.text(st.characters(codec="ascii", categories=("L", "N")), max_size=6)
    return st.tuples(text, st.sampled_from(INVALID_UTF8), text).map(
        lambda t: b'"' + t[0].encode() + t[1] + t[2].encode() + b'"'
    )


@st.composite
def hostile_file(draw: st.DrawFn) -> tuple[str, bytes, str]:
    """A tool, a settings file with one hostile part, and what the error must name."""
    tool = draw(st.sampled_from(TOOLS))
    checks = CHECKS[tool]
    key = draw(st.sampled_from(sorted(checks)))
    kind = draw(
        st.sampled_from(
            ["wrong", "huge", "deep", "bytes", "twice"]
            + (["subnet", "option"] if tool in DHCP_TOOLS else [])
        )
    )
    body: bytes
    if kind == "wrong":
        body = key.encode() + b" = " + draw(wrong_value(key, checks)) + b"\n"
    elif kind == "huge":
        body = key.encode() + b" = " + draw(huge_integer()) + b"\n"
    elif kind in ("deep", "bytes"):
        value = draw(deep_nesting() if kind == "deep" else bad_bytes())
        body, key = key.encode() + b" = " + value + b"\n", ""  # TOML-level: no key named
    elif kind == "twice":
        dashed = sorted(k for k in checks if "-" in k)
        if dashed:  # one key, two spellings
            key = draw(st.sampled_from(dashed))
            spellings = [key, key.replace("-", "_")]
            first, second = draw(st.permutations(spellings))
        else:  # ptftp's keys have no dash: the same key twice
            first = second = key
        body = f"{first} = 1\n# between\n{second} = 2\n".encode()
    elif kind == "subnet":
        sub = draw(st.sampled_from(sorted(SUBNET_KEYS - {"network", "hosts", "options"})))
        wrong = draw(st.sampled_from(["list_str", "table", "bool"]).flatmap(KINDS.__getitem__))
        body = (
            '[[subnet]]\nnetwork = "10.77.0.0/24"\n\n'
            f'[[subnet]]\nnetwork = "10.78.0.0/24"\n{sub} = {toml_value(wrong)}\n'
        ).encode()
        key = f"subnet.{sub}"
    else:
        code = draw(st.sampled_from(sorted(int(c) for c in PROTOCOL_OPTIONS)))
        entry = draw(
            st.sampled_from(
                [
                    "ntp-servers = [1, 2]",
                    'interface-mtu = "big"',
                    "time-offset = 99999999999",
                    f'{code} = "0102"',
                ]
            )
        )
        body, key = f"[options]\n{entry}\n".encode(), "options."
    shared = draw(st.booleans())
    if shared:
        other = next(t for t in TOOLS if t != tool)
        head = f"# shared\n[{other}]\nverbose = true\n\n[{tool}]\n".encode()
        if kind in ("subnet", "option"):  # sub-tables of the tool's table
            body = body.replace(b"[[subnet]]", f"[[{tool}.subnet]]".encode()).replace(
                b"[options]", f"[{tool}.options]".encode()
            )
        return tool, head + body, key
    return tool, b"# own file\n\n" + body, key


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_file())
def test_any_hostile_file_is_one_line_and_exit_2(case: tuple[str, bytes, str]) -> None:
    tool, body, key = case
    code, err = run_main(tool, body)
    assert code == 2, (body[:300], err)
    assert is_setting_error(tool, err), (body[:300], err)
    assert "settings.toml:" in err, err  # FILE:LINE, always
    assert key in err, (body[:300], err)
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("tool", "body", "shown"),
    [
        ("ptftpd", b'map-file = "a"\nmap_file = "b"\n', ":1: map-file and map_file are one key"),
        ("dhcpd", b"lease-time = " + b"9" * 5001 + b"\n", ":1: lease-time: an integer of"),
        ("pxed", b"dns = " + b"[" * 2000 + b"]" * 2000 + b"\n", ":1: bad TOML: nested deeper"),
        ("bootpd", b'domain = "caf\xe9"\n', ":1: not UTF-8 text (byte 0xe9)"),
        ("ptftp", b"retries = 99999999999999999999\n", ":1: retries: out of range"),
        (
            "dhcpd",
            b'[options]\nserver-id = "10.0.0.9"\n',
            ":2: options.server-id: option 54 cannot",
        ),
        ("dhcpd", b"[options]\n53 = 2\n", ":2: options.53: option 53 cannot be set here"),
        ("dhcpd", b'[options]\nntp-servers = ["10.0.0.1"]\n42 = "0a000001"\n', ":3: options.42: "),
        (
            "dhcpd",
            b'[[subnet]]\nnetwork = "10.9.0.0/24"\n[[subnet]]\nnetwork = "10.8.0.0/24"\n'
            b'bootfile = ["a", "b"]\n',
            ":5: subnet.bootfile: expected a string, got ['a', 'b']",
        ),
        (
            "pxed",
            b'[[subnet]]\nnetwork = "10.9.0.0/24"\nbootfile = "rack.0"\n',
            ":3: subnet.bootfile: pxed chooses boot files by firmware",
        ),
        (
            "dhcpd",
            b'[[subnet]]\nnetwork = "10.9.0.0/24"\n[subnet.options]\nmessage-type = 5\n',
            ":4: subnet.options.message-type: option 53 cannot",
        ),
    ],
)
def test_the_issues_inputs(tool: str, body: bytes, shown: str) -> None:
    code, err = run_main(tool, body)
    assert code == 2 and is_setting_error(tool, err), err
    assert shown in err, err


@pytest.mark.parametrize(
    ("tool", "args", "body"),
    [
        ("ptftpd", ["127.0.0.1", "ROOT"], b'user = "\xff"\n'),
        ("dhcpd", ["127.0.0.1", "pxelinux.0"], b"hosts = " + b"[" * 3000 + b"]" * 3000 + b"\n"),
        ("pxed", ["127.0.0.1", "ROOT", "pxelinux.0"], b"boot-idle = " + b"1" * 4400 + b"\n"),
        ("ptftp", ["--print-config"], b"[ptftp]\nmode = 5\n"),
    ],
)
def test_the_installed_scripts_say_one_line(tool: str, args: list[str], body: bytes) -> None:
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "settings.toml"
        path.write_bytes(body)
        (Path(work) / "pxelinux.0").write_bytes(b"boot")
        argv = [a.replace("ROOT", work) for a in args]
        res = subprocess.run(
            [script(tool), "--config", str(path), *argv],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    assert res.returncode == 2, res.stderr
    assert is_setting_error(tool, res.stderr), res.stderr
    assert f"{path}:" in res.stderr
