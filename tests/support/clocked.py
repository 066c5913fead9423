"""A lease policy driven as the DHCP engine drives it: every event with its `now`.

The policies take time one way (a `now` argument per event); tests that move a fake
clock wrap a policy in `Clocked`, which reads the clock once per call and passes it on.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any


class Clocked:
    """`policy`'s events with `now=clock()`; anything else is the policy's own."""

    def __init__(self, policy: Any, clock: Callable[[], float]) -> None:
        self.policy = policy
        self.clock = clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self.policy, name)

    def offer(self, key: bytes, mac: str, requested: IPv4Address | None = None) -> Any:
        return self.policy.offer(key, mac, requested, now=self.clock())

    def withdraw(self, key: bytes) -> Any:
        return self.policy.withdraw(key, now=self.clock())

    def request(self, key: bytes, mac: str, address: IPv4Address, *args: Any, **kw: Any) -> Any:
        return self.policy.request(key, mac, address, *args, now=self.clock(), **kw)

    def bind_permanent(self, key: bytes, mac: str) -> Any:
        return self.policy.bind_permanent(key, mac, now=self.clock())

    def release(self, key: bytes, address: IPv4Address) -> Any:
        return self.policy.release(key, address, now=self.clock())

    def decline(self, key: bytes, mac: str, address: IPv4Address) -> Any:
        return self.policy.decline(key, mac, address, now=self.clock())

    def summary(self) -> Any:
        return self.policy.summary(self.clock())
