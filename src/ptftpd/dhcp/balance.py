"""Load balancing among the DHCP servers sharing one lease database (RFC 3074).

Every client falls in one of 256 hash buckets: RFC 3074's hash (a Pearson hash with the
RFC's mixing table, section 6) of its client identifier (option 61) when it sends one,
else of its hardware address (`chaddr`, `hlen` bytes). The buckets are split among the
live servers sharing the database: sorted by server id, bucket `b` goes to live server
`b mod n`, so every server computes the same split from the same list and each bucket
has exactly one owner. A server is live while its heartbeat row is younger than the
peer timeout (`--peer-timeout`); a silent one loses its buckets to the others, and
gets them back when it beats again.

What a server answers (`Balancer.answers`):
- a broadcast DISCOVER, INIT-REBOOT or REBINDING REQUEST, INFORM or BOOTREQUEST only
  for its own buckets (a relayed one counts as broadcast: the relay forwards
  broadcasts);
- RFC 3074's `secs` rule: a client that has been trying for more than `max_secs`
  seconds is answered by every server (its bucket's owner may be wedged);
- always: a datagram sent to this server's own address (a RENEWING client unicasts to
  the server that granted its lease), a REQUEST naming this server (SELECTING), RELEASE
  and DECLINE; a REQUEST naming another server only for its buckets (it withdraws the
  offer it may have made; it made none to other buckets' clients).

DHCPv6 (dhcp6/engine.py) splits the same way by the client's DUID: Solicit, Confirm,
Rebind and Information-request (multicast, no server named) only for its buckets, the
Elapsed Time option playing `secs`' part; the messages that name a server are its alone.

Sans-IO: `Balancer.update` takes the heartbeat rows as (server id, age in seconds, as
measured by the database's clock), so the servers' clocks need not agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from ptftpd.dhcp.options import MessageType, Opt
from ptftpd.dhcp.packet import Message

__all__ = [
    "BUCKETS",
    "DEFAULT_MAX_SECS",
    "DEFAULT_PEER_TIMEOUT",
    "MIXING_TABLE",
    "Balancer",
    "Split",
    "bucket_of",
    "hash_key",
    "owners",
    "pearson",
]

BUCKETS = 256
DEFAULT_PEER_TIMEOUT = 3.0
# RFC 3074's `secs` threshold (ISC dhcpd's "load balance max seconds" defaults to 3).
DEFAULT_MAX_SECS = 3

# RFC 3074 section 6: "a mixing table of 256 distinct values, in pseudo-random order".
MIXING_TABLE = bytes(
    (
        251, 175, 119, 215, 81, 14, 79, 191, 103, 49, 181, 143, 186, 157, 0, 232,
        31, 32, 55, 60, 152, 58, 17, 237, 174, 70, 160, 144, 220, 90, 57, 223,
        59, 3, 18, 140, 111, 166, 203, 196, 134, 243, 124, 95, 222, 179, 197, 65,
        180, 48, 36, 15, 107, 46, 233, 130, 165, 30, 123, 161, 209, 23, 97, 16,
        40, 91, 219, 61, 100, 10, 210, 109, 250, 127, 22, 138, 29, 108, 244, 67,
        207, 9, 178, 204, 74, 98, 126, 249, 167, 116, 34, 77, 193, 200, 121, 5,
        20, 113, 71, 35, 128, 13, 182, 94, 25, 226, 227, 199, 75, 27, 41, 245,
        230, 224, 43, 225, 177, 26, 155, 150, 212, 142, 218, 115, 241, 73, 88, 105,
        39, 114, 62, 255, 192, 201, 145, 214, 168, 158, 221, 148, 154, 122, 12, 84,
        82, 163, 44, 139, 228, 236, 205, 242, 217, 11, 187, 146, 159, 64, 86, 239,
        195, 42, 106, 198, 118, 112, 184, 172, 87, 2, 173, 117, 176, 229, 247, 253,
        137, 185, 99, 164, 102, 147, 45, 66, 231, 52, 141, 211, 194, 206, 246, 238,
        56, 110, 78, 248, 63, 240, 189, 93, 92, 51, 53, 183, 19, 171, 72, 50,
        33, 104, 101, 69, 8, 252, 83, 120, 76, 135, 85, 54, 202, 125, 188, 213,
        96, 235, 136, 208, 162, 129, 190, 132, 156, 38, 47, 1, 7, 254, 24, 4,
        216, 131, 89, 21, 28, 133, 37, 153, 149, 80, 170, 68, 6, 169, 234, 151,
    )
)  # fmt: skip


def pearson(key: bytes) -> int:
    """RFC 3074 section 6: the hash starts at the key's length (mod 256) and mixes the
    key's octets in from the last to the first."""
    value = len(key) & 0xFF
    for octet in reversed(key):
        value = MIXING_TABLE[value ^ octet]
    return value


def hash_key(msg: Message) -> bytes:
    """What RFC 3074 hashes: the client identifier's contents when sent (non-empty),
    else the `hlen` octets of `chaddr`."""
    client_id = msg.options.get(Opt.CLIENT_ID)
    if client_id:
        return client_id
    return msg.chaddr[: msg.hlen]


def bucket_of(msg: Message) -> int:
    return pearson(hash_key(msg))


def owners(servers: Iterable[str]) -> dict[str, frozenset[int]]:
    """The split of the 256 buckets among `servers`: sorted, bucket b to the (b mod n)th."""
    ordered = sorted(set(servers))
    if not ordered:
        return {}
    return {server: frozenset(range(i, BUCKETS, len(ordered))) for i, server in enumerate(ordered)}


@dataclass(frozen=True)
class Split:
    """This server's share: its buckets, and the live servers it is shared with."""

    mine: frozenset[int]
    servers: tuple[str, ...]

    def describe(self) -> str:
        return (
            f"{len(self.mine)} of {BUCKETS} buckets "
            f"({len(self.servers)} live server{'s' if len(self.servers) != 1 else ''}: "
            f"{', '.join(self.servers)})"
        )


_BALANCED = frozenset(
    {MessageType.DISCOVER, MessageType.REQUEST, MessageType.INFORM, None}
)  # None: BOOTP


@dataclass
class Balancer:
    """One server's view of the split (see the module's documentation)."""

    server_id: str
    peer_timeout: float = DEFAULT_PEER_TIMEOUT
    max_secs: int = DEFAULT_MAX_SECS
    split: Split = field(init=False)
    # Datagrams left to another server's bucket, and answered by the secs rule.
    left: int = field(default=0, init=False)
    by_secs: int = field(default=0, init=False)
    _own: bytes = field(default=b"", init=False, repr=False)

    def __post_init__(self) -> None:
        # Alone until the first heartbeat says otherwise: every bucket is ours.
        self.split = Split(frozenset(range(BUCKETS)), (self.server_id,))
        try:  # a DHCPv4 server's id is its address (option 54), DHCPv6's is not
            self._own = IPv4Address(self.server_id).packed
        except ValueError:
            self._own = b""

    def live(self, rows: Iterable[tuple[str, float]]) -> tuple[str, ...]:
        """The servers whose heartbeat is younger than the peer timeout; always us."""
        alive = {sid for sid, age in rows if age <= self.peer_timeout}
        alive.add(self.server_id)
        return tuple(sorted(alive))

    def update(self, rows: Sequence[tuple[str, float]]) -> Split | None:
        """New heartbeat rows (server id, age in seconds): the new split when it
        changed, else None."""
        servers = self.live(rows)
        if servers == self.split.servers:
            return None
        self.split = Split(owners(servers)[self.server_id], servers)
        return self.split

    def answers(self, msg: Message, unicast: bool) -> bool:
        """Does this server answer `msg`? `unicast`: it was sent to this server's own
        address (not broadcast, not through a relay)."""
        if unicast or msg.message_type not in _BALANCED:
            return True
        named = msg.options.get(Opt.SERVER_ID)
        if msg.message_type is MessageType.REQUEST and named is not None:
            # SELECTING: the named server binds; another withdraws only an offer it may
            # have made, i.e. for a client of its buckets (else it stays quiet: no
            # database round trip for a client it never offered anything).
            return named == self._own or self.owns(hash_key(msg), msg.secs, count=False)
        return self.owns(hash_key(msg), msg.secs)

    def owns(self, key: bytes, waited: float = 0.0, *, count: bool = True) -> bool:
        """Is the client hashed from `key` this server's to answer (its bucket, or it
        has waited `waited` seconds, more than `max_secs`)? DHCPv6 asks this with the
        client's DUID and its Elapsed Time."""
        if len(self.split.servers) == 1 or pearson(key) in self.split.mine:
            return True
        if waited > self.max_secs:
            self.by_secs += count
            return True
        self.left += count
        return False
