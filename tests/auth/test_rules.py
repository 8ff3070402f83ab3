"""The rules on their own: when keys are required, the origin rule, the token buckets."""

import pytest

from voxline.auth import keys_required
from voxline.auth.origin import is_origin_allowed
from voxline.auth.ratelimit import RateLimiter
from voxline.config.settings import AuthSettings


@pytest.mark.parametrize(("enabled", "host", "required"), [
    (False, "127.0.0.1", False),
    (False, "localhost", False),
    (False, "::1", False),
    (False, "127.0.0.2", False),
    (False, "0.0.0.0", True),
    (False, "::", True),
    (False, "192.168.1.20", True),
    (False, "voice.example.org", True),
    (True, "127.0.0.1", True),
])
def test_keys_are_required_when_enabled_or_bound_beyond_loopback(enabled, host, required):
    is_required, why = keys_required(AuthSettings(enabled=enabled), host)
    assert is_required is required
    assert ("auth.enabled" in why) if enabled else (host in why)


@pytest.mark.parametrize(("origin", "host", "allowed", "expected"), [
    (None, "127.0.0.1:8000", [], True),  # not a browser
    ("http://127.0.0.1:8000", "127.0.0.1:8000", [], True),  # same origin
    ("https://voice.example.org", "voice.example.org", [], True),  # default port
    ("https://voice.example.org:443", "voice.example.org", [], True),
    ("HTTP://LOCALHOST:8000/", "localhost:8000", [], True),
    ("http://127.0.0.1:8001", "127.0.0.1:8000", [], False),  # another port is another origin
    ("http://evil.example", "127.0.0.1:8000", [], False),
    ("null", "127.0.0.1:8000", [], False),  # sandboxed frame, file:// page
    ("http://evil.example", None, [], False),
    ("https://app.example.org", "127.0.0.1:8000", ["https://app.example.org"], True),
    ("http://app.example.org", "127.0.0.1:8000", ["https://app.example.org"], False),
    ("http://evil.example", "127.0.0.1:8000", ["*"], True),
])
def test_origin_rule(origin, host, allowed, expected):
    assert is_origin_allowed(origin, host, allowed) is expected


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_one_per_interval():
    clock = FakeClock()
    limiter = RateLimiter(3, clock=clock)  # 3 a minute: one every 20 s
    for _ in range(3):
        assert limiter.retry_after_secs("10.0.0.1") == 0
        limiter.take("10.0.0.1")
    assert limiter.retry_after_secs("10.0.0.1") == pytest.approx(20)
    assert limiter.retry_after_secs("10.0.0.2") == 0  # names are independent
    clock.now += 15
    assert limiter.retry_after_secs("10.0.0.1") == pytest.approx(5)
    clock.now += 5
    assert limiter.retry_after_secs("10.0.0.1") == 0
    limiter.take("10.0.0.1")
    assert limiter.retry_after_secs("10.0.0.1") == pytest.approx(20)


def test_zero_means_no_limit():
    limiter = RateLimiter(0)
    for _ in range(1000):
        limiter.take("x")
    assert limiter.retry_after_secs("x") == 0


def test_idle_clients_are_forgotten(monkeypatch):
    monkeypatch.setattr("voxline.auth.ratelimit.MAX_BUCKETS", 10)
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock)
    for i in range(10):
        limiter.take(f"ip{i}")
    clock.now += 60  # all refilled
    limiter.take("new")
    assert len(limiter._buckets) == 1
