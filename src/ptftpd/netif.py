"""Turn the IFACE argument every tool takes into addresses to bind.

Users of the original pTFTPd pass an interface name (`eth0`); scripts and tests
pass an address (`127.0.0.1`, `::1`). Both are accepted everywhere.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

import ifaddr

from ptftpd.errors import StartError


class InterfaceError(StartError):
    """IFACE names no interface and is no address: one line, exit 1."""


@dataclass(frozen=True)
class InterfaceAddress:
    interface: str | None
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    scope_id: int = 0

    @property
    def host(self) -> str:
        """Address string as sockets want it (with `%scope` for link-local IPv6)."""
        text = str(self.address)
        if self.scope_id and isinstance(self.address, ipaddress.IPv6Address):
            text += f"%{self.interface}"
        return text


def _adapters() -> list[ifaddr.Adapter]:
    return list(ifaddr.get_adapters())


def _exists(name: str) -> bool:
    """An interface without any address is not listed by ifaddr; the kernel knows it."""
    try:
        socket.if_nametoindex(name)
    except (OSError, ValueError):
        return False
    return True


def global_hosts(iface: str, *, family: int | None = None) -> list[str]:
    """The addresses of `iface` other than link-local ones, as text."""
    found = interface_addresses(iface, family=family)
    return [a.host for a in found if not a.address.is_link_local]


def interface_addresses(iface: str, *, family: int | None = None) -> list[InterfaceAddress]:
    """Addresses for an interface name or a literal address.

    A literal address is returned as is (with the matching interface's prefix when one
    holds it). For a name, IPv4 addresses come first; link-local IPv6 addresses are left
    out unless they are the only ones, since a TFTP reply from one confuses most clients.
    `family` (4 or 6) keeps only that family.
    """
    try:
        literal = ipaddress.ip_address(iface.split("%", 1)[0])
    except ValueError:
        literal = None
    adapters = _adapters()
    found: list[InterfaceAddress] = []
    if literal is not None and family is not None and literal.version != family:
        raise InterfaceError(
            f"{iface} is an IPv{literal.version} address; an IPv{family} address or an "
            f"interface with one is needed here"
        )
    if literal is not None:
        for adapter in adapters:
            for ip in adapter.ips:
                value = ip.ip[0] if isinstance(ip.ip, tuple) else ip.ip
                if ipaddress.ip_address(value) == literal:
                    net = ipaddress.ip_network(f"{literal}/{ip.network_prefix}", strict=False)
                    return [InterfaceAddress(adapter.nice_name, literal, net)]
        bits = 32 if literal.version == 4 else 128
        return [InterfaceAddress(None, literal, ipaddress.ip_network(f"{literal}/{bits}"))]
    for adapter in adapters:
        if adapter.nice_name != iface and adapter.name != iface:
            continue
        for ip in adapter.ips:
            if isinstance(ip.ip, tuple):
                addr6 = ipaddress.IPv6Address(ip.ip[0])
                net6 = ipaddress.IPv6Network(f"{addr6}/{ip.network_prefix}", strict=False)
                found.append(InterfaceAddress(adapter.nice_name, addr6, net6, ip.ip[2]))
            else:
                addr4 = ipaddress.IPv4Address(ip.ip)
                net4 = ipaddress.IPv4Network(f"{addr4}/{ip.network_prefix}", strict=False)
                found.append(InterfaceAddress(adapter.nice_name, addr4, net4))
    if not found:
        if any(a.nice_name == iface or a.name == iface for a in adapters) or _exists(iface):
            what = "IP" if family is None else f"IPv{family}"
            raise InterfaceError(f"interface {iface} exists but has no {what} address")
        raise InterfaceError(f"no such interface or address: {iface}")
    if family is not None:
        found = [a for a in found if a.address.version == family]
        if not found:
            raise InterfaceError(f"interface {iface} has no IPv{family} address")
    found.sort(key=lambda a: (a.address.version, a.address.is_link_local))
    non_link_local = [a for a in found if not a.address.is_link_local]
    return non_link_local or found
