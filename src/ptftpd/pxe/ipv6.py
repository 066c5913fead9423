"""pxed's firmware table for DHCPv6 (RFC 5970): which boot-file-url (59) a client gets.

The same `BootFiles` as over IPv4, told as a URL: `tftp://[ADDR]/FILE` for PXE firmware
(EDK2 PXEv6), `http://[ADDR]:PORT/FILE` for UEFI HTTP boot clients when pxed serves
HTTP, and the iPXE script for iPXE (over HTTP when it can, like over IPv4). The DHCPv6
engine (`ptftpd.dhcp6`) echoes vendor class `HTTPClient` to HTTP clients itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from ipaddress import IPv6Address

from ptftpd.dhcp.options import arch_name
from ptftpd.dhcp6.boot import WAIT6, BootChoice6, BootRequest6, boot_url
from ptftpd.events import BootDecided
from ptftpd.pxe.bootlog import client_label
from ptftpd.pxe.decision import Kind, Source
from ptftpd.pxe.firmware import BootFiles, arch_class, vendor_class_arch
from ptftpd.pxe.machines import Machines, Waiting

__all__ = ["Pxe6Policy", "client_label"]

log = logging.getLogger("ptftpd.pxe")


class Pxe6Policy:
    """`BootPolicy6` for pxed --ipv6; also tells `on_discover(client, stage, arch)`
    (pxed: the boot log) who asked for what."""

    def __init__(
        self,
        files: BootFiles,
        server: IPv6Address,
        http_port: int | None = None,
        on_discover: Callable[[str, str, int | None], None] | None = None,
        machines: Machines | None = None,
    ) -> None:
        self.machines = machines  # per-machine decisions (issue 22), by DUID
        # Told of each decision (client label, its description): pxed's boot log.
        self.on_decided: Callable[[str, str], None] | None = None
        # Told of each decision as a typed event: pxed's boot timeline.
        self.on_event: Callable[[BootDecided], None] | None = None
        self.files = files
        self.server = server
        self.http_port = http_port
        self.on_discover = on_discover
        # Told (mac, deadline) when a request is held for the decision API (pxed).
        self.on_wait: Callable[[str, float], None] | None = None

    def _url(self, name: str, http: bool) -> str:
        if "://" in name:
            return name
        if http and self.http_port is not None:
            return boot_url("http", self.server, name, self.http_port)
        return boot_url("tftp", self.server, name)

    def __call__(self, request: BootRequest6) -> BootChoice6 | None:
        arches = request.arches or _vendor_arches(request)
        arch = arches[0] if arches else None
        label = "-" if arch is None else arch_name(arch)
        ipxe = b"iPXE" in request.user_classes
        http = request.http
        if http and self.http_port is None:
            return None  # an HTTP boot client cannot use a TFTP URL
        if ipxe:
            label = f"iPXE {label}" if arch is not None else "iPXE"
        if self.on_discover is not None:
            self.on_discover(client_label(request.duid), f"{label} (DHCPv6)", arch)
        if self.machines is not None:
            decided = self.machines.choose6(request, self._url, time.monotonic())
            if isinstance(decided, Waiting):
                if self.on_wait is not None:
                    self.on_wait(decided.mac, decided.until)
                return WAIT6  # no reply until the API answers (or its deadline)
            if decided is not None:
                decision, url = decided
                client = client_label(request.duid)
                log.debug("DHCPv6 %s: %s", client, decision.describe())
                if self.on_decided is not None:
                    self.on_decided(client, decision.describe())
                if self.on_event is not None and decision.source is not Source.BUILTIN:
                    self.on_event(decision.event(client))  # as over IPv4: none for the table
                if url is None and decision.kind is not Kind.BOOT:
                    return None  # local (not iPXE) or ignore: no boot file
                if url is not None:
                    return BootChoice6(url)
        if ipxe and self.files.ipxe:
            return BootChoice6(self._url(self.files.ipxe, self.http_port is not None))
        cls = None
        for code in arches:
            cls = arch_class(code, http)
            if cls is not None:
                break
        return BootChoice6(self._url(self.files.for_class(cls), http))


def _vendor_arches(request: BootRequest6) -> tuple[int, ...]:
    """Without option 61, the `Arch:NNNNN` of the vendor class (16) items, as over IPv4."""
    if request.vendor_class is None:
        return ()
    codes = (vendor_class_arch(item) for item in request.vendor_class.items)
    return tuple(code for code in codes if code is not None)
