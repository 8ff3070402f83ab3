"""One reply of the batch scheduler (`llama_batch.py`): its request, the stream its caller reads,
and the sampler that picks its tokens."""

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from llama_cpp import _internals as internals

END = object()  # the scheduler's last word to a reply: no more pieces
PENALTY_LAST_TOKENS = 64  # a spoken turn's words and a short reply's


class Pace(Protocol):
    """A reply's text against its playback (`pipeline/llm.py` PlaybackPace), asked from the
    scheduler thread before each step."""

    def is_ahead(self) -> bool:
        """Far enough ahead of playback: the reply may sit out."""

    def is_running_short(self) -> bool:
        """Playback will soon run out of text: the reply's next words are urgent."""


@dataclass(frozen=True)
class Penalties:
    """Repetition penalties of one reply (llama.cpp's penalties sampler), over `history` (the
    tokens of the user's last words, fed to the sampler first) and the reply so far."""

    repeat: float = 1.0  # a seen token's logit is divided by this (multiplied, if negative)
    presence: float = 0.0  # and this is subtracted from it
    history: tuple[int, ...] = ()
    banned_opening: tuple[int, ...] = ()  # the reply's first token is none of these


@dataclass(eq=False)
class Request:
    """One reply: a tokenised prompt in, text pieces out through `out`."""

    prompt: list[int]
    max_tokens: int
    temperature: float
    stop: threading.Event  # set by the caller (an interruption): ends the reply within one step
    session_key: str | None
    # While the reply's text is far enough ahead of its playback it sits out steps, and the
    # CPU goes to other sessions (a 160-token story is ~40 s of speech); ignored while another
    # request waits for a slot, so a slot frees up as soon as it can. While playback is about
    # to run dry, its steps are as urgent as a reply's first words.
    pace: Pace | None = None
    penalties: Penalties | None = None
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    prompt_tokens_evaluated: int | None = None  # set when admitted; the rest came from the cache
    first_token: int | None = None  # the reply's first token, once sampled
    is_abandoned: bool = False  # the caller closed the stream early
    # When it last moved (submitted, admitted, a token): a reply still for STALL_WARN_SECS
    # gets one warning with the scheduler's state (`BatchScheduler._warn_if_stalled`).
    moved_at: float = field(default_factory=time.monotonic)
    stall_warned: bool = False

    @property
    def is_prefill(self) -> bool:
        """Only fill the session's KV cache with the prompt (the user is still speaking)."""
        return self.max_tokens == 0


class ChatStream:
    """Iterator of one reply's text pieces. Blocks its thread while the scheduler works.

    A scheduler failure is raised here, in the caller's thread. `prompt_tokens_evaluated` says
    how many prompt tokens needed evaluating (the rest were reused from the slot's KV cache).
    """

    def __init__(self, request: Request):
        self._request = request
        self._is_done = False

    @property
    def prompt_tokens(self) -> int:
        return len(self._request.prompt)

    @property
    def prompt_tokens_evaluated(self) -> int | None:
        return self._request.prompt_tokens_evaluated

    @property
    def first_token(self) -> int | None:
        """The reply's first token (None before it is sampled, or for an empty reply)."""
        return self._request.first_token

    def __iter__(self) -> "ChatStream":
        return self

    def __next__(self) -> str:
        if self._is_done:
            raise StopIteration
        item = self._request.out.get()
        if item is END or isinstance(item, BaseException):
            self._is_done = True
            if item is END:
                raise StopIteration
            raise item
        return item

    def close(self) -> None:
        """Give the slot back without reading the rest (the scheduler ends it next step)."""
        self._request.is_abandoned = True
        self._is_done = True


def make_sampler(temperature: float, penalties: Penalties | None = None, *,
                  n_vocab: int = 0) -> internals.LlamaSampler:
    """Greedy at temperature 0; otherwise llama-cpp-python's chat defaults (top-k 40, top-p 0.95,
    min-p 0.05) before the temperature, as create_chat_completion samples. `penalties` come
    first, as in llama-cpp-python's Llama, and remember the user's words from the start."""
    sampler = internals.LlamaSampler()
    if penalties is not None and (penalties.repeat != 1.0 or penalties.presence != 0.0):
        sampler.add_penalties(n_vocab, PENALTY_LAST_TOKENS, penalties.repeat, 0.0,
                              penalties.presence)
        for token in penalties.history[-PENALTY_LAST_TOKENS:]:
            sampler.accept(token)
    if penalties is not None and penalties.banned_opening:
        sampler.add_logit_bias(n_vocab, dict.fromkeys(penalties.banned_opening, float("-inf")))
    if temperature == 0:
        sampler.add_greedy()
        return sampler
    sampler.add_top_k(40)
    sampler.add_top_p(0.95, 1)
    sampler.add_min_p(0.05, 1)
    sampler.add_temp(temperature)
    sampler.add_dist(int(time.time_ns()) & 0xFFFFFFFF)
    return sampler
