"""The inventory: ``[[pxed.machine]]`` selectors naming ``[pxed.profile.NAME]`` recipes.

A machine entry selects by any of `mac` (one or a list), `uuid`, `architecture` (an
IANA code or a family: ``bios``, ``efi32``, ``efi64``, ``arm64``), `vendor-class` and
`user-class` (glob patterns, e.g. ``"PXEClient:Arch:00007*"``), `subnet` (CIDR: the
machine's address, or the network it is served on, lies inside) and `hostname` (glob).
All keys an entry gives must match; a list means any of its items; the first entry
that matches wins and names its `profile`. ``[pxed.profile.default]`` is for machines
no entry matches.

`inventory_from(settings)` reads the two keys of pxed's settings (``machine``,
``profile``) into an `Inventory`; a bad entry is a `ConfigError` that names its place
(``FILE:LINE: machine.mac: ...``). Matching is pure: `Inventory.decide(facts, now)`,
a `DecisionSource` (`ptftpd.pxe.decision`); MAC-selected entries are indexed, so a
thousand machines cost a dictionary lookup, not a thousand comparisons.
"""

from __future__ import annotations

import fnmatch
import heapq
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path

from ptftpd.config import ConfigError, Where, shown, suggestion
from ptftpd.pxe.decision import Decision, MachineFacts, Network, Profile, Source, normal_mac
from ptftpd.pxe.firmware import BootClass, arch_class
from ptftpd.pxe.recipes import check_template

__all__ = [
    "FAMILIES",
    "MACHINE_KEYS",
    "MAX_SCRIPT",
    "PROFILE_KEYS",
    "Inventory",
    "MachineEntry",
    "inventory_from",
]

MACHINE_KEYS = (
    "mac",
    "uuid",
    "architecture",
    "vendor-class",
    "user-class",
    "subnet",
    "hostname",
    "profile",
    "name",
)
PROFILE_KEYS = ("kernel", "initrd", "cmdline", "ipxe-script", "bootfile", "local", "ignore")
FAMILIES = tuple(c.value for c in BootClass)
MAX_SCRIPT = 64 * 1024
"""An ``ipxe-script`` file larger than this is a mistake (scripts are a few lines)."""

_UUID = re.compile(r"[0-9a-f]{32}")


def normal_uuid(text: str) -> str:
    """``8-4-4-4-12`` or 32 hex digits (any case) -> 32 lower-case hex digits."""
    digits = text.strip().lower().replace("-", "").strip("{}")
    if not _UUID.fullmatch(digits):
        raise ValueError(f"not a UUID: {text!r}")
    return digits


@dataclass(frozen=True)
class MachineEntry:
    """One ``[[pxed.machine]]``: every selector given must match (None: not given)."""

    index: int
    profile: str
    name: str | None = None
    macs: frozenset[str] | None = None
    uuids: frozenset[str] | None = None
    arches: frozenset[int] | None = None
    families: frozenset[str] | None = None
    vendor_classes: re.Pattern[str] | None = None
    user_classes: re.Pattern[str] | None = None
    subnets: tuple[Network, ...] | None = None
    hostnames: re.Pattern[str] | None = None
    """Glob patterns (a list: any of them), compiled into one expression each."""

    @property
    def rule(self) -> str:
        return f"machine {self.name}" if self.name else f"machine #{self.index + 1}"

    def matches(self, facts: MachineFacts) -> bool:
        if self.macs is not None and facts.mac not in self.macs:
            return False
        if self.uuids is not None and facts.uuid not in self.uuids:
            return False
        if (self.arches is not None or self.families is not None) and not self._arch(facts):
            return False
        if self.vendor_classes is not None and not _glob_any(
            self.vendor_classes, (facts.vendor_class,) if facts.vendor_class else ()
        ):
            return False
        if self.user_classes is not None and not _glob_any(self.user_classes, facts.user_classes):
            return False
        if self.subnets is not None and not self._subnet(facts):
            return False
        return self.hostnames is None or _glob_any(
            self.hostnames, (facts.hostname.lower(),) if facts.hostname else ()
        )

    def _arch(self, facts: MachineFacts) -> bool:
        if facts.arch is None:
            return False
        if self.arches is not None and facts.arch in self.arches:
            return True
        family = arch_class(facts.arch, http=True)
        return self.families is not None and family is not None and family.value in self.families

    def _subnet(self, facts: MachineFacts) -> bool:
        assert self.subnets is not None
        for net in self.subnets:
            if facts.ip is not None and facts.ip.version == net.version and facts.ip in net:
                return True
            where = facts.subnet
            if where is not None and where.version == net.version and where.subnet_of(net):  # type: ignore[arg-type]
                return True
        return False


def _glob_any(pattern: re.Pattern[str], values: Sequence[str]) -> bool:
    return any(pattern.match(v) is not None for v in values)


def _globs(patterns: Sequence[str]) -> re.Pattern[str]:
    """Glob patterns (fnmatch, case-sensitive) as one compiled expression: any of them."""
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


class Inventory:
    """The machine entries and profiles of one settings file (`Source.INVENTORY`)."""

    def __init__(self, entries: Sequence[MachineEntry], profiles: Mapping[str, Profile]) -> None:
        self.entries = tuple(entries)
        self.profiles = dict(profiles)
        self._by_mac: dict[str, list[int]] = {}
        self._any_mac: list[int] = []
        for entry in self.entries:
            if entry.macs is None:
                self._any_mac.append(entry.index)
            else:
                for mac in entry.macs:
                    self._by_mac.setdefault(mac, []).append(entry.index)

    @property
    def default(self) -> Profile | None:
        return self.profiles.get("default")

    def __len__(self) -> int:
        return len(self.entries)

    def match(self, facts: MachineFacts) -> MachineEntry | None:
        """The first entry (in file order) whose selectors all match `facts`."""
        candidates = heapq.merge(self._by_mac.get(facts.mac, ()), self._any_mac)
        for index in candidates:
            entry = self.entries[index]
            if entry.matches(facts):
                return entry
        return None

    def decide(self, facts: MachineFacts, now: float) -> Decision | None:
        entry = self.match(facts)
        if entry is None:
            return None
        profile = self.profiles[entry.profile]
        return Decision(profile.kind, Source.INVENTORY, profile, entry.rule)


EMPTY = Inventory((), {})


# -- reading the settings --------------------------------------------------------------


def _texts(value: object, at: Where, what: str) -> list[str]:
    """A string or a non-empty list of strings."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"expected {what} or a list of them, got {_shown(value)}", at)
    return [str(i) for i in items]


def _shown(value: object) -> str:
    return shown(value)


def _known(table: Mapping[str, object], known: Sequence[str], at: Where) -> None:
    for key in table:
        if key not in known:
            hint = suggestion(str(key), known)
            what = hint or f"; valid keys: {', '.join(sorted(known))}"
            raise ConfigError(f"unknown key{what}", (*at, str(key)))


def _machine(index: int, table: object, profiles: Mapping[str, object]) -> MachineEntry:
    at: Where = ("machine", index)
    if not isinstance(table, Mapping):
        raise ConfigError(f"expected a [[machine]] table, got {_shown(table)}", at)
    _known(table, MACHINE_KEYS, at)
    profile = table.get("profile")
    if not isinstance(profile, str):
        raise ConfigError(
            'every [[machine]] names the profile it boots: profile = "NAME"', (*at, "profile")
        )
    if profile not in profiles:
        known = ", ".join(sorted(profiles)) or "none defined"
        raise ConfigError(f"no [profile.{profile}] table (profiles: {known})", (*at, "profile"))
    name = table.get("name")
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"expected a string, got {_shown(name)}", (*at, "name"))
    if not any(k in table for k in MACHINE_KEYS if k not in ("profile", "name")):
        raise ConfigError(
            "selects nothing: give mac, uuid, architecture, vendor-class, user-class, "
            "subnet or hostname (unknown machines get [profile.default])",
            at,
        )
    values: dict[str, object] = {}
    for key, parse in (("mac", normal_mac), ("uuid", normal_uuid)):
        if key in table:
            items = _texts(table[key], (*at, key), f"a {key.upper()} string")
            try:
                values[key] = frozenset(parse(i) for i in items)
            except ValueError as exc:
                raise ConfigError(str(exc), (*at, key)) from None
    arches: set[int] = set()
    families: set[str] = set()
    if "architecture" in table:
        raw = table["architecture"]
        items_: list[object] = raw if isinstance(raw, list) else [raw]
        for item in items_:
            if isinstance(item, int) and not isinstance(item, bool) and 0 <= item <= 0xFFFF:
                arches.add(item)
            elif isinstance(item, str) and item.lower() in FAMILIES:
                families.add(item.lower())
            else:
                raise ConfigError(
                    f"expected an IANA architecture code (0-65535) or one of "
                    f"{', '.join(FAMILIES)}, got {_shown(item)}",
                    (*at, "architecture"),
                )
    subnets: list[Network] = []
    if "subnet" in table:
        for item in _texts(table["subnet"], (*at, "subnet"), 'a CIDR string ("10.0.0.0/24")'):
            try:
                subnets.append(ip_network(item, strict=False))
            except ValueError as exc:
                raise ConfigError(str(exc), (*at, "subnet")) from None
    globs = {}
    for key in ("vendor-class", "user-class", "hostname"):
        if key in table:
            items = _texts(table[key], (*at, key), "a pattern string")
            globs[key] = _globs([i.lower() if key == "hostname" else i for i in items])
    return MachineEntry(
        index=index,
        profile=profile,
        name=name,
        macs=values.get("mac"),  # type: ignore[arg-type]
        uuids=values.get("uuid"),  # type: ignore[arg-type]
        arches=frozenset(arches) if "architecture" in table and arches else None,
        families=frozenset(families) if "architecture" in table and families else None,
        vendor_classes=globs.get("vendor-class"),
        user_classes=globs.get("user-class"),
        subnets=tuple(subnets) if "subnet" in table else None,
        hostnames=globs.get("hostname"),
    )


def _profile(name: str, table: object, base: Path | None) -> Profile:
    at: Where = ("profile", name)
    if not isinstance(table, Mapping):
        raise ConfigError(f"expected a [profile.{name}] table, got {_shown(table)}", at)
    _known(table, PROFILE_KEYS, at)

    def text(key: str) -> str | None:
        value = table.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"expected a string, got {_shown(value)}", (*at, key))
        return value

    def flag(key: str) -> bool:
        value = table.get(key, False)
        if not isinstance(value, bool):
            raise ConfigError(f"expected true or false, got {_shown(value)}", (*at, key))
        return value

    kernel, cmdline, script = text("kernel"), text("cmdline"), text("ipxe-script")
    initrd: tuple[str, ...] = ()
    if "initrd" in table:
        initrd = tuple(_texts(table["initrd"], (*at, "initrd"), "a file path or URL string"))
    local, ignore = flag("local"), flag("ignore")
    bootfile: dict[str, str] = {}
    if "bootfile" in table:
        raw = table["bootfile"]
        if not isinstance(raw, Mapping) or not raw:
            raise ConfigError(
                f'expected a table of family = file, e.g. {{ efi64 = "shimx64.efi", '
                f'bios = "undionly.kpxe" }}, got {_shown(raw)}',
                (*at, "bootfile"),
            )
        for family, file in raw.items():
            if family not in (*FAMILIES, "default"):
                raise ConfigError(
                    f"{family}: not a firmware family ({', '.join((*FAMILIES, 'default'))})",
                    (*at, "bootfile"),
                )
            if not isinstance(file, str) or not file:
                raise ConfigError(
                    f"{family}: expected a file name, got {_shown(file)}", (*at, "bootfile")
                )
            bootfile[str(family)] = file
    recipes = [k for k, on in (("kernel", kernel), ("ipxe-script", script)) if on is not None]
    recipes += [k for k, on in (("local", local), ("ignore", ignore)) if on]
    if len(recipes) > 1:
        raise ConfigError(f"one recipe per profile: {' and '.join(recipes)} exclude each other", at)
    if (local or ignore) and bootfile:
        raise ConfigError(f"{recipes[0]} = true boots nothing: drop bootfile", (*at, "bootfile"))
    if kernel is None:
        for key in ("initrd", "cmdline"):
            if key in table:
                raise ConfigError("needs a kernel", (*at, key))
    if not recipes and not bootfile:
        raise ConfigError(
            "boots nothing: give kernel (initrd, cmdline), ipxe-script, bootfile, "
            "local = true or ignore = true",
            at,
        )
    if script is not None and not script.lstrip().startswith("#!ipxe"):
        script = _script_file(script, base, (*at, "ipxe-script"))
    for key, value in (("kernel", kernel), ("cmdline", cmdline), ("ipxe-script", script)):
        if value is not None:
            _checked(value, (*at, key))
    for item in initrd:
        _checked(item, (*at, "initrd"))
    return Profile(
        name=name,
        kernel=kernel,
        initrd=initrd,
        cmdline=cmdline or "",
        ipxe_script=script,
        bootfile=bootfile,
        local=local,
        ignore=ignore,
    )


def _checked(template: str, at: Where) -> None:
    try:
        check_template(template)
    except ValueError as exc:
        raise ConfigError(str(exc), at) from None


def _script_file(name: str, base: Path | None, at: Where) -> str:
    """An ``ipxe-script`` that is not inline (``#!ipxe``...) is a file, relative to the
    settings file's directory; read at (re)load, so a SIGHUP picks up its changes."""
    path = Path(name)
    if not path.is_absolute() and base is not None:
        path = base / path
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SCRIPT + 1)
    except OSError as exc:
        raise ConfigError(
            f"neither an inline script (#!ipxe...) nor a readable file: {path}: {exc.strerror}",
            at,
        ) from None
    if len(raw) > MAX_SCRIPT:
        raise ConfigError(f"{path}: larger than {MAX_SCRIPT // 1024} KiB: not an iPXE script", at)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text", at) from None
    if not text.lstrip().startswith("#!ipxe"):
        raise ConfigError(f"{path}: an iPXE script starts with #!ipxe", at)
    return text


def inventory_from(settings: Mapping[str, object], base: Path | None = None) -> Inventory:
    """The ``machine`` list and ``profile`` tables of pxed's settings (checked: raises
    ConfigError naming the place); `base`: the settings file's directory (for script
    files)."""
    raw_profiles = settings.get("profile") or {}
    if not isinstance(raw_profiles, Mapping):
        raise ConfigError(
            f"expected [profile.NAME] tables, got {_shown(raw_profiles)}", ("profile",)
        )
    profiles = {str(n): _profile(str(n), t, base) for n, t in raw_profiles.items()}
    raw_machines = settings.get("machine") or []
    if not isinstance(raw_machines, list):
        raise ConfigError(f"expected [[machine]] tables, got {_shown(raw_machines)}", ("machine",))
    entries = [_machine(i, t, profiles) for i, t in enumerate(raw_machines)]
    return Inventory(entries, profiles)
