"""Boot policy for DHCPv6 netboot clients (RFC 5970): who gets which boot-file-url.

The engine asks the policy once per reply to a client that looks like a netboot client
(see `is_netboot`); the policy sees what the client said about itself and returns the
URL for option 59 (and optional parameters for option 60), or None for "no boot
information". pxed plugs its firmware table in here; `ArchTablePolicy` and `url_policy`
cover the simple cases and the tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv6Address

from ptftpd.dhcp6.codec import (
    ClientArch,
    ClientLinkLayer,
    Message,
    Nii,
    Opt,
    OptionRequest,
    UserClass,
    VendorClass,
)

__all__ = [
    "WAIT6",
    "ArchTablePolicy",
    "BootChoice6",
    "BootPolicy6",
    "BootRequest6",
    "boot_request",
    "boot_url",
    "is_http_client",
    "is_netboot",
    "is_pxe_client",
    "url_policy",
]

NETBOOT_VENDOR_PREFIXES = (b"PXEClient", b"HTTPClient")


@dataclass(frozen=True)
class BootRequest6:
    """What a client says about itself: architectures (61, in its order of
    preference), vendor class (16), user classes (15, e.g. b"iPXE"), NII (62); and
    `link_layer`, its link-layer address as the relay next to it saw it (option 79 of
    the innermost Relay-forward, RFC 6939; None when not relayed or not told)."""

    arches: tuple[int, ...] = ()
    vendor_class: VendorClass | None = None
    user_classes: tuple[bytes, ...] = ()
    duid: bytes = b""
    nii: Nii | None = None
    link_layer: ClientLinkLayer | None = None

    @property
    def http(self) -> bool:
        return is_http_client(self.vendor_class)


@dataclass(frozen=True)
class BootChoice6:
    """Option 59 (`url`) and option 60 (`params`). `vendor_class` replaces the automatic
    echo (HTTP boot clients get vendor class "HTTPClient" back without asking)."""

    url: str
    params: tuple[str, ...] = ()
    vendor_class: VendorClass | None = None


WAIT6 = BootChoice6("")
"""A boot policy's answer while it waits for the machine's decision (pxed's boot API):
no reply at all to the client's Solicit, Request or Information-request (not even an
address), as DHCPv4's `WAIT`; its retransmission asks again. EDK2's PXEv6 retransmits
its Solicit after 4 s (then 8, 16, 32; 60 s in all), past pxed's 2 s API deadline."""

BootPolicy6 = Callable[[BootRequest6], "BootChoice6 | str | None"]


def is_http_client(vendor: VendorClass | None) -> bool:
    """EDK2 HTTP boot announces itself with vendor class `HTTPClient:Arch:xxxxx...`."""
    return vendor is not None and any(i.startswith(b"HTTPClient") for i in vendor.items)


def is_pxe_client(vendor: VendorClass | None) -> bool:
    """PXE firmware (EDK2 PXEv6) says `PXEClient:Arch:xxxxx:UNDI:yyyzzz`."""
    return vendor is not None and any(i.startswith(b"PXEClient") for i in vendor.items)


def is_netboot(msg: Message) -> bool:
    """A firmware or iPXE client: it names an architecture (61), asks for option 59, or
    says PXEClient/HTTPClient in its vendor class. Proxy mode answers only these."""
    if msg.first(ClientArch) is not None:
        return True
    oro = msg.first(OptionRequest)
    if oro is not None and Opt.BOOTFILE_URL in oro.codes:
        return True
    vendor = msg.first(VendorClass)
    return vendor is not None and any(
        i.startswith(p) for i in vendor.items for p in NETBOOT_VENDOR_PREFIXES
    )


def boot_request(
    msg: Message, duid: bytes, link_layer: ClientLinkLayer | None = None
) -> BootRequest6:
    arch = msg.first(ClientArch)
    user = msg.first(UserClass)
    return BootRequest6(
        arches=arch.types if arch else (),
        vendor_class=msg.first(VendorClass),
        user_classes=user.items if user else (),
        duid=duid,
        nii=msg.first(Nii),
        link_layer=link_layer,
    )


def boot_url(scheme: str, address: IPv6Address, path: str, port: int | None = None) -> str:
    """`tftp://[fd00::1]/ipxe.efi` or `http://[fd00::1]:8080/ipxe.efi` (RFC 5970 form)."""
    where = f"[{address}]" + (f":{port}" if port is not None else "")
    return f"{scheme}://{where}/{path.lstrip('/')}"


def url_policy(url: str) -> BootPolicy6:
    """Every netboot client gets the same URL (`python -m ptftpd.dhcp6 --boot-url`)."""

    def policy(_request: BootRequest6) -> BootChoice6:
        return BootChoice6(url)

    return policy


@dataclass(frozen=True)
class ArchTablePolicy:
    """The first of the client's architectures found in `by_arch` wins; iPXE (user class
    "iPXE") gets `ipxe` instead, so it does not chain-load itself; else `default`."""

    by_arch: Mapping[int, str] = field(default_factory=dict)
    default: str | None = None
    ipxe: str | None = None

    def __call__(self, request: BootRequest6) -> BootChoice6 | None:
        if self.ipxe is not None and b"iPXE" in request.user_classes:
            return BootChoice6(self.ipxe)
        for arch in request.arches:
            if arch in self.by_arch:
                return BootChoice6(self.by_arch[arch])
        return BootChoice6(self.default) if self.default is not None else None
