"""Issue 22 item 2's remote files over the wire: a real pxed (full DHCP, ``--boot-api``,
``--http-port``) in a namespace; the pixiecore-format test API (pixie_api.py) names a
kernel, an initrd and (with pixiecore's ``{{ ID }}`` in the cmdline) a preseed file on
the test upstream (remote_upstream.py), all on the namespace's loopback; busybox
udhcpc is the machine's iPXE in a peer namespace and curl its downloads. The
machine's script names pxed, not the upstream; curl through pxed gets the exact
bytes; while the initrd's upstream is slow, TFTP and HTTP are served at once; with
the upstream stopped the kernel comes from the cache; a made-up path is 404; one log
line per remote fetch; the metrics count them."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pxe_harness import boot_network, udhcpc_ipxe
from test_remote import blob

from support import require_tool, script, wait_udp_bound

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

MAC = "52:54:00:22:02:61"
HERE = Path(__file__).parent
API_PORT = 8033
UP = "http://127.0.0.1:8034"
KERNEL = f"{UP}/files/vmlinuz"
INITRD = f"{UP}/slow/initrd.gz"  # its head after 3 s, then 1.6 s of body


def test_pxed_streams_and_caches_what_the_api_names(tmp_path: Path) -> None:
    curl = require_tool("curl")
    root = tmp_path / "root"
    root.mkdir()
    (root / "default.0").write_bytes(b"boot")
    (root / "local.bin").write_bytes(b"a local file\n")
    files = tmp_path / "files"
    files.mkdir()
    kernel, initrd = blob(2 * 1024 * 1024 + 5, "vmlinuz"), blob(256 * 1024, "initrd")
    (files / "vmlinuz").write_bytes(kernel)
    (files / "initrd.gz").write_bytes(initrd)
    (files / "preseed.cfg").write_text("d-i debian-installer/locale string en_US\n")
    answer = {
        "kernel": KERNEL,
        "initrd": [INITRD],
        "cmdline": 'console=ttyS0 url={{ ID "' + UP + '/files/preseed.cfg" }}',  # pixiecore's ID
    }
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({MAC: [0, 200, json.dumps(answer)]}))
    with boot_network(tmp_path) as net:
        client = net.peer("10.78.0.50")
        net.start([sys.executable, str(HERE / "pixie_api.py"), str(API_PORT), str(rules)], "api")
        up = net.start([sys.executable, str(HERE / "remote_upstream.py"), "8034", str(files)], "up")
        argv = [script("pxed"), "-v", "--http-port", "8080", "--range", "10.78.0.100",
                "10.78.0.120", "--leases", str(tmp_path / "leases.sqlite"),
                "--boot-api", f"http://127.0.0.1:{API_PORT}/", "--remote-max-file", "4000000",
                "--metrics", "127.0.0.1:9478",
                net.bridge, str(root), "default.0"]  # fmt: skip
        pxed = net.start(argv, "pxed")
        wait_udp_bound(4011, timeout=15, proc=pxed.proc, netns=net.ns.name)

        file, _ = udhcpc_ipxe(client, tmp_path, MAC)
        assert file is not None, pxed.output()[-3000:]
        got = client.run(curl, "-sS", "--max-time", "5", file, timeout=20).stdout
        urls = dict(re.findall(r"^(kernel|initrd) (?:--name initrd0 )?(\S+)", got, re.M))
        prefix = "http://10.78.0.1:8080/pxed/remote/52-54-00-22-02-61/"
        assert urls["kernel"].startswith(prefix) and urls["kernel"].endswith("/vmlinuz"), got
        assert urls["initrd"].startswith(prefix) and urls["initrd"].endswith("/initrd.gz"), got
        assert "127.0.0.1" not in got, got
        found = re.search(r" url=(\S+)", got)
        assert found is not None and found.group(1).startswith(prefix), got
        assert found.group(1).endswith("/preseed.cfg"), got
        preseed = client.run(curl, "-sS", "-f", found.group(1), timeout=20).stdout
        assert preseed == (files / "preseed.cfg").read_text()

        def fetch(url: str, out: Path) -> subprocess.CompletedProcess[str]:
            return client.run(curl, "-sS", "-f", "--max-time", "30", "-o", str(out), url,
                              timeout=40, check=False)  # fmt: skip

        # The kernel through pxed: the exact bytes.
        done = fetch(urls["kernel"], tmp_path / "k1")
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "k1").read_bytes() == kernel

        # The initrd's upstream is slow: meanwhile TFTP and HTTP answer at once.
        slow = subprocess.Popen(client.popen_argv(
            [curl, "-sS", "-f", "--max-time", "30", "-o", str(tmp_path / "i1"), urls["initrd"]]
        ))  # fmt: skip
        time.sleep(0.5)
        for url in ("tftp://10.78.0.1/default.0", "http://10.78.0.1:8080/local.bin"):
            done = client.run(curl, "-sS", "-o", "/dev/null", "-w", "%{time_total}",
                              "--max-time", "5", url, timeout=20)  # fmt: skip
            assert float(done.stdout) < 1.0, (url, done.stdout)
        assert slow.poll() is None  # still waiting for its upstream
        assert slow.wait(timeout=30) == 0
        assert (tmp_path / "i1").read_bytes() == initrd

        # The upstream stops: the cache answers.
        up.stop()
        done = fetch(urls["kernel"], tmp_path / "k2")
        assert done.returncode == 0, done.stderr + pxed.output()[-2000:]
        assert (tmp_path / "k2").read_bytes() == kernel

        # Only what the decision named: a made-up token is 404.
        made_up = urls["kernel"].rsplit("/", 2)[0] + "/" + "x" * 22 + "/vmlinuz"
        done = client.run(curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}", made_up,
                          timeout=20, check=False)  # fmt: skip
        assert done.stdout == "404"
        text = net.ns.run(curl, "-sS", "http://127.0.0.1:9478/metrics", timeout=20).stdout
        samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line[:1] != "#")
        counts = {o: samples.get(f'ptftpd_pxe_remote_files_total{{outcome="{o}"}}') for o in
                  ("hit", "miss")}  # fmt: skip
        assert counts == {"hit": "1.0", "miss": "3.0"}, text
        fetched = float(samples["ptftpd_pxe_remote_fetched_bytes_total"])
        preseed_size = (files / "preseed.cfg").stat().st_size
        assert fetched == len(kernel) + len(initrd) + preseed_size, text
        assert pxed.stop() == 0
        log = pxed.output()
    assert "Traceback" not in log
    lines = [x for x in log.splitlines() if "remote http://127.0.0.1:8034/" in x]
    miss = [x for x in lines if "files/vmlinuz" in x and "cache miss" in x]
    assert len(miss) == 1 and f"{len(kernel)} bytes" in miss[0], lines
    assert sum("files/vmlinuz" in x and "cache hit" in x for x in lines) == 1, lines
    assert any("slow/initrd.gz" in x and "cache miss, cached" in x for x in lines), lines
    cached = sorted(p.name for p in (tmp_path / "pxed-br0-remote").iterdir())
    urls = (KERNEL, INITRD, f"{UP}/files/preseed.cfg")
    keys = [hashlib.sha256(url.encode()).hexdigest() for url in urls]
    assert cached == sorted(keys)
