"""pxed's per-machine answers (issue 22): the decision core applied to a DHCP request,
and the scripts it leaves for iPXE (and grub) to fetch. Sans-IO: requests and `now`
in; a choice, and bytes to serve by name, out.

For one DHCPv4 request (full or proxy mode) `Machines.choose` builds the
`MachineFacts`, asks the `Decider` (state, inventory, API hook, default) and says:

- `boot`: a firmware (not iPXE yet) gets its first stage: the profile's ``bootfile``
  for its family, else pxed's table (BOOTFILE, --efi64-bootfile, --secure-boot...);
  iPXE gets the URL of its machine's own script, ``pxed/machines/MAC.ipxe`` on pxed's
  HTTP server (``--http-port``), else the same name over TFTP; a profile with no
  script (only a ``bootfile`` table) leaves iPXE to --ipxe-bootfile as before;
- `local`: iPXE gets a script that runs ``exit`` (the firmware goes to its next boot
  device); a firmware that is not iPXE gets no boot file (an address in full mode);
- `ignore`: no boot answer (`Chosen.silent`: no reply at all to a request answered
  only because it is PXE).

With ``--secure-boot`` the recipe is also rendered as the grub configuration the
machine's grub reads over TFTP: ``grub.cfg-01-<mac>``, the name grub asks for first,
by the MAC in the name (so a machine whose address pxed never learned, as in proxy
mode, still gets its own); ``grub/grub.cfg`` and the per-address names by the address
the machine got (`Machines.grub_config`).

What a request leaves behind (rendered scripts, address -> MAC) is bounded and
expires: hostile clients can fill it, not grow it.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv4Network

from ptftpd.dhcp.leases import StaticHost
from ptftpd.dhcp.options import MessageType, Opt
from ptftpd.dhcp.packet import ZERO_IP, Message
from ptftpd.dhcp6.boot import BootRequest6
from ptftpd.dhcp6.duid import identity
from ptftpd.pxe.decision import (
    BUILTIN,
    Decider,
    Decision,
    DecisionSource,
    Fallback,
    Kind,
    MachineFacts,
    Pending,
    Source,
    StateTable,
    normal_mac,
)
from ptftpd.pxe.firmware import (
    BootFiles,
    FirmwareChoice,
    arch_class,
    choose_boot_file,
    client_arch,
    http_url,
    is_http_client,
    is_ipxe,
)
from ptftpd.pxe.inventory import EMPTY, Inventory
from ptftpd.pxe.recipes import Remote, first_stage, render, render_grub
from ptftpd.pxe.remote import RemoteNames

__all__ = ["SCRIPT_DIR", "Chosen", "Machines", "request_facts", "script_name"]

log = logging.getLogger("ptftpd.pxe")

SCRIPT_DIR = "pxed/machines"
"""Where per-machine scripts are served (TFTP names and HTTP paths under ROOT's URL)."""
_KEEP = 4096  # rendered scripts (and addresses) remembered at most
_TTL = 3600.0  # seconds a rendered script stays fetchable
# grub's first config name: "grub.cfg-01-" and the Ethernet MAC with hyphens (grubs
# with Red Hat's config search); with colons, as ``$net_default_mac`` spells it, for a
# ROOT grub.cfg that sources it (Debian's grub searches no per-MAC name itself).
_GRUB_MAC = re.compile(r"grub\.cfg-01-((?:[0-9a-f]{2}[-:]){5}[0-9a-f]{2})")


def script_name(mac: str) -> str:
    return f"{SCRIPT_DIR}/{mac.replace(':', '-')}.ipxe"


def _user_classes(raw: bytes | None) -> tuple[str, ...]:
    """Option 77: iPXE sends a bare ``iPXE``, RFC 3004 clients length-prefixed items."""
    if not raw:
        return ()
    items: list[str] = []
    i = 0
    while i < len(raw):
        n = raw[i]
        if n == 0 or i + 1 + n > len(raw):
            return (raw.decode("latin-1"),)
        items.append(raw[i + 1 : i + 1 + n].decode("latin-1"))
        i += 1 + n
    return tuple(items)


def _uuid(raw: bytes | None) -> str | None:
    """Option 97 (type 0 + 16 bytes) -> 32 hex digits."""
    if raw is None or len(raw) != 17 or raw[0] != 0:
        return None
    return raw[1:].hex()


def request_facts(
    request: Message,
    server: IPv4Address,
    http_base: tuple[str, int] | None,
    network: IPv4Network | None,
    host: StaticHost | None = None,
) -> MachineFacts:
    """What a DHCPv4 request says about its machine, and where it is served; a static
    host entry (`--host MAC=IP,NAME`) gives its name and address first."""
    ip = request.requested_ip or (request.ciaddr if request.ciaddr != ZERO_IP else None)
    hostname = request.hostname
    if host is not None:
        ip = host.address
        hostname = host.hostname or hostname
    base = None if http_base is None else http_url(http_base[0], http_base[1], "").rstrip("/")
    relayed = request.giaddr != ZERO_IP
    return MachineFacts(
        mac=request.mac_str,
        server=str(server),
        ip=ip,
        uuid=_uuid(request.options.get(Opt.CLIENT_UUID)),
        arch=client_arch(request),
        vendor_class=request.vendor_class,
        user_classes=_user_classes(request.user_class),
        hostname=hostname,
        subnet=None if relayed else network,
        http_base=base,
        ipxe=is_ipxe(request),
        exchange=request.xid,
        requesting=request.message_type is MessageType.REQUEST,
    )


@dataclasses.dataclass(frozen=True)
class Chosen:
    """What one request gets: `choice` (None: no boot file), `silent` (no reply at all
    when the request is answered only because it is PXE), and the `decision`."""

    decision: Decision
    choice: FirmwareChoice | None
    silent: bool = False
    wait: bool = False
    """The decision API has not answered yet: no reply at all (even with -a); pxed
    holds the request and answers it when the API answers, or at `until` (the API's
    deadline) with the cache or the default."""
    until: float | None = None


WAITING = Decision(Kind.IGNORE, Source.API, rule="waiting for the boot API")


@dataclasses.dataclass(frozen=True)
class Waiting:
    """DHCPv6: the decision API has not answered yet for `mac`; the request is held
    until it does, or until `until` (its deadline)."""

    mac: str
    until: float


API_ONLY = Decision(Kind.IGNORE, Source.API, rule="unknown to the boot API")


class _Bounded:
    """name -> (bytes, expiry), oldest first, at most `_KEEP`."""

    def __init__(self) -> None:
        self.items: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    def put(self, name: str, data: bytes, now: float) -> None:
        self.items.pop(name, None)
        self.items[name] = (data, now + _TTL)
        while len(self.items) > _KEEP:
            self.items.popitem(last=False)

    def get(self, name: str, now: float) -> bytes | None:
        found = self.items.get(name)
        if found is None:
            return None
        if found[1] <= now:
            self.items.pop(name, None)  # DHCP may answer in a database thread
            return None
        return found[0]


class Machines:
    """The decisions of one pxed (see the module docstring). `states` is the local
    state source (issue 22 item 5); `on_decision` hears every decision (metrics)."""

    def __init__(
        self,
        inventory: Inventory = EMPTY,
        server: IPv4Address = ZERO_IP,
        http_base: tuple[str, int] | None = None,
        network: IPv4Network | None = None,
        states: StateTable | None = None,
        secure_boot: bool = False,
    ) -> None:
        self.server = server
        self.http_base = http_base
        self.network = network
        self.states = states if states is not None else StateTable()
        self.secure_boot = secure_boot
        self.api: DecisionSource | None = None  # pxed --boot-api (`set_api`)
        self.on_decision: Callable[[Decision], None] | None = None
        self.counts: Counter[Source] = Counter()
        self.scripts = _Bounded()
        self.grub = _Bounded()
        self.inventory = inventory
        self.decider = self._decider(inventory)
        self._last: tuple[Message, Chosen] | None = None
        self.hosts: dict[str, StaticHost] = {}
        self.server6: str | None = None  # pxed --ipv6: the address boot URLs name
        self._http6: str | None = None
        # With --http-port: the remote kernels/initrds each machine's decision names,
        # which pxed streams (`ptftpd.pxe.remote`); None: scripts name the URLs.
        self.remote: RemoteNames | None = None

    def _rendered(
        self, mac: str, now: float, make: Callable[[Remote | None], bytes | None]
    ) -> bytes | None:
        """`make` a machine's script or grub configuration; the remote URLs it names
        become the machine's (and only those)."""
        if self.remote is None:
            return make(None)
        naming = self.remote.naming(mac, now)
        made = make(naming)
        naming.commit()
        return made

    def _decider(self, inventory: Inventory) -> Decider:
        """Item 3's chain. The decision API (issue 22 item 2) goes between the
        inventory and the fallback (``[self.states, inventory, api]``), and its
        "ignore unknown machines" rule is the fallback's `otherwise` when only the API
        decides; `decide` below turns a `Pending` into the fallback until a driver
        holds requests for it."""
        if self.api is None:
            return Decider([self.states, inventory], Fallback(inventory.default))
        return Decider([self.states, inventory, self.api], Fallback(inventory.default, API_ONLY))

    def set_api(self, api: DecisionSource) -> None:
        """The decision API's link (`ptftpd.pxe.bootapi.BootApi`), after the inventory."""
        self.api = api
        self.decider = self._decider(self.inventory)

    def know_hosts(self, hosts: Iterable[StaticHost]) -> None:
        """The static host entries (by MAC): their names and addresses are facts."""
        known: dict[str, StaticHost] = {}
        for host in hosts:
            try:
                known[normal_mac(host.mac)] = host
            except ValueError:
                continue
        self.hosts = known

    def serve_ipv6(self, server: str, http_port: int | None) -> None:
        """DHCPv6 boot URLs name `server` (and its HTTP port, with --http-port)."""
        self.server6 = server
        if http_port is not None:
            self._http6 = http_url(server, http_port, "").rstrip("/")

    def reload(self, inventory: Inventory) -> None:
        """A SIGHUP's new inventory: the next requests are decided by it."""
        self.inventory = inventory
        self.decider = self._decider(inventory)
        self._last = None

    @property
    def active(self) -> bool:
        """Anything to decide: an inventory, a default, or a machine's state."""
        return bool(
            self.inventory.entries
            or self.inventory.profiles
            or self.states.states
            or self.api is not None
        )

    def decide(self, facts: MachineFacts, now: float) -> Decision:
        answer = self.decider.decide(facts, now)
        if isinstance(answer, Pending):
            return WAITING  # the request goes unanswered until the decision comes
        return self._counted(answer)

    def _counted(self, answer: Decision) -> Decision:
        self.counts[answer.source] += 1
        if self.on_decision is not None:
            self.on_decision(answer)
        return answer

    def choose(self, files: BootFiles, request: Message, now: float) -> Chosen:
        """The answer to one DHCPv4 request (asked twice for one request by the DHCP
        engine - whether to answer, then what - it is decided once)."""
        last = self._last
        if last is not None and last[0] is request:
            return last[1]
        chosen = self._choose(files, request, now)
        self._last = (request, chosen)
        return chosen

    def _choose(self, files: BootFiles, request: Message, now: float) -> Chosen:
        base = choose_boot_file(files, request, self.http_base)
        if not self.active:
            return Chosen(BUILTIN, base)
        host = self.hosts.get(request.mac_str)
        facts = request_facts(request, self.server, self.http_base, self.network, host)
        answer = self.decider.decide(facts, now)
        if isinstance(answer, Pending):
            return Chosen(WAITING, None, silent=True, wait=True, until=answer.deadline)
        decision = self._counted(answer)
        if decision.kind is Kind.IGNORE:
            return Chosen(decision, None, silent=True)
        if facts.ipxe:
            script = self._rendered(facts.mac, now, lambda r: render(decision, facts, r))
            if script is None:
                return Chosen(decision, base)
            name = script_name(facts.mac)
            self.scripts.put(name, script, now)
            file = name
            if self.http_base is not None:
                file = http_url(self.http_base[0], self.http_base[1], name)
            reason = "local" if decision.kind is Kind.LOCAL else f"profile {decision.profile_name}"
            return Chosen(decision, dataclasses.replace(base, file=file, reason=reason))
        if decision.kind is Kind.LOCAL:
            return Chosen(decision, None)
        profile = decision.profile
        if self.secure_boot and profile is not None and profile.kernel is not None:
            grub = self._rendered(facts.mac, now, lambda r: render_grub(profile, facts, r))
            self.grub.put(facts.mac, grub or b"", now)
        http = is_http_client(request) and self.http_base is not None
        own = first_stage(profile, arch_class(facts.arch, http))
        if own is None or base.vendor_options is not None:
            return Chosen(decision, base)
        file = own
        if base.http and self.http_base is not None and "://" not in own:
            file = http_url(self.http_base[0], self.http_base[1], own)
        reason = f"profile {decision.profile_name}"
        return Chosen(decision, dataclasses.replace(base, file=file, reason=reason))

    def choose6(
        self, request: BootRequest6, url_of: Callable[[str, bool], str], now: float
    ) -> tuple[Decision, str | None] | Waiting | None:
        """DHCPv6 (boot-file-url): None when nothing is decided per machine (pxed's
        table answers as before); `Waiting` while the API is asked; else the decision
        and the URL to send (None: no boot file). `url_of(name, http)` makes a URL of
        a name under ROOT. The machine's MAC comes from its DUID (LL/LLT), else from
        its relay's option 79."""
        if not self.active:
            return None
        mac, uuid = identity(request.duid)
        if mac is None and request.link_layer is not None:
            mac = request.link_layer.mac  # relayed: the MAC its relay saw (RFC 6939)
        if mac is None and uuid is None:
            return None  # nothing to match a machine by
        arch = request.arches[0] if request.arches else None
        ipxe = b"iPXE" in request.user_classes
        facts = MachineFacts(
            mac=mac or "",
            server=str(self.server6 or self.server),
            uuid=uuid,
            arch=arch,
            vendor_class=None,
            user_classes=tuple(u.decode("latin-1") for u in request.user_classes),
            http_base=self._http6,
            ipxe=ipxe,
        )
        answer = self.decider.decide(facts, now)
        if isinstance(answer, Pending):
            return Waiting(facts.mac, answer.deadline)
        decision = self._counted(answer)
        if decision.kind is Kind.IGNORE:
            return decision, None
        if ipxe and mac is not None:
            script = self._rendered(mac, now, lambda r: render(decision, facts, r))
            if script is not None:
                name = script_name(mac)
                self.scripts.put(name, script, now)
                return decision, url_of(name, True)
        if decision.kind is Kind.LOCAL:
            return decision, None
        own = first_stage(decision.profile, arch_class(arch, request.http))
        return decision, None if own is None else url_of(own, request.http)

    # -- serving what was decided --------------------------------------------------------

    def script(self, name: str, now: float) -> bytes | None:
        """The rendered script served as `name` (a TFTP name or an HTTP path)."""
        return self.scripts.get(name.lstrip("/"), now)

    def grub_config(self, name: str, mac: str | None, now: float) -> bytes | None:
        """The grub configuration for one of grub's config names: the MAC a
        ``grub.cfg-01-<mac>`` name carries, else the machine at the requesting address
        (`mac`, as the boot log learned it); None: ROOT's file."""
        if not self.secure_boot:
            return None
        base = name.lstrip("/").rsplit("/", 1)[-1].lower()
        if base != "grub.cfg" and not base.startswith("grub.cfg-"):
            return None
        named = _GRUB_MAC.fullmatch(base)
        if named is not None:
            return self.grub.get(named.group(1).replace("-", ":"), now)
        if mac is None:
            return None
        return self.grub.get(mac, now)
