"""What pxed does with one machine: the decision core (issue 22), pure code.

A DHCP (or DHCPv6) request becomes `MachineFacts` (what the machine says about itself
and where it is being served); a `Decider` turns facts into one `Decision`: boot a
`Profile` (a recipe: kernel/initrd/cmdline, an iPXE script, a per-architecture first
stage), go to the next boot device (`local`), or get no boot answer (`ignore`), and
says where the decision came from (`Source`), for the boot log line and the metrics.

Precedence, said once (`Decider` asks its sources in this order, the first that has an
opinion wins):

1. the machine's own state (`Source.LOCAL_STATE`: "boot local now, it is installed",
   or "install again"; `StateTable`, persisted elsewhere);
2. an inventory entry that matches it (`Source.INVENTORY`, `ptftpd.pxe.inventory`:
   ``[[pxed.machine]]`` selectors, first match wins);
3. a decision service (`Source.API`, or `Source.CACHE` when its last good answer for
   this machine stands in for a slow or failed one), when one is configured;
4. the inventory's ``default`` profile (`Source.DEFAULT`); without one, pxed's
   built-in firmware table (`Source.BUILTIN`: what pxed did before inventories).

Asynchronous sources (the decision API) plug in without I/O here: a source's
`decide(facts, now)` may return `Pending(deadline)` instead of an answer when it has
started (or needs) a request and has nothing to say yet. `Decider.decide` then returns
that `Pending` (the sources after it are not asked). The thin driver that owns the
socket (pxed's service) starts the request outside the core (one in flight per
machine; never awaited on the DHCP path), keeps or drops the DHCP request (firmware
retransmits its DISCOVER within seconds), and asks `decide` again when the source has
learned the answer or at the latest at `deadline`; at or after its deadline a source
must answer (its cached answer: `Source.CACHE`) or step aside (return None), so the
chain always ends in a `Decision` within the deadline. Sources are sans-IO objects:
facts and `now` (monotonic seconds) in, a decision out, no clock reads.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Protocol

from ptftpd.events import BootDecided

__all__ = [
    "BUILTIN",
    "Decider",
    "Decision",
    "DecisionSource",
    "Fallback",
    "Kind",
    "MachineFacts",
    "MachineState",
    "Pending",
    "Profile",
    "Source",
    "StateTable",
    "normal_mac",
]


class Kind(enum.Enum):
    """What the machine gets."""

    BOOT = "boot"
    """A boot answer: the profile's recipe (or, without one, the firmware table's file)."""
    LOCAL = "local"
    """Go to the next boot device: iPXE gets `exit`, a PXE ROM no boot file."""
    IGNORE = "ignore"
    """No boot answer at all (in full DHCP mode an address still, when one is due)."""


class Source(enum.Enum):
    """Where a decision came from (the boot log and the metrics name it)."""

    LOCAL_STATE = "local-state"
    INVENTORY = "inventory"
    API = "api"
    CACHE = "cache"
    DEFAULT = "default"
    BUILTIN = "builtin"


Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network


def normal_mac(text: str) -> str:
    """``52:54:00:AB:00:01``, ``52-54-00-ab-00-01`` or ``525400ab0001`` ->
    ``52:54:00:ab:00:01``; ValueError for anything that is not 6 bytes of hex."""
    digits = text.strip().lower().replace(":", "").replace("-", "").replace(".", "")
    if len(digits) != 12 or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError(f"not a MAC address: {text!r}")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


@dataclass(frozen=True)
class MachineFacts:
    """What is known about a machine asking to boot, and where it is served.

    From the request: `mac` (lower-case, colon-separated), `uuid` (option 97 / the
    DHCPv6 DUID-UUID, as 32 lower-case hex digits), `arch` (IANA code), `vendor_class`,
    `user_classes`, `hostname` (as the machine or a static host entry names it), `ip`
    (its address, when known), `exchange` (the DHCPv4 xid). From the server: `subnet`
    (the network the request is served on), `server` (the address boot URLs name),
    `http_base`
    (``http://10.0.0.1:8080`` with --http-port, else None). `ipxe`: the request comes
    from iPXE (it wants a script, not a first stage)."""

    mac: str
    server: str
    ip: Address | None = None
    uuid: str | None = None
    arch: int | None = None
    vendor_class: str | None = None
    user_classes: tuple[str, ...] = ()
    hostname: str | None = None
    subnet: Network | None = None
    http_base: str | None = None
    ipxe: bool = False
    exchange: int | None = None
    """The DHCPv4 transaction id (xid): a machine's requests of one exchange share it
    (retransmitted DISCOVERs, the REQUEST after the OFFER). None: not DHCPv4."""
    requesting: bool = False
    """A DHCPREQUEST (it goes on with an exchange; a DISCOVER after one starts anew)."""


@dataclass(frozen=True)
class Profile:
    """One boot recipe, ``[pxed.profile.NAME]``: `kernel` + `initrd` + `cmdline`, or
    an `ipxe_script`, or `local` / `ignore`; `bootfile` maps a firmware family
    (``bios``, ``efi32``, ``efi64``, ``arm64``) to the first stage it gets instead of
    pxed's table (e.g. shim -> grub for Secure Boot). Paths are relative to ROOT (or
    URLs); text is templated with the facts (`ptftpd.pxe.recipes`)."""

    name: str
    kernel: str | None = None
    initrd: tuple[str, ...] = ()
    cmdline: str = ""
    ipxe_script: str | None = None
    bootfile: Mapping[str, str] = field(default_factory=dict)
    local: bool = False
    ignore: bool = False

    @property
    def kind(self) -> Kind:
        if self.ignore:
            return Kind.IGNORE
        if self.local:
            return Kind.LOCAL
        return Kind.BOOT

    @property
    def has_script(self) -> bool:
        """iPXE gets a script of this profile (not pxed's --ipxe-bootfile)."""
        return self.kernel is not None or self.ipxe_script is not None


@dataclass(frozen=True)
class Decision:
    """The outcome for one machine: `kind`, the `profile` (None: pxed's built-in
    firmware table, or no recipe for local/ignore), where it came from (`source`) and
    which rule said so (`rule`: ``machine #2``, ``default``, the API's URL...)."""

    kind: Kind
    source: Source
    profile: Profile | None = None
    rule: str = ""

    @property
    def profile_name(self) -> str:
        return "-" if self.profile is None else self.profile.name

    def describe(self) -> str:
        """``boot debian (inventory machine #2)``: for the boot log line."""
        what = self.kind.value
        if self.profile is not None:
            what = f"{what} {self.profile.name}"
        where = self.source.value if not self.rule else f"{self.source.value} {self.rule}"
        return f"{what} ({where})"

    def event(self, mac: str) -> BootDecided:
        """The typed event the boot timeline records as the attempt's `decision` step."""
        profile = None if self.profile is None else self.profile.name
        return BootDecided(mac, self.kind.value, self.source.value, profile, self.rule)


BUILTIN = Decision(Kind.BOOT, Source.BUILTIN)
"""No inventory, no default profile: pxed's firmware table, as before issue 22."""


@dataclass(frozen=True)
class Pending:
    """An asynchronous source has no answer yet; ask again when it learns one, and at
    the latest at `deadline` (monotonic seconds)."""

    source: Source
    deadline: float


class DecisionSource(Protocol):
    """One link of the chain: a decision, `Pending`, or None (no opinion: next link)."""

    def decide(self, facts: MachineFacts, now: float) -> Decision | Pending | None: ...


class MachineState(enum.Enum):
    """A machine's own boot state (item 5 of issue 22 sets it)."""

    LOCAL = "local"
    """Installed: boot the local disk."""
    INSTALL = "install"
    """Install (again): the normal chain decides (the state says nothing)."""


class StateTable:
    """`Source.LOCAL_STATE`: machines marked "boot local" (by MAC). Whoever persists
    the states (the lease database, a state file) fills it; pure and in memory."""

    def __init__(self, states: Mapping[str, MachineState] | None = None) -> None:
        self.states: dict[str, MachineState] = {
            normal_mac(mac): state for mac, state in (states or {}).items()
        }

    def set(self, mac: str, state: MachineState) -> None:
        self.states[normal_mac(mac)] = state

    def decide(self, facts: MachineFacts, now: float) -> Decision | None:
        if self.states.get(facts.mac) is MachineState.LOCAL:
            return Decision(Kind.LOCAL, Source.LOCAL_STATE, rule="marked local")
        return None


class Fallback:
    """The end of the chain: the ``default`` profile, else pxed's built-in table, or
    (pixiecore's rule when only an API decides) `ignore`."""

    def __init__(self, default: Profile | None, otherwise: Decision = BUILTIN) -> None:
        self.default = default
        self.otherwise = otherwise

    def decide(self, facts: MachineFacts, now: float) -> Decision:
        if self.default is None:
            return self.otherwise
        return Decision(self.default.kind, Source.DEFAULT, self.default)


class Decider:
    """The chain of item 3: `sources` in precedence order (state, inventory, API),
    then `fallback`. Pure: facts and `now` in, one `Decision` (or `Pending`) out."""

    def __init__(
        self, sources: Sequence[DecisionSource] | Iterable[DecisionSource], fallback: Fallback
    ) -> None:
        self.sources = tuple(sources)
        self.fallback = fallback

    def decide(self, facts: MachineFacts, now: float) -> Decision | Pending:
        for source in self.sources:
            answer = source.decide(facts, now)
            if answer is not None:
                return answer
        return self.fallback.decide(facts, now)
