"""ComputeArbiter: one heavy computation at a time, the most urgent first, nothing starved."""

import threading
import time

import pytest

from voxline.models.compute import ComputeArbiter, Work


def _queue_behind(arbiter: ComputeArbiter, works: list[tuple[Work, str]],
                  pause_secs: float = 0.02) -> list[str]:
    """Hold the CPU, queue `works` in that order, release; return the order they ran in."""
    order: list[str] = []

    def run(work: Work, name: str) -> None:
        with arbiter.turn(work):
            order.append(name)

    with arbiter.turn(Work.USER_WAITING):
        threads = []
        for work, name in works:
            threads.append(threading.Thread(target=run, args=(work, name)))
            threads[-1].start()
            time.sleep(pause_secs)  # arrival order is queue order
    for thread in threads:
        thread.join(timeout=5)
    return order


def test_the_most_urgent_goes_first_and_equals_in_arrival_order():
    order = _queue_behind(ComputeArbiter(), [
        (Work.SPECULATIVE, "interim"), (Work.WRITING_AHEAD, "story"),
        (Work.PLAYBACK, "sentence 1"), (Work.USER_WAITING, "final"),
        (Work.PLAYBACK, "sentence 2"), (Work.REPLY_OPENING, "first token"),
        (Work.RUNNING_DRY, "words before the audio runs out"),
    ])
    assert order == ["final", "words before the audio runs out", "first token", "sentence 1",
                     "sentence 2", "story", "interim"]


def test_waiting_work_gains_urgency_but_never_passes_a_waiting_user():
    """After a while a waiting sentence ranks with a reply's opening (and is older), but a
    user's final transcript still goes first."""
    order = _queue_behind(ComputeArbiter(aging_secs=0.05), [
        (Work.PLAYBACK, "old sentence"), (Work.REPLY_OPENING, "first token"),
        (Work.USER_WAITING, "final"),
    ], pause_secs=0.2)
    assert order == ["final", "old sentence", "first token"]


def test_a_failing_turn_hands_the_cpu_on():
    arbiter = ComputeArbiter()
    with pytest.raises(RuntimeError), arbiter.turn(Work.PLAYBACK):
        raise RuntimeError("synthesis failed")
    done = threading.Event()

    def next_turn():
        with arbiter.turn(Work.PLAYBACK):
            done.set()

    threading.Thread(target=next_turn).start()
    assert done.wait(2), "the CPU stayed taken after an exception"


def test_usage_counts_turns_and_time_per_kind():
    arbiter = ComputeArbiter()
    with arbiter.turn(Work.USER_WAITING):
        time.sleep(0.05)
    usage = arbiter.usage_now()
    turns, busy, _waited = usage[Work.USER_WAITING]
    assert turns == 1 and busy >= 0.05
    assert usage[Work.PLAYBACK][0] == 0
