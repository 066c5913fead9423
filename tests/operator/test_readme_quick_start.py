"""The README's first command, as written, from a fresh clone, as root without sudo; then
its serve command as a non-root user holding only CAP_NET_BIND_SERVICE (setpriv), as a
systemd unit with AmbientCapabilities= would run it. Bounded in time. The first command
installs from the network (apt, pip), so it runs here on loopback; the second serve runs
in a namespace of its own."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import Netns, require_root, require_tool

REPO = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    """The commands of README's first shell block (comments dropped)."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block is not None
    return [
        line
        for line in block.group(1).splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


@pytest.fixture
def clone() -> Iterator[Path]:
    git = require_tool("git")
    folder = Path(tempfile.mkdtemp(prefix="ptftpd-readme-"))
    folder.chmod(0o755)
    try:
        subprocess.run(
            [git, "clone", "-q", str(REPO), str(folder / "ptftpd")], check=True, timeout=120
        )
        yield folder / "ptftpd"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def curl_hello(ns: Netns | None, deadline: float) -> str:
    curl = require_tool("curl")
    argv = [curl, "-s", "--max-time", "5", "tftp://127.0.0.1:6969/hello.txt"]
    while True:
        res = subprocess.run(
            argv if ns is None else ns.popen_argv(argv), capture_output=True, text=True, timeout=30
        )
        if res.returncode == 0 or time.monotonic() > deadline:
            return res.stdout
        time.sleep(1)


def stop(proc: subprocess.Popen[str]) -> str:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return out


@pytest.mark.timeout(900)
def test_readme_first_command_from_a_fresh_clone(clone: Path) -> None:
    require_root()
    setpriv = require_tool("setpriv")
    first, second = readme_commands()
    assert second == "bash .ci/run"  # the second runs the tests (not run here: the suite)
    assert first.startswith("apt-get update") and "--read-only" in first
    hello = (clone / "examples" / "root" / "hello.txt").read_text()
    ns = Netns("prd")
    try:
        proc = subprocess.Popen(
            ["bash", "-c", first],
            cwd=clone,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
        )
        try:
            got = curl_hello(None, time.monotonic() + 600)
        finally:
            out = stop(proc)
        assert got == hello, out[-3000:]
        assert "Traceback" not in out
        assert (clone / "examples" / "root").stat().st_uid == 0

        # The serve command as a user holding only CAP_NET_BIND_SERVICE.
        serve = first.rsplit("&& ", 1)[1]
        nobody = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        caps = ["--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service"]
        argv = [setpriv, *nobody, *caps, *shlex.split(serve)]
        proc = subprocess.Popen(
            ns.popen_argv(argv),
            cwd=clone,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            got = curl_hello(ns, time.monotonic() + 60)
        finally:
            out = stop(proc)
        assert got == hello, out[-3000:]
        assert "WARNING" not in out and "Traceback" not in out, out
    finally:
        ns.delete()
