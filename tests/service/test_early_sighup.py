"""A SIGHUP that reaches a server after its ports are bound but before its signal
handlers are in place (a test or an operator sees the port and reloads at once) is held
and served as a reload: the default action would end the server (seen in CI: dhcpd died
of a SIGHUP sent right after port 67 appeared)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# The server "binds" in start() and a SIGHUP arrives at that very moment; its reload
# answers by stopping the server with SIGTERM, so the run ends by itself.
SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from ptftpd.service import runtime
    from ptftpd.service.service_settings import ServiceSettings

    class Server:
        reloads = 0
        def active(self): return 0
        def stop_accepting(self): pass
        def close(self): pass
        def reload(self):
            Server.reloads += 1
            os.kill(os.getpid(), signal.SIGTERM)
            return "held reload"

    async def start():
        os.kill(os.getpid(), signal.SIGHUP)  # bound, handlers not yet in place
        return Server()

    status = runtime.run("early", ServiceSettings(drain=0.0), start)
    print("reloads", Server.reloads, "status", status)
    """
)


def test_a_sighup_during_start_up_is_a_reload_not_the_end() -> None:
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, (res.returncode, res.stderr)
    assert "reloads 1 status 0" in res.stdout, res.stdout + res.stderr


# The same for a stop: SIGTERM (systemctl stop, a test's stop right after the "serving"
# line) while start() still runs is held, then a clean stop (exit 0), not death by the
# signal; a second SIGTERM while start() is stuck ends the process by the signal.
STOP = textwrap.dedent(
    """
    import os, signal, sys, time
    from ptftpd.service import runtime
    from ptftpd.service.service_settings import ServiceSettings

    class Server:
        closed = 0
        def active(self): return 0
        def stop_accepting(self): pass
        def close(self): Server.closed += 1
        def reload(self): return ""

    async def start():
        os.kill(os.getpid(), signal.SIGTERM)  # bound, handlers not yet in place
        time.sleep(0.2)  # still starting (blocking) when it arrives
        if sys.argv[1] == "twice":  # stuck in a blocking call: a second one ends it
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        return Server()

    status = runtime.run("early", ServiceSettings(drain=0.0), start)
    print("closed", Server.closed, "status", status)
    """
)


def test_a_sigterm_during_start_up_is_a_clean_stop() -> None:
    res = subprocess.run(
        [sys.executable, "-c", STOP, "once"], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, (res.returncode, res.stderr)
    assert "closed 1 status 0" in res.stdout, res.stdout + res.stderr
    res = subprocess.run(
        [sys.executable, "-c", STOP, "twice"], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == -15, (res.returncode, res.stdout, res.stderr)
