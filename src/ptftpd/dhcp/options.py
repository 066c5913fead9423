"""DHCP option registry: code, name and value type, so logs, the TOML config and replies
agree on how each option is spelled and packed.

Options travel as raw bytes inside a `Message`; this module turns them into Python
values and back only where someone needs to look inside. Unknown codes stay raw bytes,
so a client's exotic option never breaks decoding.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

__all__ = [
    "ARCHITECTURES",
    "REGISTRY",
    "MessageType",
    "Opt",
    "OptionSpec",
    "OptionType",
    "OptionValueError",
    "arch_name",
    "decode_value",
    "encode_value",
    "option_by_name",
    "pxe_vendor_options",
]


class OptionValueError(ValueError):
    """A value cannot be packed for its option (bad config, not bad packets)."""


class Opt(enum.IntEnum):
    PAD = 0
    SUBNET_MASK = 1
    TIME_OFFSET = 2
    ROUTER = 3
    TIME_SERVER = 4
    NAME_SERVER = 5
    DNS = 6
    LOG_SERVER = 7
    HOSTNAME = 12
    BOOT_FILE_SIZE = 13
    DOMAIN_NAME = 15
    ROOT_PATH = 17
    EXTENSIONS_PATH = 18
    INTERFACE_MTU = 26
    BROADCAST = 28
    STATIC_ROUTE = 33
    NTP_SERVERS = 42
    VENDOR_SPECIFIC = 43
    NETBIOS_NAME_SERVER = 44
    REQUESTED_IP = 50
    LEASE_TIME = 51
    OVERLOAD = 52
    MESSAGE_TYPE = 53
    SERVER_ID = 54
    PARAMETER_LIST = 55
    MESSAGE = 56
    MAX_MESSAGE_SIZE = 57
    RENEWAL_TIME = 58
    REBINDING_TIME = 59
    VENDOR_CLASS = 60
    CLIENT_ID = 61
    TFTP_SERVER_NAME = 66
    BOOTFILE_NAME = 67
    USER_CLASS = 77
    CLIENT_FQDN = 81
    RELAY_AGENT_INFO = 82
    CLIENT_ARCH = 93
    CLIENT_NDI = 94
    CLIENT_UUID = 97
    SUBNET_SELECTION = 118
    DOMAIN_SEARCH = 119
    CLASSLESS_ROUTE = 121
    IPXE_ENCAP = 175
    END = 255


class MessageType(enum.IntEnum):
    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8

    @property
    def label(self) -> str:
        return "DHCP" + self.name


class OptionType(enum.Enum):
    IP = "ip"
    IPS = "ips"
    U8 = "u8"
    U16 = "u16"
    U32 = "u32"
    I32 = "i32"
    U16S = "u16s"
    CODES = "codes"
    STR = "str"
    BYTES = "bytes"


@dataclass(frozen=True)
class OptionSpec:
    code: int
    name: str
    type: OptionType


_T = OptionType
REGISTRY: dict[int, OptionSpec] = {
    spec.code: spec
    for spec in (
        OptionSpec(1, "subnet-mask", _T.IP),
        OptionSpec(2, "time-offset", _T.I32),
        OptionSpec(3, "router", _T.IPS),
        OptionSpec(4, "time-server", _T.IPS),
        OptionSpec(5, "name-server", _T.IPS),
        OptionSpec(6, "dns", _T.IPS),
        OptionSpec(7, "log-server", _T.IPS),
        OptionSpec(12, "hostname", _T.STR),
        OptionSpec(13, "boot-file-size", _T.U16),
        OptionSpec(15, "domain-name", _T.STR),
        OptionSpec(17, "root-path", _T.STR),
        OptionSpec(18, "extensions-path", _T.STR),
        OptionSpec(26, "interface-mtu", _T.U16),
        OptionSpec(28, "broadcast", _T.IP),
        OptionSpec(42, "ntp-servers", _T.IPS),
        OptionSpec(43, "vendor-specific", _T.BYTES),
        OptionSpec(44, "netbios-name-server", _T.IPS),
        OptionSpec(50, "requested-ip", _T.IP),
        OptionSpec(51, "lease-time", _T.U32),
        OptionSpec(52, "overload", _T.U8),
        OptionSpec(53, "message-type", _T.U8),
        OptionSpec(54, "server-id", _T.IP),
        OptionSpec(55, "parameter-list", _T.CODES),
        OptionSpec(56, "message", _T.STR),
        OptionSpec(57, "max-message-size", _T.U16),
        OptionSpec(58, "renewal-time", _T.U32),
        OptionSpec(59, "rebinding-time", _T.U32),
        OptionSpec(60, "vendor-class", _T.STR),
        OptionSpec(61, "client-id", _T.BYTES),
        OptionSpec(66, "tftp-server-name", _T.STR),
        OptionSpec(67, "bootfile-name", _T.STR),
        OptionSpec(77, "user-class", _T.BYTES),
        OptionSpec(81, "client-fqdn", _T.BYTES),
        OptionSpec(82, "relay-agent-info", _T.BYTES),
        OptionSpec(93, "client-arch", _T.U16S),
        OptionSpec(94, "client-ndi", _T.BYTES),
        OptionSpec(97, "client-uuid", _T.BYTES),
        OptionSpec(118, "subnet-selection", _T.IP),
        OptionSpec(119, "domain-search", _T.BYTES),
        OptionSpec(121, "classless-route", _T.BYTES),
        OptionSpec(175, "ipxe-encap", _T.BYTES),
    )
}

# RFC 4578 and the IANA "Processor Architecture Types" registry (option 93).
ARCHITECTURES: dict[int, str] = {
    0: "BIOS",
    1: "NEC PC98",
    2: "EFI Itanium",
    3: "DEC Alpha",
    4: "Arc x86",
    5: "Intel Lean Client",
    6: "EFI IA32",
    7: "EFI x64",
    8: "EFI Xscale",
    9: "EFI x64",
    10: "EFI ARM32",
    11: "EFI ARM64",
    12: "PowerPC Open Firmware",
    13: "PowerPC ePAPR",
    14: "POWER OPAL v3",
    15: "x86 UEFI HTTP",
    16: "x64 UEFI HTTP",
    17: "EBC UEFI HTTP",
    18: "ARM32 UEFI HTTP",
    19: "ARM64 UEFI HTTP",
    20: "BIOS HTTP",
    21: "ARM32 uboot",
    22: "ARM64 uboot",
    23: "ARM32 uboot HTTP",
    24: "ARM64 uboot HTTP",
    25: "RISC-V 32 UEFI",
    26: "RISC-V 32 UEFI HTTP",
    27: "RISC-V 64 UEFI",
    28: "RISC-V 64 UEFI HTTP",
    29: "RISC-V 128 UEFI",
    30: "RISC-V 128 UEFI HTTP",
    31: "s390 Basic",
    32: "s390 Extended",
    33: "MIPS 32 UEFI",
    34: "MIPS 64 UEFI",
    35: "Sunway 32 UEFI",
    36: "Sunway 64 UEFI",
    37: "LoongArch 32 UEFI",
    38: "LoongArch 32 UEFI HTTP",
    39: "LoongArch 64 UEFI",
    40: "LoongArch 64 UEFI HTTP",
    41: "ARM rpiboot",
}


def arch_name(code: int) -> str:
    """Readable name for logs; unknown codes are normal (the registry grows)."""
    return ARCHITECTURES.get(code, f"arch {code}")


def option_by_name(name: str) -> OptionSpec:
    """Look up an option by registry name or decimal code (for the TOML config)."""
    key = name.strip().lower().replace("_", "-")
    if key.isdigit():
        code = int(key)
        if not 1 <= code <= 254:
            raise OptionValueError(f"option code out of range: {code}")
        return REGISTRY.get(code, OptionSpec(code, f"option-{code}", OptionType.BYTES))
    for spec in REGISTRY.values():
        if spec.name == key:
            return spec
    raise OptionValueError(f"unknown option name: {name}")


def _ints(value: object) -> list[int]:
    if isinstance(value, int):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
        return list(value)
    raise OptionValueError(f"expected integer(s), got {value!r}")


def encode_value(code: int, value: object) -> bytes:
    """Pack a Python value for option `code` according to the registry (bytes pass through)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    spec = REGISTRY.get(code, OptionSpec(code, f"option-{code}", OptionType.BYTES))
    try:
        if spec.type is OptionType.IP:
            return IPv4Address(str(value)).packed
        if spec.type is OptionType.IPS:
            items: Sequence[object] = value if isinstance(value, (list, tuple)) else [value]
            return b"".join(IPv4Address(str(v)).packed for v in items)
        if spec.type is OptionType.U8:
            return bytes(_ints(value))
        if spec.type is OptionType.CODES:
            return bytes(_ints(value))
        if spec.type is OptionType.U16:
            return struct.pack("!H", *_ints(value)[:1])
        if spec.type is OptionType.U16S:
            ints = _ints(value)
            return struct.pack(f"!{len(ints)}H", *ints)
        if spec.type is OptionType.U32:
            return struct.pack("!I", *_ints(value)[:1])
        if spec.type is OptionType.I32:
            return struct.pack("!i", *_ints(value)[:1])
        if spec.type is OptionType.STR:
            if not isinstance(value, str):
                raise OptionValueError(f"{spec.name}: expected a string, got {value!r}")
            return value.encode()
        if isinstance(value, str):
            # Raw options in the config are written as hex ("01:02:ab" or "0102ab").
            return bytes.fromhex(value.replace(":", "").replace(" ", ""))
    except (ValueError, struct.error, ipaddress.AddressValueError) as exc:
        if isinstance(exc, OptionValueError):
            raise
        raise OptionValueError(f"{spec.name}: bad value {value!r}: {exc}") from None
    raise OptionValueError(f"{spec.name}: cannot encode {value!r}")


def decode_value(code: int, raw: bytes) -> object:
    """Best-effort typed view for logs and tests; falls back to the raw bytes."""
    spec = REGISTRY.get(code)
    if spec is None:
        return raw
    t = spec.type
    if t is OptionType.IP and len(raw) == 4:
        return IPv4Address(raw)
    if t is OptionType.IPS and len(raw) % 4 == 0:
        return [IPv4Address(raw[i : i + 4]) for i in range(0, len(raw), 4)]
    if t in (OptionType.U8, OptionType.CODES) and raw:
        return list(raw) if t is OptionType.CODES else raw[0]
    if t is OptionType.U16 and len(raw) == 2:
        return int(struct.unpack("!H", raw)[0])
    if t is OptionType.U16S and raw and len(raw) % 2 == 0:
        return list(struct.unpack(f"!{len(raw) // 2}H", raw))
    if t is OptionType.U32 and len(raw) == 4:
        return int(struct.unpack("!I", raw)[0])
    if t is OptionType.I32 and len(raw) == 4:
        return int(struct.unpack("!i", raw)[0])
    if t is OptionType.STR:
        return raw.decode("utf-8", "replace")
    return raw


# PXE vendor sub-options inside option 43 (PXE specification 2.1, table 2-1).
PXE_DISCOVERY_CONTROL = 6
PXE_BOOT_MENU = 9
PXE_MENU_PROMPT = 10
PXE_END = 255
DISCOVERY_DOWNLOAD_DIRECTLY = 0x08


def pxe_vendor_options(
    discovery_control: int = DISCOVERY_DOWNLOAD_DIRECTLY,
    menu: Sequence[tuple[int, str]] = (),
    prompt: tuple[int, str] | None = None,
) -> bytes:
    """Option 43 for PXE clients.

    The default (discovery control bit 3, no menu) tells the ROM to skip boot-server
    discovery and download the file named in the reply straight away, which is what
    a plain "DHCP + TFTP" set-up wants. A proxyDHCP server may pass a menu instead.
    """
    out = bytearray([PXE_DISCOVERY_CONTROL, 1, discovery_control & 0xFF])
    if menu:
        body = bytearray()
        for server_type, text in menu:
            desc = text.encode()[:250]
            body += struct.pack("!HB", server_type, len(desc)) + desc
        out += bytes([PXE_BOOT_MENU, len(body[:255])]) + body[:255]
    if prompt is not None:
        timeout, text = prompt
        desc = text.encode()[:254]
        out += bytes([PXE_MENU_PROMPT, len(desc) + 1, timeout & 0xFF]) + desc
    out.append(PXE_END)
    return bytes(out)
