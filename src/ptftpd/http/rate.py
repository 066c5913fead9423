"""Token buckets for the optional HTTP rate limits (sans-IO: the caller passes `now`).

A bucket holds up to `burst` bytes of credit and refills at `rate` bytes per second. The
driver asks how much it may send now (`available`), sends at most that with one
sendfile call, then `spend`s what the kernel took; with nothing available it sleeps
`wait` seconds. So the limit costs no copy and no per-byte work: only the size of each
sendfile slice changes.
"""

from __future__ import annotations

SLICE_SECONDS = 0.05
"""A bucket's burst: this many seconds of its rate (at least `MIN_BURST`). Small enough
that a limited download is smooth at the scale a boot client sees, large enough that a
1 MB/s limit costs 20 sendfile calls a second, not hundreds."""
MIN_BURST = 16 * 1024


class TokenBucket:
    """`rate` bytes per second, at most `burst` bytes at once; starts full."""

    def __init__(self, rate: int, now: float, burst: int | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(MIN_BURST, int(rate * SLICE_SECONDS))
        self._tokens = float(self.burst)
        self._stamp = now

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def available(self, now: float) -> int:
        """Bytes that may be sent now."""
        self._refill(now)
        return int(self._tokens)

    def spend(self, count: int, now: float) -> None:
        """`count` bytes were sent (at most what `available` said)."""
        self._refill(now)
        self._tokens -= count

    def wait(self, want: int, now: float) -> float:
        """Seconds until `min(want, burst)` bytes are available (0 when they are)."""
        self._refill(now)
        missing = min(want, self.burst) - self._tokens
        return max(0.0, missing / self.rate)
