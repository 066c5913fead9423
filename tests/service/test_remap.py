"""Remap rules: our apply() against tftpd-hpa's own ``in.tftpd -m`` on the same rule file.

Each case's root holds a file named like the name we expect the rules to produce, whose
content is that name, plus a decoy at the requested name. tftpd-hpa serves the request, so
the bytes that come back say which name *it* chose; the test asserts that ours is the same.
"""

from __future__ import annotations

import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from ptftpd.tftp.remap import (
    LOOP_DENIAL,
    Op,
    Refused,
    RemapError,
    RuleSet,
    load,
    parse,
)
from support import Process, free_udp_port, require_root, require_tool, wait_udp_bound

URL_SAFE = "/:\\"  # curl sends these as they are; "#" and " " must be quoted


@dataclass(frozen=True)
class Case:
    name: str
    rules: str
    request: str
    expected: str | Refused
    client: str = "127.0.0.1"
    op: Op = Op.READ


CASES = [
    Case("case folding", "r .* \\L\\0", "PXELinux.CFG/Default", "pxelinux.cfg/default"),
    Case("case-insensitive match", "ri ^BOOT/ efi/", "boot/grubx64.efi", "efi/grubx64.efi"),
    Case("path prefix rewrite", "r ^/tftpboot/", "/tftpboot/pxelinux.0", "pxelinux.0"),
    Case("backslash to slash", "rg \\\\ /", "boot\\x64\\wdsnbp.com", "boot/x64/wdsnbp.com"),
    Case("per-client directory", "r ^ \\i/", "pxelinux.0", "127.0.0.1/pxelinux.0"),
    Case(
        "per-client, other client",
        "r ^ \\i/",
        "pxelinux.0",
        "127.0.0.2/pxelinux.0",
        client="127.0.0.2",
    ),
    Case("hex address", "r ^pxelinux.cfg/$ \\0\\x", "pxelinux.cfg/", "pxelinux.cfg/7F000001"),
    Case("deny", "a \\.pvt$", "secret.pvt", Refused("Access denied")),
    Case("deny with message", "a ^private/ \\Uno\\E:\\0", "private/x", Refused("NO:private/x")),
    Case(
        "end stops processing",
        """
        e ^ok/
        r ^ deny/
        """,
        "ok/file",
        "ok/file",
    ),
    Case(
        "end only when matched",
        """
        e ^ok/
        r ^ other/
        """,
        "file",
        "other/file",
    ),
    Case(
        "restart",
        """
        rs ^old/ new/
        r ^new/(.*) \\1.moved
        """,
        "old/f",
        "f.moved",
    ),
    Case(
        "IPv6 client, hex address",
        """
        r4 ^ v4/
        r6 ^ v6/\\x/
        """,
        "f",
        "v6/00000000000000000000000000000001/f",
        client="::1",
    ),
    Case("inverse deny", "a~ ^pub/", "etc/f", Refused("Access denied")),
    Case("inverse allows", "a~ ^pub/", "pub/f", "pub/f"),
    Case("get-only rule on a get", "rG ^ get/", "f", "get/f"),
    Case("put-only rule on a get", "rP ^ put/", "f", "f"),
    Case("leftmost-longest", "r (ab)?(abcd)? x", "abcdz", "xz"),
    Case("alternation longest", "r (a|ab)(c|bcd)(d*) [\\1][\\2][\\3]", "abcd", "[a][bcd][]"),
    Case("bracket class", "rg [[:digit:]] N", "f2a3", "fNaN"),
    Case("literal backslash in brackets", "rg [\\\\] /", "a\\b", "a/b"),
    Case("interval", "r ^a{2,3} X", "aaaab", "Xab"),
    Case("comment and escaped hash", "rg \\# @   # comment", "a#b", "a@b"),
    Case("escaped space", "r \\  _", "a b", "a_b"),
    Case(
        "sample.rules drive letter",
        """
        ri ^[a-z]:
        rg \\\\ /
        """,
        "C:\\boot\\bcd",
        "/boot/bcd",
    ),
    Case(
        "endless restart is refused",
        """
        r ^b a
        rs a a
        """,
        "a",
        Refused(LOOP_DENIAL),
    ),
]


def _rules_file(tmp_path: Path, case: Case) -> Path:
    path = tmp_path / "rules"
    path.write_text(textwrap.dedent(case.rules).strip() + "\n")
    return path


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_apply_matches_tftpd_hpa(tmp_path: Path, case: Case) -> None:
    rules_path = _rules_file(tmp_path, case)
    ours = load(rules_path).apply(case.request, case.client, case.op)
    assert ours == case.expected

    require_root()  # tftpd-hpa chroots into -s ROOT
    exe = require_tool("in.tftpd")
    root = tmp_path / "root"
    root.mkdir()
    (root / "decoy").mkdir()
    if isinstance(case.expected, str):
        target = root / case.expected.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("served:" + case.expected)
    decoy = root / case.request.lstrip("/")
    if not decoy.exists():
        decoy.parent.mkdir(parents=True, exist_ok=True)
        decoy.write_text("unmapped")
    host = "::1" if ":" in case.client else "127.0.0.1"
    url_host = f"[{host}]" if ":" in host else host
    port = free_udp_port(host)
    argv = [exe, "-L", "-u", "root", "-m", str(rules_path), "-s", str(root)]
    server = Process([*argv, "-a", f"{url_host}:{port}"], tmp_path / "tftpd.log")
    try:
        wait_udp_bound(port, proc=server.proc)
        if isinstance(case.expected, Refused):
            tftp = require_tool("tftp")
            done = subprocess.run(
                [tftp, host, str(port), "-c", "get", case.request, "/dev/stdout"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert f"Error code 2: {case.expected.message}" in done.stdout + done.stderr
        else:
            curl = require_tool("curl")
            done = subprocess.run(
                [
                    curl,
                    "-sS",
                    "--max-time",
                    "20",
                    "--interface",
                    case.client,
                    f"tftp://{url_host}:{port}/{quote(case.request, safe=URL_SAFE)}",
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert done.stdout == "served:" + case.expected, done.stderr
    finally:
        server.stop()


def test_put_rule_on_upload_matches_tftpd_hpa(tmp_path: Path) -> None:
    case = Case("put", "rP ^ incoming/", "up.bin", "incoming/up.bin", op=Op.WRITE)
    rules_path = _rules_file(tmp_path, case)
    assert load(rules_path).apply(case.request, case.client, Op.WRITE) == "incoming/up.bin"
    assert load(rules_path).apply(case.request, case.client, Op.READ) == "up.bin"

    require_root()
    exe, tftp = require_tool("in.tftpd"), require_tool("tftp")
    root = tmp_path / "root"
    (root / "incoming").mkdir(parents=True)
    source = tmp_path / "up.bin"
    source.write_bytes(b"uploaded bytes")
    port = free_udp_port()
    argv = [exe, "-L", "-c", "-u", "root", "-m", str(rules_path), "-s", str(root)]
    server = Process([*argv, "-a", f"127.0.0.1:{port}"], tmp_path / "tftpd.log")
    try:
        wait_udp_bound(port, proc=server.proc)
        subprocess.run(
            [tftp, "127.0.0.1", str(port), "-c", "put", str(source), case.request],
            capture_output=True,
            timeout=30,
            check=True,
        )
    finally:
        server.stop()
    assert (root / "incoming" / "up.bin").read_bytes() == b"uploaded bytes"
    assert not (root / "up.bin").exists()


def test_restart_goes_back_to_the_first_rule() -> None:
    """Man page: ``s`` starts over at the first rule (tftpd-hpa 5.2 resumes at the second)."""
    rules = parse("r ^x y\nrs ^b x\n")
    assert rules.apply("b", "127.0.0.1", Op.READ) == "y"


def test_ipv6_flags_and_hex() -> None:
    rules = parse("r4 ^ v4/\nr6 ^ v6/\\x/\n")
    assert rules.apply("f", "::1", Op.READ) == "v6/" + "0" * 31 + "1/f"
    assert rules.apply("f", "10.0.0.1", Op.READ) == "v4/f"


def test_global_rewrite_that_never_ends_is_bounded() -> None:
    rules = RuleSet(parse("rg a a\n").rules, max_steps=50)
    assert rules.apply("a", "127.0.0.1", Op.READ) == Refused(LOOP_DENIAL)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("x ^a", "line 2: unknown flag 'x'"),
        ("r", "line 2: no regex after the flags"),
        ("r~ a b", "line 2: flags r and ~ cannot be combined"),
        ("ra a b", "line 2: flags r and a cannot be combined"),
        ("r (a b", "line 2: bad regex '(a': unmatched ("),
        ("r a b c", "line 2: unexpected text after the replacement: 'c'"),
        ("r \\d x", "line 2: bad regex '\\\\d': \\d is a literal 'd' in POSIX"),
        ("r \\bx y", "line 2: bad regex '\\\\bx': \\b (a GNU word/buffer anchor)"),
        ("r [[=a=]] y", "line 2: bad regex '[[=a=]]': [=a=] (collation) is not supported"),
        ("r [[:foo:]] y", "line 2: bad regex '[[:foo:]]': unknown character class"),
        ("r a{ y", "line 2: bad regex 'a{': '{' must start an interval"),
        ("r *a y", "line 2: bad regex '*a': '*' has nothing to repeat"),
        ("r (a) \\2", "line 2: bad replacement '\\\\2': \\2 names group 2 but the regex has 1"),
        ("rj a", "line 2: flag j (needs tftpd-hpa 5.3+) is not supported"),
        (":label", "line 2: labels (:label) need tftpd-hpa 5.3+"),
        ("rgg a b", "line 2: flag gg"),
    ],
)
def test_bad_rule_is_a_one_line_error_naming_the_line(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "rules"
    path.write_text("# a comment\n" + line + "\n")
    with pytest.raises(RemapError) as caught:
        load(path)
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: {message}"), text


def test_missing_rule_file(tmp_path: Path) -> None:
    with pytest.raises(RemapError, match="No such file or directory"):
        load(tmp_path / "absent")
