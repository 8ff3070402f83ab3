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
        (Work.AUDIO_RUNNING_OUT, "words due now"),
    ])
    assert order == ["words due now", "final", "words before the audio runs out", "first token",
                     "sentence 1", "sentence 2", "story", "interim"]


def test_a_waiting_turns_urgency_is_asked_again_when_the_cpu_is_handed_on():
    """A sentence asked for with audio ahead to spare runs low while it waits behind a user's
    final transcript: it goes next, before the next user's."""
    arbiter, order, due_now = ComputeArbiter(), [], threading.Event()

    def run(work, name: str) -> None:
        with arbiter.turn(work):
            order.append(name)
            if name == "final 1":
                due_now.set()  # meanwhile the sentence's audio ahead ran low

    sentence = lambda: Work.AUDIO_RUNNING_OUT if due_now.is_set() else Work.PLAYBACK  # noqa: E731
    with arbiter.turn(Work.USER_WAITING):
        threads = [threading.Thread(target=run, args=args) for args in [
            (sentence, "sentence"), (Work.USER_WAITING, "final 1"),
            (Work.USER_WAITING, "final 2")]]
        for thread in threads:
            thread.start()
            time.sleep(0.02)  # arrival order is queue order
    for thread in threads:
        thread.join(timeout=5)
    assert order == ["final 1", "sentence", "final 2"]
    assert arbiter.usage_now()[Work.AUDIO_RUNNING_OUT][0] == 1  # counted as what it ran as


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
