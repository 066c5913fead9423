"""pxed's remote kernels/initrds (issue 22 item 2, `ptftpd.pxe.remote`) on real sockets:
the HTTP server of pxed in this process with its remote files hooked in, the test
upstream (remote_upstream.py) as a process on loopback, curl as the machine. Exact
bytes through pxed; the second fetch from the cache with the upstream stopped; over
the size limit refused, nothing cached; a short body, too many redirects, a redirect
to file:// -> errors, nothing cached; made-up paths and other machines' tokens 404;
a slow upstream shared by two clients while other requests are answered at once;
least recently used files evicted; leftovers of a crash removed at start."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ptftpd.http import HttpConfig, HttpServer
from ptftpd.pxe.remote import RemoteFiles, RemoteNames
from support import require_tool

pytestmark = pytest.mark.timeout(120)

HERE = Path(__file__).parent
MAC = "52:54:00:22:02:51"
OTHER = "52:54:00:22:02:52"
MIB = 1024 * 1024


def blob(size: int, seed: str) -> bytes:
    """Kernel-like: not a short repeating pattern, different per seed."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest() * 1024
        counter += 1
    return bytes(out[:size])


class Upstream:
    def __init__(self, proc: subprocess.Popen[str], port: int, scheme: str) -> None:
        self.proc = proc
        self.port = port
        self.scheme = scheme

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/{path}"

    def stop(self) -> str:
        """Stop it; the request lines it printed."""
        if self.proc.poll() is None:
            self.proc.kill()
        out, _ = self.proc.communicate(timeout=10)
        return out


@contextmanager
def upstream(files: Path, *tls: str) -> Iterator[Upstream]:
    """The test upstream serving `files` (over TLS with `tls`: CERT, KEY)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [sys.executable, str(HERE / "remote_upstream.py"), str(port), str(files), *tls]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    up = Upstream(proc, port, "https" if tls else "http")
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "no upstream"
                time.sleep(0.05)
        yield up
    finally:
        up.stop()


def run(body: Callable[[], Awaitable[None]], timeout: float = 90) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(body(), timeout)

    asyncio.run(bounded())


async def curl(url: str, *args: str) -> tuple[int, bytes, str]:
    """(curl's exit code, body, "CODE" as -w prints it)."""
    proc = await asyncio.create_subprocess_exec(
        require_tool("curl"), "--noproxy", "*", "-sS", "--max-time", "60",
        "-o", "-", "-w", "\n%{http_code}", *args, url,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    body, _, code = out.rpartition(b"\n")
    return proc.returncode or 0, body, code.decode()


class Pxed:
    """pxed's HTTP server with remote files, as the service wires it."""

    def __init__(self, tmp: Path, **limits: int | float) -> None:
        self.root = tmp / "root"
        self.root.mkdir(exist_ok=True)
        (self.root / "local.bin").write_bytes(b"a local file\n")
        self.cache = tmp / "cache"
        self.remote = RemoteFiles(self.cache, RemoteNames(), **limits)  # type: ignore[arg-type]
        self.http = HttpServer(HttpConfig(root=self.root, bind=(("127.0.0.1", 0),)))
        self.http.streamed = self.remote.open

    async def __aenter__(self) -> Pxed:
        self.remote.start()
        await self.http.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.remote.close()
        self.http.close()
        await self.http.wait_closed()

    def name(self, mac: str, *urls: str) -> list[str]:
        """`mac`'s decision names `urls` (as a rendering does): their pxed URLs."""
        naming = self.remote.names.naming(mac, time.monotonic())
        paths = [naming(url) for url in urls]
        naming.commit()
        host, port = self.http.bound[0]
        return [f"http://{host}:{port}/{path}" for path in paths]

    def cached(self) -> list[str]:
        return sorted(os.listdir(self.cache))


def test_exact_bytes_then_the_cache_with_the_upstream_down(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ptftpd.pxe")
    files = tmp_path / "files"
    files.mkdir()
    kernel = blob(3 * MIB + 17, "kernel")
    (files / "vmlinuz").write_bytes(kernel)

    async def body() -> None:
        async with Pxed(tmp_path) as pxed:
            with upstream(files) as up:
                remote = up.url("files/vmlinuz")
                [url] = pxed.name(MAC, remote)
                assert "/pxed/remote/52-54-00-22-02-51/" in url and url.endswith("/vmlinuz")
                rc, got, code = await curl(url)
                assert (rc, code) == (0, "200") and got == kernel
                key = hashlib.sha256(remote.encode()).hexdigest()
                assert pxed.cached() == [key]
                assert (pxed.cache / key).read_bytes() == kernel
                asked = up.stop()
            assert asked.splitlines() == ["/files/vmlinuz"]
            # The upstream is down: the cache answers, also a range.
            rc, got, code = await curl(url)
            assert (rc, code) == (0, "200") and got == kernel
            rc, got, code = await curl(url, "-r", "1000-1999")
            assert (rc, code) == (0, "206") and got == kernel[1000:2000]
            # A second machine whose decision names the same URL: its own path, the cache.
            [second] = pxed.name("52:54:00:22:02:53", remote)
            assert second != url and "/52-54-00-22-02-53/" in second
            rc, got, code = await curl(second)
            assert (rc, code) == (0, "200") and got == kernel
            # Only what a decision named for this machine: a made-up token, another
            # machine's token under this MAC, this machine's token under another MAC.
            [other] = pxed.name(OTHER, up.url("files/other"))
            token = url.split("/")[-2]
            base = url.rsplit("/", 3)[0]
            for wrong in (
                f"{base}/52-54-00-22-02-51/{'A' * 22}/vmlinuz",
                f"{base}/52-54-00-22-02-51/{other.split('/')[-2]}/other",
                f"{base}/52-54-00-22-02-52/{token}/vmlinuz",
                f"{base}/52-54-00-22-02-51/{token}",
            ):
                rc, got, code = await curl(wrong)
                assert code == "404", wrong
            # The machine's next decision names another URL: the old path is gone.
            pxed.name(MAC, up.url("files/initrd"))
            assert (await curl(url))[2] == "404"

    run(body)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("remote ")]
    assert any("cache miss, cached" in x and f"{len(kernel)} bytes" in x for x in lines), lines
    assert sum("cache hit" in x for x in lines) == 3, lines


def test_over_the_limit_short_or_redirected_away_nothing_cached(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    big = blob(2 * MIB, "big")
    small = blob(MIB // 2, "small")
    (files / "big").write_bytes(big)
    (files / "small").write_bytes(small)
    (files / "tiny").write_bytes(b"tiny\n")

    async def body() -> None:
        async with Pxed(tmp_path, max_file=MIB, timeout=1.0) as pxed:
            with upstream(files) as up:
                # A file small enough to arrive in one read: the first client has it too.
                [url] = pxed.name(OTHER, up.url("files/tiny"))
                assert await curl(url) == (0, b"tiny\n", "200")
                # No answer within the timeout (1 s): 504.
                [url] = pxed.name(OTHER, up.url("hang/small"))
                began = time.monotonic()
                assert (await curl(url))[2] == "504"
                assert time.monotonic() - began < 5
                declared, undeclared, short, hops, too_many, away, gone = pxed.name(
                    MAC,
                    up.url("files/big"),  # Content-Length over the limit: refused
                    up.url("nolen/big"),  # no Content-Length: cut at the limit
                    up.url("short/small"),  # ends before its Content-Length
                    up.url("redirect/3/small"),
                    up.url("redirect/6/small"),
                    up.url("elsewhere"),
                    "http://127.0.0.1:9/nothing-listens",
                )
                for url in (declared, undeclared, too_many, away, gone):
                    rc, got, code = await curl(url)
                    assert code == "502" and got.startswith(b"502"), (url, code)
                rc, got, code = await curl(short)
                assert rc == 18 and code == "200" and len(got) < len(small), (rc, code)
                tiny = hashlib.sha256(up.url("files/tiny").encode()).hexdigest()
                assert pxed.cached() == [tiny]  # nothing half-written, nothing over the limit
                rc, got, code = await curl(hops)
                assert (rc, code, got == small) == (0, "200", True)
                assert len(pxed.cached()) == 2

    run(body)


def test_https_with_a_trusted_certificate_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An https upstream (asyncio's ssl, the default trust store): refused (502) while
    its certificate is not trusted, streamed once it is (SSL_CERT_FILE names it)."""
    files = tmp_path / "files"
    files.mkdir()
    kernel = blob(MIB + 3, "https")
    (files / "vmlinuz").write_bytes(kernel)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [require_tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-such-ca.pem"))

    async def body() -> None:
        async with Pxed(tmp_path) as pxed:
            with upstream(files, str(cert), str(key)) as up:
                [url] = pxed.name(MAC, up.url("files/vmlinuz"))
                assert url.startswith("http://")  # pxed serves it over plain HTTP
                assert (await curl(url))[2] == "502"  # not trusted
                assert pxed.cached() == []
                monkeypatch.setenv("SSL_CERT_FILE", str(cert))
                rc, got, code = await curl(url)
                assert (rc, code, got == kernel) == (0, "200", True)
                assert len(pxed.cached()) == 1

    run(body)


def test_a_slow_upstream_is_shared_and_blocks_no_one(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    kernel = blob(256 * 1024, "slow")
    (files / "vmlinuz").write_bytes(kernel)

    async def body() -> None:
        async with Pxed(tmp_path) as pxed:
            with upstream(files) as up:
                [url] = pxed.name(MAC, up.url("slow/vmlinuz"))
                host, port = pxed.http.bound[0]
                began = time.monotonic()
                slow = [asyncio.create_task(curl(url)) for _ in range(2)]
                # Meanwhile other requests are answered at once: timed by curl itself,
                # from a shell of its own (this test shares pxed's loop).
                each = (
                    f"{require_tool('curl')} --noproxy '*' -sS -o /dev/null "
                    f"-w '%{{time_total}} %{{http_code}}\\n' http://{host}:{port}/local.bin"
                )
                others = await asyncio.create_subprocess_shell(
                    f"for i in 1 2 3 4 5 6 7 8; do {each}; sleep 0.4; done",
                    stdout=subprocess.PIPE,
                )
                out, _ = await others.communicate()
                times = [line.split() for line in out.decode().splitlines()]
                assert len(times) == 8 and all(code == "200" for _, code in times), times
                assert max(float(t) for t, _ in times) < 1.0, times
                for rc, got, code in await asyncio.gather(*slow):
                    assert (rc, code, got == kernel) == (0, "200", True)
                assert time.monotonic() - began > 3.0  # it was slow
                asked = up.stop()
        assert asked.splitlines() == ["/slow/vmlinuz"]  # one fetch for both

    run(body)


def test_least_recently_used_evicted_and_leftovers_removed(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    data = {name: blob(MIB, name) for name in ("a", "b", "c")}
    for name, content in data.items():
        (files / name).write_bytes(content)

    def key(up: Upstream, name: str) -> str:
        return hashlib.sha256(up.url(f"files/{name}").encode()).hexdigest()

    async def body() -> None:
        with upstream(files) as up:
            async with Pxed(tmp_path, cache_size=MIB * 5 // 2) as pxed:
                a, b, c = pxed.name(MAC, *(up.url(f"files/{n}") for n in "abc"))
                for url in (a, b, a, c):  # a is used again after b: b goes for c
                    rc, got, code = await curl(url)
                    assert (rc, code) == (0, "200") and got == data[url[-1]]
                assert pxed.cached() == sorted([key(up, "a"), key(up, "c")])
            (tmp_path / "cache" / ".part-0123456789abcdef-00000000").write_bytes(b"half")
            again = RemoteFiles(tmp_path / "cache", RemoteNames())
            again.start()
            assert sorted(os.listdir(tmp_path / "cache")) == sorted([key(up, "a"), key(up, "c")])
            assert again.used == 2 * MIB and list(again.index)[-1] == key(up, "c")

    run(body)


def test_the_limits_are_flags_and_toml_keys(tmp_path: Path) -> None:
    """remote-cache-size, remote-max-file, remote-timeout: flags and --config keys
    (flags win), with their defaults; a bad value is a one-line usage error."""
    from support import script

    root = tmp_path / "root"
    root.mkdir()
    (root / "boot.0").write_bytes(b"boot")
    toml = tmp_path / "pxed.toml"
    toml.write_text("remote-cache-size = 1000000\nremote-max-file = 5000\n")

    def pxed(*flags: str) -> subprocess.CompletedProcess[str]:
        argv = [script("pxed"), *flags, "lo", str(root), "boot.0", "--print-config"]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    lines = pxed().stdout.splitlines()
    assert "remote-cache-size = 2147483648" in lines and "remote-timeout = 15.0" in lines
    assert "remote-max-file = 536870912" in lines
    done = pxed("--config", str(toml), "--remote-max-file", "7000", "--remote-timeout", "3")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "remote-cache-size = 1000000" in lines and "remote-max-file = 7000" in lines
    assert "remote-timeout = 3.0" in lines
    done = pxed("--remote-max-file", "0")
    assert done.returncode == 2 and "remote-max-file" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    from ipaddress import IPv4Address, IPv4Network

    from ptftpd.dhcp.engine import DhcpConfig
    from ptftpd.pxe.settings import pxe_config

    dhcp = DhcpConfig(
        server_ip=IPv4Address("10.0.0.1"), network=IPv4Network("10.0.0.0/24"), interface="x"
    )
    settings = {"remote-cache-size": 0, "remote-max-file": 7000, "remote-timeout": 3.0}
    config = pxe_config(settings, dhcp, root, "boot.0")
    assert (config.remote_cache_size, config.remote_max_file, config.remote_timeout) == (
        0, 7000, 3.0,
    )  # fmt: skip
    config = pxe_config({}, dhcp, root, "boot.0")
    assert (config.remote_cache_size, config.remote_max_file) == (2 * 1024**3, 512 * MIB)


def test_scripts_and_grub_name_pxed_for_every_remote_url(tmp_path: Path) -> None:
    """Rendering (pure): an API answer's remote kernel, initrd and ``{{ ID }}`` URLs
    become pxed paths in the iPXE script and in grub's configuration, each mapping back
    to its URL for this machine only; without pxed's HTTP server they stay URLs."""
    import json
    import re
    from dataclasses import replace

    from test_bootapi import facts

    from ptftpd.pxe.bootapi import parse_answer
    from ptftpd.pxe.recipes import render_grub, render_ipxe

    answer = {
        "kernel": "https://mirror.example/vmlinuz",
        "initrd": ["initrd.gz"],
        "cmdline": 'console=ttyS0 url={{ ID "preseed.cfg" }}',
    }
    decision = parse_answer(json.dumps(answer).encode(), "http://api.example/pxe/", tmp_path, {})
    assert decision.profile is not None
    names = RemoteNames()
    now = time.monotonic()
    f = facts(MAC)
    for render in (render_ipxe, render_grub):
        naming = names.naming(MAC, now)
        text = render(decision.profile, f, naming).decode()
        naming.commit()
        found = re.findall(r"pxed/remote/52-54-00-22-02-51/[A-Za-z0-9_-]{22}/[\w.]+", text)
        assert len(found) == 3 and "example" not in text, text
        assert [names.url_of(p, now) for p in found] == [
            "https://mirror.example/vmlinuz",
            "http://api.example/pxe/preseed.cfg",  # the cmdline comes before on grub's line
            "http://api.example/pxe/initrd.gz",
        ] if render is render_grub else [
            "http://api.example/pxe/initrd.gz",
            "https://mirror.example/vmlinuz",
            "http://api.example/pxe/preseed.cfg",
        ], text  # fmt: skip
        assert names.url_of(found[0].replace("52-54-00-22-02-51", "52-54-00-22-02-52"), now) is None
    plain = render_ipxe(decision.profile, replace(f, http_base=None), names.naming(MAC, now))
    assert b"url=http://api.example/pxe/preseed.cfg" in plain
    assert b"kernel https://mirror.example/vmlinuz" in plain
