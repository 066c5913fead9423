"""Subnets served by one engine: the local one (from IFACE) and relayed ones.

Why: sites boot many racks through relays from one server. Each subnet (a "scope")
has its own pool, lease policy, router, DNS and boot options. A request is matched to
its scope by the link it comes from: the link-selection sub-option of relay
information (82.5, RFC 3527), the subnet-selection option (118, RFC 3011), the relay's
giaddr, or, for a unicast renewal from a routed client, its ciaddr; else it is local.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from ptftpd.dhcp.leases import LeasePolicy, SubnetConfig
from ptftpd.dhcp.options import Opt
from ptftpd.dhcp.packet import ZERO_IP, Message

__all__ = [
    "LINK_SELECTION",
    "SUBNET_SELECTION",
    "Scope",
    "SubnetConfig",
    "find_scope",
    "link_address",
    "network_options",
]

SUBNET_SELECTION = 118  # RFC 3011
LINK_SELECTION = 5  # RFC 3527, a sub-option of relay agent information (82)


@dataclass
class Scope:
    """A subnet at run time: its lease policy, which holds the subnet's settings (read
    here, never copied), and its options packed once."""

    policy: LeasePolicy
    options: dict[int, bytes]

    @property
    def settings(self) -> SubnetConfig:
        return self.policy.config

    @property
    def network(self) -> IPv4Network:
        return self.policy.config.network

    @property
    def bootfile(self) -> str | None:
        return self.policy.config.bootfile

    @property
    def next_server(self) -> IPv4Address | None:
        return self.policy.config.next_server

    @property
    def ipxe_bootfile(self) -> str | None:
        return self.policy.config.ipxe_bootfile

    @property
    def lease_time(self) -> int:
        return self.policy.lease_time


def network_options(
    network: IPv4Network,
    routers: Sequence[IPv4Address],
    dns: Sequence[IPv4Address],
    domain: str | None,
    extra: Mapping[int, bytes],
) -> dict[int, bytes]:
    """The options every reply on `network` carries, packed once."""
    out: dict[int, bytes] = {Opt.SUBNET_MASK: network.netmask.packed}
    if routers:
        out[Opt.ROUTER] = b"".join(a.packed for a in routers)
    if dns:
        out[Opt.DNS] = b"".join(a.packed for a in dns)
    if domain:
        out[Opt.DOMAIN_NAME] = domain.encode()
    out[Opt.BROADCAST] = network.broadcast_address.packed
    out.update(extra)
    return out


def _sub_option(info: bytes, code: int) -> bytes | None:
    i = 0
    while i + 1 < len(info):
        sub, size = info[i], info[i + 1]
        if sub == code and i + 2 + size <= len(info):
            return info[i + 2 : i + 2 + size]
        i += 2 + size
    return None


def link_address(msg: Message) -> IPv4Address | None:
    """The address naming the client's link, when the request names one.

    RFC 3527 section 4: a relay's link-selection sub-option (82.5) MUST win over the
    client's subnet-selection option (118) and over giaddr; the relay sits on the link
    and knows it, the client may be wrong or lying about it. Then 118 (RFC 3011), then
    giaddr (RFC 2131)."""
    info = msg.options.get(Opt.RELAY_AGENT_INFO)
    if info is not None and msg.giaddr != ZERO_IP:
        link = _sub_option(info, LINK_SELECTION)
        if link is not None and len(link) == 4:
            return IPv4Address(link)
    selected = msg.options.get(SUBNET_SELECTION)
    if selected is not None and len(selected) == 4:
        return IPv4Address(selected)
    if msg.giaddr != ZERO_IP:
        return msg.giaddr
    return None


def find_scope(scopes: Sequence[Scope], msg: Message) -> Scope | None:
    """The scope for `msg` (`scopes[0]` is the local one); None: not a link we serve."""
    link = link_address(msg)
    if link is None:
        if msg.ciaddr != ZERO_IP and msg.ciaddr not in scopes[0].network:
            for scope in scopes[1:]:
                if msg.ciaddr in scope.network:
                    return scope
        return scopes[0]
    for scope in scopes:
        if link in scope.network:
            return scope
    return None
