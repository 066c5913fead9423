"""The DHCPv6 server's bindings on the lease core: one policy for IPv4 and IPv6.

A binding is a row of the lease core (`ptftpd.dhcp.leases`), decided by the same
`LeasePolicy` as a DHCPv4 lease, over the same stores (memory, SQLite, PostgreSQL);
its state table is in that module's docstring. Its client key is the DUID and the
IAID (`ia_key`), its `mac` the DUID in hex (for the per-client cap), its pool the
prefix's range (from the server's one `Dhcp6Config`), sparse: rows are made as addresses are used, a
client's first candidate is a hash of its key, so it gets the same address back even
after its row was lost, and two clients rarely probe the same addresses; at most
`MAX_PROBES` candidates are tried per request, so a full pool costs a bounded amount
of work.

State an unauthenticated packet creates is bounded and expires (the caps of
`Dhcp6Config`, the one settings object the bindings are built from): an offer
lives `offer_time` seconds and at most `max_offers` are kept (a new one pushes out the
oldest: an Advertise promises nothing); one DUID holds at most `max_per_client` IAs
(offered or bound: a Solicit with 4,000 IA_NAs gets `max_per_client` addresses and
NoAddrsAvail for the rest); at most `max_bindings` addresses are bound or quarantined
at a time, so a /64 is not an unbounded pool. Rows past their end leave memory (and a
SQLite file) at the next request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ptftpd.dhcp.free_index import MAX_PROBES
from ptftpd.dhcp.lease_store import LeaseRows, LeaseStore
from ptftpd.dhcp.leases import LeasePolicy, lease_rows

if TYPE_CHECKING:
    from ptftpd.dhcp6.config import Dhcp6Config

__all__ = ["MAX_PROBES", "prefix_policy"]


def prefix_policy(config: Dhcp6Config, store: LeaseStore | LeaseRows) -> LeasePolicy[Dhcp6Config]:
    """The lease core's policy (`ptftpd.dhcp.leases.LeasePolicy`, DHCPv4's too) for
    the DHCPv6 server's prefix: its range minus the server's addresses, the valid
    lifetime as the lease time, offers held `offer_time`, the caps on what clients
    can make it remember. `store` is the rows, or a persistence store (memory, SQLite)
    to put local rows in front of. Raises ValueError for an empty range."""
    return LeasePolicy(config, lease_rows(store))
