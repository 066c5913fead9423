"""Issue 24: a good reload is an INFO line; a drain's start and end are logged once."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from support import (
    Process,
    free_udp_port,
    require_tool,
    script,
    wait_signal_ready,
    world_readable_dir,
)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_reload_is_info_and_the_drain_is_said(tmp_path: Path, workers: str) -> None:
    with world_readable_dir("ptftpd-op-") as root:
        config = root / "ptftpd.toml"  # USER (nobody) re-reads it
        config.write_text("max-sessions = 9\n")
        config.chmod(0o644)
        argv = [script("ptftpd"), "-v", "--read-only", "--workers", workers, "--user", "nobody"]
        port = free_udp_port()
        argv += ["-p", str(port), "--config", str(config), "127.0.0.1", str(root)]
        server = Process(argv, tmp_path / "s.log")
        try:
            server.wait_output("serving", timeout=20)
            # "serving" is logged at the bind, before the signal handlers
            wait_signal_ready(server.proc.pid, signal.SIGHUP)
            config.write_text("max-sessions = 3\n")
            server.proc.send_signal(signal.SIGHUP)
            server.wait_output("reloaded:", timeout=20)
        finally:
            assert server.stop() == 0
        lines = server.output().splitlines()
        # one "serving" and one "reloaded" line for the service, whatever its workers
        parent = [line for line in lines if "reloaded:" in line]
        assert len(parent) == 1 and "[worker" not in parent[0], lines
        assert " INFO: reloaded: " in parent[0], parent
        serving = [line for line in lines if "INFO: serving " in line]
        assert len(serving) == 1 and "[worker" not in serving[0], lines
        if workers == "2":
            assert serving[0].endswith(f"on 127.0.0.1 port {port} (2 workers)"), serving
            assert parent[0].endswith("(2 workers)"), parent
        assert not [line for line in lines if "WARNING: reloaded" in line]
        starts = [line for line in lines if "stopping:" in line]
        ends = [line for line in lines if "drained:" in line]
        assert len(starts) == 1 and " INFO: " in starts[0], lines
        assert len(ends) == 1 and " INFO: " in ends[0], lines


def test_a_map_file_line_shows_requested_and_served_names(tmp_path: Path) -> None:
    curl = require_tool("curl")
    with world_readable_dir("ptftpd-op-") as root:
        (root / "bios").mkdir(mode=0o755)
        (root / "bios" / "pxelinux.0").write_bytes(b"boot\n")
        (root / "plain.txt").write_bytes(b"plain\n")
        rules = tmp_path / "map"
        rules.write_text("r ^pxelinux\\.0$ bios/pxelinux.0\n")
        port = str(free_udp_port())
        argv = [script("ptftpd"), "-v", "--read-only", "--workers", "1", "-p", port]
        argv += ["--map-file", str(rules), "127.0.0.1", str(root)]
        server = Process(argv, tmp_path / "s.log")
        try:
            server.wait_output("serving", timeout=20)
            for name in ("pxelinux.0", "plain.txt"):
                got = subprocess.run(
                    [curl, "-s", "--max-time", "10", f"tftp://127.0.0.1:{port}/{name}"],
                    capture_output=True,
                    timeout=30,
                )
                assert got.returncode == 0, got
            server.wait_output("'plain.txt'", timeout=10)
        finally:
            server.stop()
        log = server.output()
        assert "RRQ 'pxelinux.0' -> 'bios/pxelinux.0' octet: sent 5 bytes" in log, log
        assert "RRQ 'plain.txt' octet: sent 6 bytes" in log, log
