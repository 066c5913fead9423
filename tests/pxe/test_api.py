"""Issue 23 item 3: `pxed --api ADDR:PORT` over real sockets.

A real pxed (full DHCP mode) in a namespace; a peer namespace plays the machine with
busybox udhcpc (DISCOVER/OFFER/REQUEST/ACK, PXE vendor class and architecture) and
tftp-hpa (the boot file); curl reads the API on the server namespace's loopback: the
event stream (a record within 2 s of its step), the machine's history, the filters and
their errors. No QEMU."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from pxe_harness import boot_network

from dhcp.dhcplab import wait_for
from support import free_udp_port, require_tool, script, wait_udp_bound

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

MAC = "52:54:00:aa:23:01"
CLIENT_IP = "10.78.0.50"
BOOT = b"ipxe" * 3000


def sse_records(text: str) -> list[dict[str, object]]:
    """The `boot` events' records in a Server-Sent Events stream read so far."""
    records = []
    for block in text.split("\n\n"):
        lines = block.split("\n")
        if "event: boot" in lines:
            [data] = [line[6:] for line in lines if line.startswith("data: ")]
            records.append(json.loads(data))
    return records


@pytest.mark.parametrize("workers", ["1", "2"], ids=["tftp-in-pxed", "tftp-workers"])
def test_api_answers_the_boot_record_live_and_on_request(tmp_path: Path, workers: str) -> None:
    curl, tftp, udhcpc = require_tool("curl"), require_tool("tftp"), require_tool("udhcpc")
    root = tmp_path / "root"
    root.mkdir()
    (root / "ipxe.efi").write_bytes(BOOT)
    (root / "default.0").write_bytes(b"boot")
    with boot_network(tmp_path) as net:
        client = net.peer(CLIENT_IP)
        client.run("ip", "link", "set", "eth0", "address", MAC)
        port = free_udp_port()  # a free number; the API takes it on TCP in the namespace
        api = f"http://127.0.0.1:{port}"
        argv = [script("pxed"), "-v", "--api", f"127.0.0.1:{port}", "--http-port", "8080",
                "--workers", workers,
                "--efi64-bootfile",
                "ipxe.efi", "--host", f"{MAC}={CLIENT_IP}", "--range", "10.78.0.100",
                "10.78.0.120", "--leases", str(tmp_path / "leases.sqlite"), net.bridge,
                str(root), "default.0"]  # fmt: skip
        pxed = net.start(argv, "pxed")
        wait_udp_bound(4011, timeout=15, proc=pxed.proc, netns=net.ns.name)

        def get(path: str) -> tuple[int, object]:
            out = net.ns.run(curl, "-s", "-w", "\n%{http_code}", api + path).stdout
            body, _, code = out.rpartition("\n")
            return int(code), json.loads(body)

        events = net.start([curl, "-sN", api + "/v1/events"], "events")
        wait_for(lambda: "retry: 2000" in events.output(), 10, "the event stream to open")

        # The machine: DHCP with a PXE vendor class and architecture 7 (x64 UEFI)...
        dhcp = [udhcpc, "-i", "eth0", "-n", "-q", "-f", "-t", "3", "-T", "2", "-s", "/bin/true",
                "-V", "PXEClient:Arch:00007:UNDI:003000", "-x", "0x5d:0007"]  # fmt: skip
        client.run(*dhcp, timeout=30)
        acked = time.monotonic()

        def has(kind: str) -> object:
            return [
                r for r in sse_records(events.output())
                if r["mac"] == MAC and kind in [s["kind"] for s in r["steps"]]  # type: ignore[attr-defined]
            ]  # fmt: skip

        wait_for(lambda: has("dhcp.ack"), 2.0, "the ACK's record on the event stream")
        print(f"ACK on the event stream {time.monotonic() - acked:.2f} s after udhcpc ended")
        # ... then its boot file over TFTP.
        work = tmp_path / "client"
        work.mkdir()
        fetch = f"cd {work} && {tftp} 10.78.0.1 -m octet -c get ipxe.efi"
        subprocess.run(client.popen_argv(["sh", "-c", fetch]), check=True, timeout=30)
        fetched = time.monotonic()
        assert (work / "ipxe.efi").read_bytes() == BOOT
        wait_for(lambda: has("tftp.done"), 2.0, "the transfer's record on the event stream")
        print(f"tftp.done on the event stream {time.monotonic() - fetched:.2f} s after tftp")
        last = has("tftp.done")[-1]  # type: ignore[index]
        assert last["state"] == "completed"
        # iPXE would fetch its next stage over HTTP (pxed's firmware port, not the API's).
        client.run(curl, "-sf", "-o", "/dev/null", "http://10.78.0.1:8080/ipxe.efi")
        wait_for(lambda: has("http.request"), 2.0, "the HTTP request on the event stream")

        code, machine = get(f"/v1/machines/{MAC.replace(':', '-').upper()}")
        assert code == 200, machine
        assert isinstance(machine, dict) and machine["mac"] == MAC
        [attempt] = machine["attempts"]
        assert attempt["state"] == "completed" and attempt["diagnosis"] == []
        # With a lease database pxed keeps the records there (shared by the servers using
        # it): each names the server that saw it, on the stream and in answers alike.
        assert attempt["server"] and last["server"] == attempt["server"], (last, attempt)
        kinds = [s["kind"] for s in attempt["steps"]]
        assert kinds == [
            "dhcp.discover",
            "lease.offered",
            "dhcp.offer",
            "dhcp.request",
            "lease.bound",
            "dhcp.ack",
            "tftp.request",
            "tftp.done",
            "http.request",
        ]
        assert attempt["steps"][0]["vendor_class"] == "PXEClient:Arch:00007:UNDI:003000"
        assert attempt["steps"][-2]["bytes"] == len(BOOT)
        http = attempt["steps"][-1]
        assert (http["file"], http["status"], http["bytes"]) == ("ipxe.efi", 200, len(BOOT))
        assert abs(http["time"] - time.time()) < 30  # wall-clock times

        # Filters and their errors.
        assert get(f"/v1/boots?mac={MAC}&state=completed")[1] == {"boots": [attempt]}
        assert get("/v1/boots?state=failed") == (200, {"boots": []})
        assert get(f"/v1/boots?since={time.time() + 3600:.0f}") == (200, {"boots": []})
        assert get("/v1/boots?since=2000-01-01T00:00:00Z")[1] == {"boots": [attempt]}
        for bad in ("state=done", "mac=zz:zz", "since=yesterday", "limit=0", "color=red"):
            code, body = get(f"/v1/boots?{bad}")
            assert code == 400 and isinstance(body, dict) and "error" in body, (bad, body)
        code, body = get("/v1/machines/52:54:00:00:00:99")
        assert (code, body) == (404, {"error": "no boot attempt of 52:54:00:00:00:99 is kept"})
        assert get("/v1/machines/not-a-mac")[0] == 400
        page = net.ns.run(curl, "-s", "-i", api + "/").stdout
        assert page.startswith("HTTP/1.1 200") and "new EventSource(" in page
        head, _, body = page.partition("\n\n")
        assert "text/html" in head
        for external in ("http:", "https:", "<link", " src=", "@import"):  # self-contained
            assert external not in body, external
        events.stop()


@pytest.mark.parametrize(
    ("args", "config", "said"),
    [
        (["--api", "9470"], "", "--api: expected ADDR:PORT, e.g. 127.0.0.1:9469, not '9470'"),
        ([], 'api-token = "short"\n', "api-token: expected 16 to 512 printable ASCII"),
        (["--api-token", "x" * 20], "", "unrecognized arguments: --api-token"),
        (["--boot-records", "0"], "", "--boot-records"),
    ],
)
def test_api_settings_errors_are_one_line(
    tmp_path: Path, args: list[str], config: str, said: str
) -> None:
    """A bad --api, an api-token too short in the file, a token as a flag (never:
    it would show in ps) and no attempts kept are usage errors: one line, exit 2."""
    settings = tmp_path / "pxed.toml"
    settings.write_text(config)
    argv = [script("pxed"), "--config", str(settings), *args, "lo", str(tmp_path), "x"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert said in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
