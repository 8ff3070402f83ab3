"""On 2 cores, one heavy computation at a time, the one a user waits on first."""

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum


class Work(IntEnum):
    """What a turn on the CPU is for, most urgent first."""

    AUDIO_RUNNING_OUT = 0  # the next words of a reply whose audio runs out within ~0.5 s
    USER_WAITING = 1  # the decode at a pause or the final one, a reply's first words
    RUNNING_DRY = 2  # the next words of a reply whose audio will run out within ~1.5 s
    REPLY_OPENING = 3  # LLM steps with a new prompt or a reply's first words in them
    PLAYBACK = 4  # the next sentences of a reply that is playing
    WRITING_AHEAD = 5  # LLM steps of replies well under way (they are ahead of playback)
    SPECULATIVE = 6  # interim transcripts, prefill of the user's words: nice to have early


# A turn's kind, or how to tell it when the CPU is handed on: a sentence asked for with 1.5 s of
# audio ahead may have 0.3 s left by the time other work is done.
Urgency = Work | Callable[[], Work]


_caller = threading.local()


@contextmanager
def working_on(work: Urgency) -> Iterator[None]:
    """Turns taken in this thread through `ComputeArbiter.caller_turn` are for `work`: for an
    engine whose inference runs deep inside a library (Piper), so the turn covers the inference
    alone, and a generator resumed only to find it has ended waits for no turn."""
    previous = getattr(_caller, "work", None)
    _caller.work = work
    try:
        yield
    finally:
        _caller.work = previous


class ComputeArbiter:
    """Hands the CPU to Whisper decodes, Piper/Kokoro sentences and llama.cpp steps one at a
    time, most urgent first (FIFO within a kind).

    On 2 cores, engines run together fight for the cores, and llama.cpp's spinning thread
    barriers make it worst: an LLM token beside a Whisper decode or a Piper sentence takes
    several times as long, and the whole work is slower than one after the other
    (docs/performance.md#where-the-time-goes). One at a time, each gets both cores, and the
    order is ours: a user's final transcript before another session's story. A turn lasts one
    decode, one sentence or one LLM step (0.05-0.5 s). Waiting work gains a level every
    `aging_secs`, up to REPLY_OPENING, so nothing starves.
    """

    def __init__(self, aging_secs: float = 1.0):
        self._aging_secs = aging_secs
        self._changed = threading.Condition()
        self._holder: _Ticket | None = None
        self._waiting: list[_Ticket] = []
        self._arrivals = itertools.count()
        # Per kind of work: [turns, seconds holding the CPU, seconds waiting for it]
        # (exported as voxline_compute_* in /metrics).
        self._usage = {work: [0, 0.0, 0.0] for work in Work}

    @contextmanager
    def turn(self, work: Urgency) -> Iterator[None]:
        """Hold the CPU for one piece of `work` (any thread; blocks until it is its turn). A
        callable is asked each time the CPU is handed on, while this waits."""
        ticket = _Ticket(work, next(self._arrivals), time.monotonic())
        with self._changed:
            self._waiting.append(ticket)
            if self._holder is None:
                self._grant()
            self._changed.wait_for(lambda: self._holder is ticket)
        granted = time.monotonic()
        try:
            yield
        finally:
            with self._changed:
                self._holder = None
                if self._waiting:
                    self._grant()
                usage = self._usage[ticket.granted_as]
                usage[0] += 1
                usage[1] += time.monotonic() - granted
                usage[2] += granted - ticket.since

    def caller_turn(self):
        """A turn for the work this thread's caller declared with `working_on` (else PLAYBACK)."""
        work = getattr(_caller, "work", None)
        return self.turn(Work.PLAYBACK if work is None else work)

    def usage_now(self) -> dict[Work, tuple[int, float, float]]:
        """Per kind of work so far: (turns, seconds holding the CPU, seconds waiting for it)."""
        with self._changed:
            return {work: (n, busy, wait) for work, (n, busy, wait) in self._usage.items()}

    def _grant(self) -> None:
        """Give the CPU to the most urgent waiter (the lock is held). Decided here, once, so
        that waiters waking at different moments never disagree on whose turn it is."""
        now = time.monotonic()
        self._holder = min(self._waiting, key=lambda ticket: ticket.rank(now, self._aging_secs))
        self._holder.granted_as = self._holder.work_now()
        self._waiting.remove(self._holder)
        self._changed.notify_all()


@dataclass(eq=False)
class _Ticket:
    work: Urgency
    arrival: int
    since: float
    granted_as: Work = Work.PLAYBACK  # its kind when it got the CPU (the usage counters)

    def work_now(self) -> Work:
        return self.work() if callable(self.work) else self.work

    def rank(self, now: float, aging_secs: float) -> tuple[int, int]:
        work = self.work_now()
        if work > Work.REPLY_OPENING:
            work = max(Work.REPLY_OPENING, work - int((now - self.since) / aging_secs))
        return work, self.arrival
