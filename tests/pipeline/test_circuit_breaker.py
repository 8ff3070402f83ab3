"""The remote LLM's circuit breaker: closed → open after N failures → half-open probe."""

from voxline.pipeline.circuit_breaker import CircuitBreaker


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _opened(clock: Clock) -> CircuitBreaker:
    breaker = CircuitBreaker(failure_threshold=2, reset_secs=10, clock=clock)
    for _ in range(2):
        assert breaker.allow_request()
        breaker.record_failure("HTTP 500")
    return breaker


def test_opens_after_consecutive_failures_only():
    breaker = CircuitBreaker(failure_threshold=2, reset_secs=10, clock=Clock())
    breaker.record_failure("HTTP 500")
    breaker.record_success()
    breaker.record_failure("HTTP 500")
    assert breaker.state == "closed" and breaker.allow_request()
    breaker.record_failure("HTTP 500")
    assert breaker.state == "open" and not breaker.allow_request()
    assert breaker.describe() == "circuit open after 2 failures (HTTP 500); retry in 10 s"


def test_after_the_reset_time_one_probe_goes_out_and_its_success_closes():
    clock = Clock()
    breaker = _opened(clock)
    clock.now += 9.9
    assert not breaker.allow_request()
    clock.now += 0.1
    assert breaker.state == "half_open"
    assert breaker.allow_request()  # the probe
    assert not breaker.allow_request()  # other sessions still fail fast meanwhile
    breaker.record_success()
    assert breaker.state == "closed" and breaker.consecutive_failures == 0
    assert breaker.allow_request()


def test_a_failed_probe_opens_the_circuit_for_another_reset_period():
    clock = Clock()
    breaker = _opened(clock)
    clock.now += 10
    assert breaker.allow_request()
    breaker.record_failure("timeout")
    assert breaker.state == "open" and breaker.retry_in_secs == 10
    assert not breaker.allow_request()


def test_an_interrupted_probe_lets_the_next_request_probe():
    clock = Clock()
    breaker = _opened(clock)
    clock.now += 10
    assert breaker.allow_request()
    breaker.release()
    assert breaker.state == "half_open"
    assert breaker.allow_request()
