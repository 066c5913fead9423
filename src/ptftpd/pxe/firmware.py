"""Which boot file a firmware gets, and in what form (TFTP name or HTTP URL).

The choice depends on what the DHCP request says: the architecture (option 93, IANA
"Processor Architecture Types", `ptftpd.dhcp.options.ARCHITECTURES`), whether the client
is already iPXE (option 77/175: give it the script, not iPXE again, or it loops), and
whether it is UEFI HTTP boot (vendor class `HTTPClient:Arch:xxxxx`: it wants a full
`http://` URL and ignores a reply without vendor class `HTTPClient`). Pure code.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from ptftpd.dhcp.options import ARCHITECTURES, Opt, arch_name
from ptftpd.dhcp.packet import Message
from ptftpd.tftp.paths import PathRefused, resolve

__all__ = [
    "HTTP_VENDOR_CLASS",
    "BootClass",
    "BootFiles",
    "FirmwareChoice",
    "arch_class",
    "choose_boot_file",
    "http_url",
    "is_http_client",
    "is_ipxe",
    "log_choice",
    "missing_boot_files",
]

log = logging.getLogger("ptftpd.pxe")

HTTP_VENDOR_CLASS = "HTTPClient"


class BootClass(enum.Enum):
    """The firmware families that need different boot files (the CLI's --*-bootfile)."""

    BIOS = "bios"
    EFI32 = "efi32"
    EFI64 = "efi64"
    ARM64 = "arm64"


# IANA codes that load a TFTP boot file of each family. 7 and 9 are both x64 UEFI: the
# registry lists 9 as "EFI x86-64" and early EDK2 builds sent it.
_CLASS_OF_ARCH: dict[int, BootClass] = {
    0: BootClass.BIOS,
    6: BootClass.EFI32,
    7: BootClass.EFI64,
    9: BootClass.EFI64,
    11: BootClass.ARM64,
}

# UEFI HTTP boot codes (IANA registry): 15 x86, 16 x64, 19 ARM64 get the same binary as
# their PXE siblings, as a URL. 18 (ARM32 UEFI HTTP; 10 is ARM32 PXE) and 17 (EBC) have
# no flag of their own and get the default file.
_CLASS_OF_HTTP_ARCH: dict[int, BootClass] = {
    15: BootClass.EFI32,
    16: BootClass.EFI64,
    19: BootClass.ARM64,
}


def arch_class(arch: int | None, http: bool = False) -> BootClass | None:
    """The family for an option 93 code (an HTTP boot code when `http`); None for no
    code, unmapped or unknown codes."""
    if arch is None:
        return None
    if http:
        return _CLASS_OF_HTTP_ARCH.get(arch, _CLASS_OF_ARCH.get(arch))
    return _CLASS_OF_ARCH.get(arch)


def is_ipxe(request: Message) -> bool:
    """iPXE announces itself with user class `iPXE` (77) and its own option 175."""
    return request.has_user_class("iPXE") or Opt.IPXE_ENCAP in request.options


def is_http_client(request: Message) -> bool:
    """EDK2 HTTP boot says `HTTPClient:Arch:00016:UNDI:003000` in option 60."""
    return (request.vendor_class or "").startswith(HTTP_VENDOR_CLASS)


def http_url(address: IPv4Address | IPv6Address | str, port: int, name: str) -> str:
    """`http://10.0.0.1:8080/ipxe.efi`, `http://[fd00::1]:8080/ipxe.efi` (RFC 3986)."""
    host = str(address)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/{name.lstrip('/')}"


@dataclass(frozen=True)
class BootFiles:
    """Boot file names relative to ROOT. `default` (the CLI's BOOTFILE) is used for every
    family without its own file; `ipxe` goes to clients that are already iPXE."""

    default: str
    bios: str | None = None
    efi32: str | None = None
    efi64: str | None = None
    arm64: str | None = None
    ipxe: str | None = None

    def for_class(self, cls: BootClass | None) -> str:
        specific = {
            BootClass.BIOS: self.bios,
            BootClass.EFI32: self.efi32,
            BootClass.EFI64: self.efi64,
            BootClass.ARM64: self.arm64,
            None: None,
        }[cls]
        return specific or self.default

    def configured(self) -> list[tuple[str, str]]:
        """(what, file name) for every file a client may be given, for the start-up check."""
        items = [("BOOTFILE", self.default)]
        for flag, name in (
            ("--bios-bootfile", self.bios),
            ("--efi32-bootfile", self.efi32),
            ("--efi64-bootfile", self.efi64),
            ("--arm64-bootfile", self.arm64),
            ("--ipxe-bootfile", self.ipxe),
        ):
            if name:
                items.append((flag, name))
        return items


@dataclass(frozen=True)
class FirmwareChoice:
    file: str
    """What goes in the file field / option 67: a name under ROOT, or a URL."""
    arch: int | None
    arch_label: str
    ipxe: bool
    reason: str
    """Why this file: "ipxe", a family value ("efi64"), "default" or "unknown arch"."""
    http: bool = False
    """A UEFI HTTP boot client: `file` is a URL and the reply says `HTTPClient`."""


def choose_boot_file(
    files: BootFiles, request: Message, http_base: tuple[str, int] | None = None
) -> FirmwareChoice:
    """The boot file for this request: iPXE gets `files.ipxe` (never the iPXE binary
    again, which would loop), else the file for its architecture, else the default.

    With `http_base` (the server address and --http-port), UEFI HTTP boot clients get
    their file as an `http://` URL, and so does iPXE's script (kernels and initrds can
    then come over HTTP too); without it they are told the plain name."""
    arch = request.arch
    label = "-" if arch is None else arch_name(arch)
    http = is_http_client(request) and http_base is not None

    def located(name: str) -> str:
        if http_base is None or "://" in name:
            return name
        return http_url(http_base[0], http_base[1], name)

    ipxe = is_ipxe(request)
    if ipxe:
        label = f"iPXE {label}" if arch is not None else "iPXE"
        if files.ipxe:
            return FirmwareChoice(located(files.ipxe), arch, label, True, "ipxe")
    cls = arch_class(arch, http)
    name, reason = files.default, "default"
    if cls is not None:
        name, reason = files.for_class(cls), cls.value
    elif arch is not None and arch not in ARCHITECTURES:
        reason = "unknown arch"
    return FirmwareChoice(located(name) if http else name, arch, label, ipxe, reason, http)


def missing_boot_files(root: Path, files: BootFiles) -> list[str]:
    """Human descriptions of configured boot files that ROOT does not hold.

    Names with a URL scheme (an iPXE script may be `http://...`) are not on TFTP and are
    not checked."""
    problems: list[str] = []
    real_root = root.resolve()
    for what, name in files.configured():
        if "://" in name:
            continue
        try:
            path = resolve(real_root, name)
        except PathRefused as exc:
            problems.append(f"{what} {name} ({exc})")
            continue
        if not path.is_file():
            problems.append(f"{what} {name}")
    return problems


def log_choice(what: str, msg: Message, choice: FirmwareChoice, level: int = logging.DEBUG) -> None:
    """One line per decision; an unknown architecture code is always worth a line."""
    if choice.reason == "unknown arch":
        log.info(
            "%s mac=%s: unknown architecture code %s, giving the default %s",
            what,
            msg.mac_str,
            choice.arch,
            choice.file,
        )
    else:
        log.log(
            level,
            "%s mac=%s arch=%s file=%s (%s)",
            what,
            msg.mac_str,
            choice.arch_label,
            choice.file,
            choice.reason,
        )
