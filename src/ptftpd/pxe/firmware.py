"""Which boot file a firmware gets, and in what form (TFTP name or HTTP URL).

The choice depends on what the DHCP request says: the architecture (option 93, IANA
"Processor Architecture Types", `ptftpd.dhcp.options.ARCHITECTURES` and `ARCH_TABLE`
here; when option 93 is missing or unreadable, the `Arch:NNNNN` of the vendor class, as
Raspberry Pi UEFI builds of EDK2 need), whether the client is already iPXE (option
77/175: give it the script, not iPXE again, or it loops), and whether it is UEFI HTTP
boot (vendor class `HTTPClient:Arch:xxxxx`: it wants a full `http://` URL and ignores a
reply without vendor class `HTTPClient`). Two firmware families need more than a file:

- Secure Boot (`BootFiles.secure_boot`): x64 UEFI gets the signed shim (`shimx64.efi`),
  which fetches `grubx64.efi` from the same place by itself.
- The Raspberry Pi bootloader (Pi 3 ROM, Pi 4/5 EEPROM) ignores an offer whose option 43
  lacks the PXE menu item "Raspberry Pi Boot" (`rpi_vendor_options`, byte for byte what
  dnsmasq sends for `pxe-service=0,"Raspberry Pi Boot"`).

Pure code.
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from ptftpd.dhcp.options import ARCHITECTURES, Opt, arch_name
from ptftpd.dhcp.packet import Message
from ptftpd.paths import PathRefused, resolve

__all__ = [
    "ARCH_TABLE",
    "GRUB_NAME",
    "HTTP_VENDOR_CLASS",
    "RPI_MENU",
    "SHIM_NAME",
    "ArchInfo",
    "BootClass",
    "BootFiles",
    "FirmwareChoice",
    "arch_class",
    "choose_boot_file",
    "client_arch",
    "http_url",
    "is_http_client",
    "is_ipxe",
    "is_raspberry_pi",
    "log_choice",
    "missing_boot_files",
    "rpi_vendor_options",
    "vendor_class_arch",
]

log = logging.getLogger("ptftpd.pxe")

HTTP_VENDOR_CLASS = "HTTPClient"


class BootClass(enum.Enum):
    """The firmware families that need different boot files (the CLI's --*-bootfile)."""

    BIOS = "bios"
    EFI32 = "efi32"
    EFI64 = "efi64"
    ARM64 = "arm64"


@dataclass(frozen=True)
class ArchInfo:
    """What an IANA architecture code means for the boot file: its `family` (which
    --*-bootfile; None: BOOTFILE) and whether it is an HTTP boot code (`http`: the file
    goes out as a URL when the client says `HTTPClient`)."""

    family: BootClass | None
    http: bool = False


_BIOS, _EFI32, _EFI64, _ARM64 = BootClass.BIOS, BootClass.EFI32, BootClass.EFI64, BootClass.ARM64

# Every code of the IANA registry (names in ARCHITECTURES). 7 and 9 are both x64 UEFI:
# the registry now calls 9 "EBC", but RFC 4578 listed it as x86-64 and early EDK2 builds
# and iPXE sent it. The HTTP boot codes get the binary of their PXE siblings, as a URL.
# Families without a flag of their own (ARM32, RISC-V, LoongArch, U-Boot, EBC, s390,
# MIPS, Sunway, Itanium, the deprecated ones) get BOOTFILE; 41 is the Raspberry Pi's
# rpiboot (USB device boot), answered like the Pi bootloader.
ARCH_TABLE: dict[int, ArchInfo] = {
    0: ArchInfo(_BIOS),
    1: ArchInfo(None),
    2: ArchInfo(None),
    3: ArchInfo(None),
    4: ArchInfo(None),
    5: ArchInfo(None),
    6: ArchInfo(_EFI32),
    7: ArchInfo(_EFI64),
    8: ArchInfo(None),
    9: ArchInfo(_EFI64),
    10: ArchInfo(None),
    11: ArchInfo(_ARM64),
    12: ArchInfo(None),
    13: ArchInfo(None),
    14: ArchInfo(None),
    15: ArchInfo(_EFI32, http=True),
    16: ArchInfo(_EFI64, http=True),
    17: ArchInfo(None, http=True),
    18: ArchInfo(None, http=True),
    19: ArchInfo(_ARM64, http=True),
    20: ArchInfo(_BIOS, http=True),
    21: ArchInfo(None),
    22: ArchInfo(None),
    23: ArchInfo(None, http=True),
    24: ArchInfo(None, http=True),
    25: ArchInfo(None),
    26: ArchInfo(None, http=True),
    27: ArchInfo(None),
    28: ArchInfo(None, http=True),
    29: ArchInfo(None),
    30: ArchInfo(None, http=True),
    31: ArchInfo(None),
    32: ArchInfo(None),
    33: ArchInfo(None),
    34: ArchInfo(None),
    35: ArchInfo(None),
    36: ArchInfo(None),
    37: ArchInfo(None),
    38: ArchInfo(None, http=True),
    39: ArchInfo(None),
    40: ArchInfo(None, http=True),
    41: ArchInfo(None),
}

# x64 UEFI Secure Boot: the boot file, and the name shim fetches beside it.
SHIM_NAME = "shimx64.efi"
GRUB_NAME = "grubx64.efi"


def arch_class(arch: int | None, http: bool = False) -> BootClass | None:
    """The family for an architecture code (an HTTP boot code only when `http`: a PXE
    client that sends one gets BOOTFILE); None for no code, unmapped or unknown codes."""
    info = None if arch is None else ARCH_TABLE.get(arch)
    if info is None or (info.http and not http):
        return None
    return info.family


# `PXEClient:Arch:00011:UNDI:003000`, `HTTPClient:Arch:00019` (PXE 2.1, EDK2).
_VENDOR_ARCH = re.compile(r"(?:PXEClient|HTTPClient):Arch:([0-9]{5})(?::|$)")


def vendor_class_arch(vendor_class: str | bytes | None) -> int | None:
    """The architecture code in a PXE or HTTP boot vendor class, or None."""
    if vendor_class is None:
        return None
    if isinstance(vendor_class, bytes):
        vendor_class = vendor_class.decode("latin-1")
    match = _VENDOR_ARCH.match(vendor_class)
    if match is None:
        return None
    code = int(match.group(1))
    return code if code <= 0xFFFF else None


def client_arch(request: Message) -> int | None:
    """The client's architecture: the first code of option 93 when it is readable (an
    even number of bytes, at least two), else the vendor class's `Arch:NNNNN` (some EDK2
    builds, the Pi 4's UEFI firmware among them, send no readable 93), else None."""
    raw = request.options.get(Opt.CLIENT_ARCH)
    if raw is not None and len(raw) >= 2 and len(raw) % 2 == 0:
        return int.from_bytes(raw[:2], "big")
    return vendor_class_arch(request.vendor_class)


# Raspberry Pi Ltd's Ethernet OUIs (Pi 1-3: b8:27:eb; Pi 4, 400, 5, CM4: the others).
RPI_OUIS = frozenset(
    bytes.fromhex(oui) for oui in ("b827eb", "dca632", "e45f01", "d83add", "28cdc1", "2ccf67")
)
RPI_MENU = "Raspberry Pi Boot"


def is_raspberry_pi(request: Message) -> bool:
    """The Raspberry Pi network bootloader: a PXE BIOS-style client (architecture 0, or
    41 rpiboot) whose client GUID (97) starts with the board's fourcc (`RPi4`, `RPi5`:
    the Pi 4/5 EEPROM's default DHCP_OPTION97) or whose MAC is one of Raspberry Pi's.
    iPXE, UEFI and U-Boot running on a Pi say other architectures and are not it."""
    if is_ipxe(request) or client_arch(request) not in (None, 0, 41):
        return False
    if not (request.vendor_class or "").startswith("PXEClient"):
        return False
    guid = request.options.get(Opt.CLIENT_UUID, b"")
    if len(guid) == 17 and guid[0] == 0 and guid[1:4] == b"RPi":
        return True
    return bytes(request.chaddr[:3]) in RPI_OUIS


def rpi_vendor_options() -> bytes:
    """Option 43 for the Pi bootloader, laid out as dnsmasq lays out a one-item PXE menu
    (`pxe-service=0,"Raspberry Pi Boot"`): discovery control 3 (no broadcast or multicast
    boot server discovery), menu prompt (timeout 0, "PXE"), boot menu with one item of
    type 0 named "Raspberry Pi Boot", end. The bootloader looks for the name (its
    PXE_OPTION43 setting) and ignores an offer without it."""
    name = RPI_MENU.encode()
    item = b"\x00\x00" + bytes([len(name)]) + name
    return bytes([6, 1, 3]) + bytes([10, 4, 0]) + b"PXE" + bytes([9, len(item)]) + item + b"\xff"


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
    family without its own file; `ipxe` goes to clients that are already iPXE. With
    `secure_boot`, x64 UEFI (PXE and HTTP) gets the signed shim `shimx64.efi`, and ROOT
    must hold `grubx64.efi` beside it (shim fetches that name from the same server)."""

    default: str
    bios: str | None = None
    efi32: str | None = None
    efi64: str | None = None
    arm64: str | None = None
    ipxe: str | None = None
    secure_boot: bool = False

    def for_class(self, cls: BootClass | None) -> str:
        efi64 = SHIM_NAME if self.secure_boot else self.efi64
        specific = {
            BootClass.BIOS: self.bios,
            BootClass.EFI32: self.efi32,
            BootClass.EFI64: efi64,
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
        if self.secure_boot:
            items += [("--secure-boot", SHIM_NAME), ("--secure-boot", GRUB_NAME)]
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
    vendor_options: bytes | None = None
    """Option 43 to send instead of the usual PXE one (the Raspberry Pi's menu)."""


def choose_boot_file(
    files: BootFiles, request: Message, http_base: tuple[str, int] | None = None
) -> FirmwareChoice:
    """The boot file for this request: iPXE gets `files.ipxe` (never the iPXE binary
    again, which would loop), else the file for its architecture, else the default.

    With `http_base` (the server address and --http-port), UEFI HTTP boot clients get
    their file as an `http://` URL, and so does iPXE's script (kernels and initrds can
    then come over HTTP too); without it they are told the plain name."""
    arch = client_arch(request)
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
    if not http and is_raspberry_pi(request):
        # The bootloader fetches its own files (start4.elf...) and ignores the name.
        return FirmwareChoice(
            name,
            arch,
            f"Raspberry Pi {label}",
            ipxe,
            "raspberry-pi",
            vendor_options=rpi_vendor_options(),
        )
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
