"""A circuit breaker for a remote service that every session of a process shares."""

import time
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Counts consecutive failures of one remote service and stops calling it while it is down.

    closed: every request goes out. After `failure_threshold` consecutive failures it opens:
    requests are refused at once for `reset_secs`. Then it is half-open: the next request is a
    probe (others are still refused); its success closes the breaker, its failure opens it again.

    One instance per process and remote server, owned by the worker and shared by its sessions.
    Plain synchronous state, used only from the event loop; `clock` is injectable for tests.
    """

    def __init__(
        self, *, failure_threshold: int, reset_secs: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.failure_threshold = failure_threshold
        self.reset_secs = reset_secs
        self._clock = clock
        self._state: BreakerState = "closed"
        self._opened_at = 0.0
        self._is_probing = False
        self.consecutive_failures = 0
        self.last_error = ""

    @property
    def state(self) -> BreakerState:
        """closed, open, or half_open (the reset time has passed; the next request probes)."""
        if self._state == "open" and self.retry_in_secs == 0:
            return "half_open"
        return self._state

    @property
    def retry_in_secs(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it would now)."""
        if self._state != "open":
            return 0.0
        return max(0.0, self._opened_at + self.reset_secs - self._clock())

    def allow_request(self) -> bool:
        """Whether a request may go out now. A True from a half-open breaker makes the caller
        the probe: it must report `record_success`, `record_failure` or `release`."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._is_probing:
            self._state, self._is_probing = "half_open", True
            return True
        return False

    def record_success(self) -> None:
        """The request answered: close the breaker."""
        self._state, self._is_probing = "closed", False
        self.consecutive_failures = 0
        self.last_error = ""

    def record_failure(self, error: str) -> None:
        """The request failed (error, refused connection, too slow): count it; open if needed."""
        self.consecutive_failures += 1
        self.last_error = error
        if self._is_probing or self.consecutive_failures >= self.failure_threshold:
            self._state, self._opened_at, self._is_probing = "open", self._clock(), False

    def release(self) -> None:
        """The request was abandoned (the user interrupted): it proves nothing either way."""
        if self._is_probing:
            self._state, self._is_probing = "open", False  # reset time has passed: probe again

    def describe(self) -> str:
        """One line for status views, e.g. 'circuit open after 3 failures (HTTP 500); retry
        in 12 s'."""
        state = self.state
        if state == "closed":
            return f"{self.consecutive_failures} recent failures" if self.consecutive_failures \
                else ""
        if state == "half_open":
            return f"circuit half-open: next request probes ({self.last_error})"
        return (f"circuit open after {self.consecutive_failures} failures ({self.last_error}); "
                f"retry in {self.retry_in_secs:.0f} s")
