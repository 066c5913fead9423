"""Profiles rendered for one machine: its iPXE script, its grub configuration (Secure
Boot chains) and its first stage (a profile's per-family ``bootfile`` table). Pure code.

Templates: ``{{ NAME }}`` in `kernel`, `initrd`, `cmdline` and `ipxe-script` becomes
the machine's fact (`FACTS`); iPXE's own ``${...}`` and grub's ``$var`` pass through
untouched. A name that is not a fact is a settings error at load (`check_template`).
Facts come partly from the machine itself (hostname, vendor class): every value put
into a script is reduced to characters that cannot start a new command or argument
(`_safe`); an unsafe value renders empty.

File names in a profile are relative to ROOT (or URLs): iPXE gets them as URLs on
pxed's HTTP server (``--http-port``), else as ``tftp://SERVER/NAME``; grub gets
``(tftp,SERVER)/NAME`` or ``(http,SERVER:PORT)/NAME``. An http(s) kernel or initrd
URL is given as is, or, with a `Remote` naming (pxed with ``--http-port``), as the
path pxed streams it from (`ptftpd.pxe.remote`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from ptftpd.dhcp.options import arch_name
from ptftpd.pxe.decision import Decision, Kind, MachineFacts, Profile
from ptftpd.pxe.firmware import BootClass

__all__ = [
    "FACTS",
    "LOCAL_SCRIPT",
    "check_template",
    "first_stage",
    "render",
    "render_grub",
    "render_ipxe",
    "root_url",
]

FACTS = ("mac", "mac-hyphen", "ip", "uuid", "arch", "hostname", "server", "http", "base", "profile")
_PLACE = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_-]*)\s*\}\}")
_OPEN = re.compile(r"\{\{")
_SAFE = re.compile(r"[A-Za-z0-9._:/\[\]@%+=,-]*")
_ID = re.compile(r'\{\{\s*ID\s+"([^"]*)"\s*\}\}')  # a remote URL of the API's cmdline

Remote = Callable[[str], str]
"""An http(s) URL -> the path (under pxed's HTTP server) that streams it."""

LOCAL_SCRIPT = b"#!ipxe\necho pxed: booting from the next boot device\nexit\n"


def check_template(text: str) -> None:
    """ValueError naming the first ``{{ ... }}`` that is not a known fact."""
    for match in _OPEN.finditer(text):
        place = _PLACE.match(text, match.start())
        if place is None:
            raise ValueError(f"unfinished template at {text[match.start() : match.start() + 20]!r}")
        name = place.group(1).replace("_", "-")
        if name not in FACTS:
            raise ValueError(f"{{{{ {place.group(1)} }}}}: unknown fact; facts: {', '.join(FACTS)}")


def _safe(value: str | None) -> str:
    """`value` when it holds only characters that cannot break a script line or word."""
    if value is None or not _SAFE.fullmatch(value) or len(value) > 255:
        return ""
    return value


def root_url(facts: MachineFacts) -> str:
    """Where ROOT is served: pxed's HTTP server, else its TFTP server."""
    if facts.http_base is not None:
        return facts.http_base
    host = facts.server if ":" not in facts.server else f"[{facts.server}]"
    return f"tftp://{host}"


def fact_values(facts: MachineFacts, profile: Profile | None) -> dict[str, str]:
    return {
        "mac": facts.mac,
        "mac-hyphen": facts.mac.replace(":", "-"),
        "ip": "" if facts.ip is None else str(facts.ip),
        "uuid": facts.uuid or "",
        "arch": "" if facts.arch is None else arch_name(facts.arch).replace(" ", "-"),
        "hostname": facts.hostname or "",
        "server": facts.server,
        "http": facts.http_base or "",
        "base": root_url(facts),
        "profile": "" if profile is None else profile.name,
    }


def fill(template: str, values: Mapping[str, str]) -> str:
    """Every ``{{ NAME }}`` of a checked template replaced by its (safe) value."""
    return _PLACE.sub(lambda m: _safe(values.get(m.group(1).replace("_", "-"))), template)


def _streamed(name: str, facts: MachineFacts, remote: Remote | None) -> str | None:
    """The path pxed streams `name` from, when it is an http(s) URL pxed fetches."""
    if remote is None or facts.http_base is None:
        return None
    if urlsplit(name).scheme not in ("http", "https"):
        return None
    return remote(name)


def _url(name: str, base: str, facts: MachineFacts, remote: Remote | None) -> str:
    streamed = _streamed(name, facts, remote)
    if streamed is not None:
        return f"{facts.http_base}/{streamed}"
    if "://" in name:
        return name
    return f"{base}/{name.lstrip('/')}"


def _cmdline(
    profile: Profile, values: Mapping[str, str], facts: MachineFacts, remote: Remote | None
) -> str:
    """The profile's command line filled; a remote URL the decision API named with
    ``{{ ID "URL" }}`` (`ptftpd.pxe.bootapi`) as the path pxed streams it from."""
    text = fill(profile.cmdline, values)
    return _ID.sub(lambda m: _url(m.group(1), "", facts, remote), text)


def render_ipxe(profile: Profile, facts: MachineFacts, remote: Remote | None = None) -> bytes:
    """The iPXE script of `profile` for this machine (kernel/initrd/cmdline, or the
    profile's own script, or `exit` for local); `remote` names the URLs pxed streams."""
    values = fact_values(facts, profile)
    if profile.local:
        return LOCAL_SCRIPT
    if profile.ipxe_script is not None:
        script = fill(profile.ipxe_script, values)
        return (script if script.endswith("\n") else script + "\n").encode()
    if profile.kernel is None:
        raise ValueError(f"profile {profile.name} has no kernel or script")
    base = root_url(facts)
    names = [f"initrd{i}" for i in range(len(profile.initrd))]
    cmdline = _cmdline(profile, values, facts, remote)
    lines = ["#!ipxe", f"echo pxed: profile {profile.name} for {facts.mac}"]
    for name, initrd in zip(names, profile.initrd, strict=True):
        lines.append(f"initrd --name {name} {_url(fill(initrd, values), base, facts, remote)}")
    # The EFI stub finds its initrds by name on the command line (as pixiecore writes it).
    args = " ".join([*(f"initrd={n}" for n in names), *([cmdline] if cmdline else [])])
    kernel = _url(fill(profile.kernel, values), base, facts, remote)
    lines.append(f"kernel {kernel}" + (f" {args}" if args else ""))
    lines.append("boot")
    return ("\n".join(lines) + "\n").encode()


def _grub_path(name: str, facts: MachineFacts, remote: Remote | None) -> str:
    streamed = _streamed(name, facts, remote)
    if streamed is not None and facts.http_base is not None:
        name = f"{facts.http_base}/{streamed}"
    if "://" not in name:
        return "/" + name.lstrip("/")  # grub's root is the server it booted from
    url = urlsplit(name)
    return f"({url.scheme},{url.netloc}){url.path}"


def render_grub(profile: Profile, facts: MachineFacts, remote: Remote | None = None) -> bytes:
    """The same recipe as a grub configuration (Secure Boot chains: shim -> grub)."""
    values = fact_values(facts, profile)
    lines = [f"echo 'pxed: profile {profile.name} for {facts.mac}'"]
    if profile.local:
        lines.append("exit")
    elif profile.kernel is not None:
        kernel = _grub_path(fill(profile.kernel, values), facts, remote)
        cmdline = _cmdline(profile, values, facts, remote)
        lines.append(f"linux {kernel}" + (f" {cmdline}" if cmdline else ""))
        if profile.initrd:
            paths = " ".join(_grub_path(fill(i, values), facts, remote) for i in profile.initrd)
            lines.append(f"initrd {paths}")
        lines.append("boot")
    else:
        raise ValueError(f"profile {profile.name} has no kernel for grub")
    return ("\n".join(lines) + "\n").encode()


def render(decision: Decision, facts: MachineFacts, remote: Remote | None = None) -> bytes | None:
    """What iPXE gets for this decision: its script, `exit` for local, None when the
    decision has no script (pxed's --ipxe-bootfile then applies)."""
    if decision.kind is Kind.LOCAL:
        return LOCAL_SCRIPT
    profile = decision.profile
    if decision.kind is not Kind.BOOT or profile is None or not profile.has_script:
        return None
    return render_ipxe(profile, facts, remote)


def first_stage(profile: Profile | None, family: BootClass | None) -> str | None:
    """The profile's first stage for a firmware family (its ``bootfile`` table: the
    family's entry, else its ``default``), or None: pxed's own table applies."""
    if profile is None or not profile.bootfile:
        return None
    table = profile.bootfile
    if family is not None and family.value in table:
        return table[family.value]
    return table.get("default")
