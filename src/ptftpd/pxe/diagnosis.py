"""The diagnosis of a boot attempt: one line per common failure shape (issue 23).

Each rule reads an `Attempt` (`ptftpd.pxe.timeline`) and says one line or nothing;
`diagnose` lists the lines of every rule that matched, in the order of `RULES`.
"""

from __future__ import annotations

from collections.abc import Callable

from ptftpd.pxe.timeline import FAILED, STALLED, Attempt, Step

__all__ = ["RULES", "diagnose"]

# The largest TFTP block an Ethernet frame carries unfragmented: 1500 - IP 20 - UDP 8 - TFTP 4.
PATH_MTU_BLKSIZE = 1468
# A new DISCOVER this soon after a first stage went out looks like the firmware refused it.
SECURE_BOOT_WINDOW = 10.0

Rule = Callable[[Attempt], str | None]


def _steps(attempt: Attempt, *kinds: str) -> list[Step]:
    return [s for s in attempt.steps if s.kind in kinds]


def file_not_there(attempt: Attempt) -> str | None:
    """The first file asked for and not there since the last file that went out in
    full: a boot loader's search (pxelinux.cfg/01-MAC, the hex IPs, then `default`
    served) is how it finds its configuration, not a failure."""
    missing: str | None = None
    for step in attempt.steps:
        d = step.details
        tftp = step.kind in ("tftp.refused", "tftp.failed") and d.get("failure") == "not_found"
        http = step.kind == "http.request" and d.get("status") == 404
        if (tftp or http) and missing is None:
            via = "http" if http else "tftp"
            missing = f"file not there: the firmware asked for {d.get('file')} over {via}"
        elif step.kind == "tftp.done" or (
            step.kind == "http.request" and d.get("status") in (200, 206) and d.get("complete")
        ):
            missing = None
    return missing


def offered_never_requested(attempt: Attempt) -> str | None:
    if attempt.state != STALLED:
        return None
    offers = [i for i, s in enumerate(attempt.steps) if s.kind == "dhcp.offer"]
    if not offers:
        return None
    later = attempt.steps[offers[-1] :]
    if any(s.kind in ("dhcp.request", "tftp.request", "http.request") for s in later):
        return None
    address = attempt.steps[offers[-1]].details.get("address", "an address")
    return f"offered {address} but never requested (another DHCP server answered first?)"


def nak_or_decline(attempt: Attempt) -> str | None:
    for step in attempt.steps:
        address = step.details.get("address", "-")
        if step.kind == "dhcp.nak":
            return "address NAKed: the client asked for an address this server would not give"
        if step.kind in ("dhcp.decline", "lease.declined"):
            return f"address {address} declined by the client (in use on the link?)"
    return None


def tftp_stalled(attempt: Attempt) -> str | None:
    for step in reversed(_steps(attempt, "tftp.failed")):
        d = step.details
        if d.get("failure") not in ("timeout", "unanswered") or d.get("last_block") is None:
            continue
        line = (
            f"TFTP stalled at block {d['last_block']} of {d.get('file')}"
            f" after {d.get('retransmissions', 0)} retransmissions"
        )
        blksize = d.get("blksize")
        # Above 1468 a block needs fragments on any Ethernet path; a first block never
        # acknowledged with blocks above the basic 512 is the same symptom on a path
        # with a smaller MTU (a tunnel, a VLAN): the fragments were dropped.
        first = d["last_block"] == 1 and isinstance(blksize, int) and blksize > 512
        if isinstance(blksize, int) and (blksize > PATH_MTU_BLKSIZE or first):
            line += f" (blksize {blksize} above the path MTU: fragments lost?)"
        return line
    return None


def size_probe_then_again(attempt: Attempt) -> str | None:
    probed: set[str] = set()
    for step in attempt.steps:
        name = str(step.details.get("file"))
        if step.kind == "tftp.size_probe":
            probed.add(name)
        elif step.kind == "tftp.request" and name in probed:
            options = step.details.get("options", {})
            again = "without tsize" if "tsize" not in options else "again"
            return (
                f"the firmware aborted the transfer of {name} after learning its size"
                f" and asked {again} (normal for EDK2, not a failure)"
            )
    return None


def http_client_no_port(attempt: Attempt) -> str | None:
    if attempt.http_port is not None:
        return None
    for step in _steps(attempt, "dhcp.discover", "dhcp.request"):
        if str(step.details.get("vendor_class", "")).startswith("HTTPClient"):
            return "HTTP boot client, but no HTTP port configured (pxed --http-port)"
    return None


def secure_boot_refusal(attempt: Attempt) -> str | None:
    if attempt.after is None:
        return None
    name, gap = attempt.after
    if gap > SECURE_BOOT_WINDOW:
        return None
    again = [s for s in _steps(attempt, "tftp.request", "http.request")]
    if again and str(again[0].details.get("file")) != name:
        return None  # the next stage (iPXE chaining), not the same first stage again
    return (
        f"fetched {name}, then a new DISCOVER {gap:.1f} s later"
        " (Secure Boot refused the first stage?)"
    )


def decided_no_boot(attempt: Attempt) -> str | None:
    """A machine pxed decided `local` or `ignore` gets no boot file (a PXE ROM then
    boots its next device): its quiet end is what was decided, not a lost machine."""
    if attempt.state != STALLED:
        return None
    decided = _steps(attempt, "decision")
    if not decided or any(s.kind in ("tftp.request", "http.request") for s in attempt.steps):
        return None
    d = decided[-1].details
    if d.get("decision") not in ("local", "ignore"):
        return None
    rule = f" {d['rule']}" if d.get("rule") else ""
    what = "no boot file" if d["decision"] == "local" else "no boot answer"
    return (
        f"decided {d['decision']} ({d.get('source')}{rule}): {what}, the machine boots"
        " its next device (as decided, not a failure)"
    )


RULES: tuple[Rule, ...] = (
    file_not_there,
    offered_never_requested,
    nak_or_decline,
    tftp_stalled,
    size_probe_then_again,
    http_client_no_port,
    secure_boot_refusal,
    decided_no_boot,
)


def diagnose(attempt: Attempt) -> list[str]:
    lines = [line for rule in RULES if (line := rule(attempt)) is not None]
    if not lines and attempt.state == FAILED and attempt.reason:
        lines.append(attempt.reason)
    return lines
