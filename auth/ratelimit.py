"""Token buckets by name (a client IP, a key id): N events a minute, in bursts of up to N."""

import time
from collections.abc import Callable

MAX_BUCKETS = 10_000  # then buckets that have refilled (idle clients) are forgotten


class RateLimiter:
    """`per_minute` events per name and minute; 0 means no limit. Not thread-safe: the event
    loop owns it. `clock` is injectable for tests (seconds, monotonic)."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self._rate_per_sec = per_minute / 60
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)

    def retry_after_secs(self, name: str) -> float:
        """0 if `name` may go now, else the seconds until it may (nothing is taken)."""
        if not self.per_minute:
            return 0.0
        tokens = self._tokens(name)
        return 0.0 if tokens >= 1 else (1 - tokens) / self._rate_per_sec

    def remaining(self, name: str) -> tuple[int, float]:
        """Events `name` may still have now (whole ones), and seconds until it has them all
        again."""
        tokens = self._tokens(name) if self.per_minute else 0.0
        refill = (self.per_minute - tokens) / self._rate_per_sec if self.per_minute else 0.0
        return int(tokens), refill

    def take(self, name: str) -> None:
        """Count one event for `name` (after `retry_after_secs` said it may go)."""
        if not self.per_minute:
            return
        if len(self._buckets) >= MAX_BUCKETS:
            self._forget_full_buckets()
        self._buckets[name] = (max(0.0, self._tokens(name) - 1), self._clock())

    def _tokens(self, name: str) -> float:
        tokens, at = self._buckets.get(name, (self.per_minute, self._clock()))
        return min(self.per_minute, tokens + (self._clock() - at) * self._rate_per_sec)

    def _forget_full_buckets(self) -> None:
        for name in [n for n in self._buckets if self._tokens(n) >= self.per_minute]:
            del self._buckets[name]
