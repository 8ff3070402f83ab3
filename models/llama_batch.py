"""Continuous batching for llama.cpp: one scheduler thread drives one context for many replies.

Like llama-server's slots. Each slot is a llama.cpp sequence with its own KV cache. Every step
builds one batch out of the next token of each generating slot plus a chunk of pending prompt
tokens, decodes it once and samples each slot from its own logits. A slot remembers what its KV
holds, so a session's next turn evaluates only the tokens after the common prefix.
"""

import codecs
import itertools
import queue
import threading
import time
from collections import deque
from dataclasses import replace

import llama_cpp
from llama_cpp import _internals as internals
from loguru import logger

from voxline.models.compute import ComputeArbiter, Work
from voxline.models.llama_request import END, ChatStream, Request, make_sampler

_CLOSE = object()  # put on the inbox by close()


class _Slot:
    """One llama.cpp sequence: the tokens its KV cache holds and the reply it is working on."""

    def __init__(self, seq_id: int):
        self.seq_id = seq_id
        self.tokens: list[int] = []  # what KV positions 0..len-1 hold
        self.session_key: str | None = None
        self.last_used = 0  # scheduler clock when its last reply ended (LRU eviction)
        self.started_at = 0  # scheduler clock when its current reply was admitted
        self.request: Request | None = None
        self.pending: list[int] = []  # prompt tokens still to evaluate; then [last sampled token]
        self.sampler: internals.LlamaSampler | None = None
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.n_generated = 0
        self.logits_index = -1  # row of this slot's logits in the last batch, -1 if none

    @property
    def is_generating(self) -> bool:
        return self.request is not None and self.n_generated > 0

    @property
    def is_opening(self) -> bool:
        """A user is waiting on this slot's next step: a prompt, a reply's first words, or a
        reply whose playback is about to run out of text."""
        if self.n_generated < OPENING_TOKENS:
            return True
        pace = self.request.pace if self.request else None
        return bool(pace and pace.is_running_short())


class BatchScheduler:
    """Owns the llama context; serves `Request`s from any thread, `slots` of them at a time.

    `prefill_chunk_tokens` caps the prompt tokens per step, so a long prompt delays the other
    slots' next token by one chunk's compute at most. Slots are reused by session key; with more
    sessions than slots the least recently used idle slot is taken over.
    """

    def __init__(self, *, model: internals.LlamaModel, ctx: internals.LlamaContext,
                 slots: int, n_ctx_per_slot: int, prefill_chunk_tokens: int,
                 compute: ComputeArbiter | None = None):
        self._model = model
        self._ctx = ctx
        self._slots = [_Slot(i) for i in range(slots)]
        self.n_ctx_per_slot = n_ctx_per_slot
        self._chunk = prefill_chunk_tokens
        self._compute = compute or ComputeArbiter()  # alone: never waits
        self._steps = 0
        self._can_shift = bool(llama_cpp.llama_memory_can_shift(ctx.memory))
        self._batch = internals.LlamaBatch(
            n_tokens=prefill_chunk_tokens + slots, embd=0, n_seq_max=1, verbose=False
        )
        self._inbox: queue.Queue = queue.Queue()
        self._waiting: deque[Request] = deque()
        self._clock = itertools.count(1)  # orders admissions and slot use
        self._error: BaseException | None = None
        self._error_lock = threading.Lock()  # a request is either queued before the end or refused
        self._thread = threading.Thread(target=self._run, name="voxline-llm-batch", daemon=True)
        self._thread.start()

    def submit(self, request: Request) -> ChatStream:
        """Queue a reply; its pieces arrive on the returned stream."""
        with self._error_lock:
            if self._error is not None:
                raise RuntimeError(f"llama engine is not running: {self._error}")
            self._inbox.put(request)
        return ChatStream(request)

    def close(self) -> None:
        """Stop the thread after its current step; replies still running end with an error."""
        self._inbox.put(_CLOSE)
        self._thread.join(timeout=10)

    # The scheduler thread.

    def _run(self) -> None:
        error: BaseException = RuntimeError("llama engine closed")
        try:
            while self._take_inbox(timeout=self._inbox_timeout()):
                self._warn_if_stalled()
                self._end_stopped()
                self._admit()
                if order := self._step_order():
                    work = _work(order)
                    # Background reading goes in small bites: a step is never interrupted,
                    # and a user's final transcript may be waiting behind it.
                    chunk = min(self._chunk, PREFILL_STEP_TOKENS) if (
                        work == Work.SPECULATIVE) else self._chunk
                    with self._compute.turn(work):
                        self._step(order, chunk)
        except BaseException as e:  # a bug or a broken context: no caller may wait forever
            logger.exception("llama scheduler failed")
            error = e
        with self._error_lock:
            self._error = error
        for slot in self._slots:
            if slot.request is not None:
                self._finish(slot, self._error)
        for request in self._waiting:
            request.out.put(self._error)
        while not self._inbox.empty():
            if (item := self._inbox.get_nowait()) is not _CLOSE:
                item.out.put(self._error)

    def _has_work(self) -> bool:
        return bool(self._waiting) or any(slot.request for slot in self._slots)

    def _inbox_timeout(self) -> float | None:
        """How long to wait for new requests: forever when idle, not at all when a step can run,
        and a moment when every reply is waiting for its playback to catch up."""
        if not self._has_work():
            return None
        return 0.0 if self._step_order() else PACE_POLL_SECS

    def _take_inbox(self, *, timeout: float | None) -> bool:
        """Move new requests to the waiting list; False once close() was called."""
        try:
            item = self._inbox.get(block=timeout != 0.0, timeout=timeout or None)
            while True:
                if item is _CLOSE:
                    return False
                self._waiting.append(item)
                item = self._inbox.get_nowait()
        except queue.Empty:
            return True

    def _warn_if_stalled(self) -> None:
        """Log the state once when a reply has not moved for STALL_WARN_SECS: a reply should
        never wait that long, so the log shows what it waits on."""
        now = time.monotonic()
        busy = [s.request for s in self._slots if s.request]
        stalled = [r for r in [*busy, *self._waiting] if not r.is_prefill
                   and not r.stall_warned and now - r.moved_at > STALL_WARN_SECS]
        if not stalled:
            return
        for request in stalled:
            request.stall_warned = True
        slots = "; ".join(
            f"slot {s.seq_id}: session {str(s.session_key)[:8]}, "
            + (f"{_describe(s.request, now)}, {s.n_generated} generated, "
               f"{len(s.pending)} pending" if s.request else "idle")
            for s in self._slots)
        waiting = ", ".join(f"session {str(r.session_key)[:8]} {_describe(r, now)}"
                            for r in self._waiting) or "none"
        logger.warning("llama: {} reply(ies) still for over {:g} s; step {}, next step {}; "
                       "{}; waiting: {}", len(stalled), STALL_WARN_SECS, self._steps,
                       [s.seq_id for s in self._step_order()], slots, waiting)

    def _end_stopped(self) -> None:
        for slot in self._slots:
            if slot.request and (slot.request.stop.is_set() or slot.request.is_abandoned):
                self._finish(slot, END)
        for request in [r for r in self._waiting if r.stop.is_set() or r.is_abandoned]:
            self._waiting.remove(request)
            request.out.put(END)

    def _admit(self) -> None:
        for request in list(self._waiting):
            if request.is_prefill and self._supersedes(request):
                self._waiting.remove(request)
                request.out.put(END)
                continue
            slot = self._pick_slot(request.session_key, may_evict=not request.is_prefill)
            if slot is not None:
                self._waiting.remove(request)
                self._start(slot, request)
            elif request.is_prefill and request.session_key not in self._owners():
                self._waiting.remove(request)  # no slot of its own free: not worth a reply's
                request.out.put(END)

    def _supersedes(self, prefill: Request) -> bool:
        """A later request of the same session is waiting: this prefill is stale."""
        later = itertools.islice(self._waiting, self._waiting.index(prefill) + 1, None)
        return any(r.session_key == prefill.session_key for r in later)

    def _owners(self) -> set[str | None]:
        return {slot.session_key for slot in self._slots}

    def _pick_slot(self, key: str | None, *, may_evict: bool = True) -> _Slot | None:
        """The session's own slot (waiting while it is busy: its last reply is ending), else the
        idle slot no session owns, else (`may_evict`) the least recently used idle one."""
        own = next((s for s in self._slots if key is not None and s.session_key == key), None)
        if own is not None:
            return None if own.request else own
        idle = [s for s in self._slots if s.request is None
                and (may_evict or s.session_key is None)]
        return min(idle, key=lambda s: (s.session_key is not None, s.last_used), default=None)

    def _start(self, slot: _Slot, request: Request) -> None:
        # Keep the longest common prefix in KV; at least one token is evaluated for logits.
        keep = llama_cpp.Llama.longest_token_prefix(slot.tokens, request.prompt[:-1])
        cut = _dropped_run(slot.tokens, request.prompt, keep) if self._can_shift else 0
        if cut:
            # The history window dropped the oldest turns: remove them from KV and shift what
            # follows into place (llama.cpp re-rotates its keys) rather than evaluate it all
            # again, ~2 s on 2 cores every few turns. What follows was computed with those
            # turns in view; llama-server's context shift makes the same trade.
            self._ctx.kv_cache_seq_rm(slot.seq_id, keep, keep + cut)
            self._ctx.kv_cache_seq_shift(slot.seq_id, keep + cut, -1, -cut)
            slot.tokens = slot.tokens[:keep] + slot.tokens[keep + cut:]
            keep = llama_cpp.Llama.longest_token_prefix(slot.tokens, request.prompt[:-1])
        self._ctx.kv_cache_seq_rm(slot.seq_id, keep, -1)
        slot.tokens = slot.tokens[:keep]
        slot.pending = request.prompt[keep:]
        slot.request, slot.session_key = request, request.session_key
        slot.sampler = make_sampler(request.temperature, request.penalties,
                                     n_vocab=self._model.n_vocab())
        slot.decoder.reset()
        slot.n_generated = 0
        slot.started_at = next(self._clock)
        request.prompt_tokens_evaluated = len(slot.pending)
        request.moved_at = time.monotonic()

    def _step_order(self) -> list[_Slot]:
        """The slots in the next step: generating slots first (one token each), then prompts,
        oldest request first. While some reply is still on its first words, replies further
        along join only every OPENING_STRIDE-th step: a step costs more per sequence in it, and
        a user waits on a reply's first words, while the rest of a reply is ahead of playback.
        A reply far enough ahead of its playback sits out (`Request.pace`)."""
        pending = [s for s in self._slots if s.pending]
        if not any(not r.is_prefill for r in self._waiting):  # nobody needs a slot freed
            pending = [s for s in pending if not (
                s.is_generating and s.request.pace and s.request.pace.is_ahead())]
        opening = any(s.is_opening for s in pending)
        stride_turn = (self._steps + 1) % OPENING_STRIDE == 0
        return sorted((s for s in pending if not opening or s.is_opening or stride_turn),
                      key=lambda s: (not s.is_generating, s.started_at))

    def _step(self, order: list[_Slot], chunk: int) -> None:
        """One llama_decode for the slots in `order` (at most `chunk` prompt tokens), then one
        sample per slot that wants it."""
        batch, n, budget = self._batch.batch, 0, chunk
        added: dict[_Slot, list[int]] = {}
        self._steps += 1
        for slot in order:
            take = slot.pending if slot.is_generating else slot.pending[:budget]
            if not take:
                continue
            if not slot.is_generating:
                budget -= len(take)
            for i, token in enumerate(take):
                batch.token[n], batch.pos[n] = token, len(slot.tokens) + i
                batch.n_seq_id[n], batch.seq_id[n][0], batch.logits[n] = 1, slot.seq_id, False
                n += 1
            is_last = len(take) == len(slot.pending)
            wants_logits = is_last and not slot.request.is_prefill
            batch.logits[n - 1] = wants_logits
            slot.logits_index = n - 1 if wants_logits else -1
            added[slot] = take
        batch.n_tokens = n
        try:
            self._ctx.decode(self._batch)
        except RuntimeError as e:  # llama_decode failed: fail these replies, keep serving
            for slot in added:
                self._ctx.kv_cache_seq_rm(slot.seq_id, -1, -1)
                slot.tokens = []
                self._finish(slot, e)
            return
        for slot, take in added.items():
            slot.tokens.extend(take)
            slot.pending = slot.pending[len(take):]
            if slot.logits_index >= 0:
                self._sample(slot)
            elif not slot.pending and slot.request.is_prefill:
                self._finish(slot, END)

    def _sample(self, slot: _Slot) -> None:
        request = slot.request
        token = slot.sampler.sample(self._ctx, slot.logits_index)  # also accepts the token
        if llama_cpp.llama_vocab_is_eog(self._model.vocab, token):
            self._finish(slot, END)
            return
        slot.n_generated += 1
        request.moved_at = time.monotonic()
        if slot.n_generated == 1:
            request.first_token = token
            if request.penalties and request.penalties.banned_opening:  # only the first token
                slot.sampler.close()
                slot.sampler = make_sampler(request.temperature, replace(
                    request.penalties, banned_opening=(), history=(
                        *request.penalties.history, token)), n_vocab=self._model.n_vocab())
        piece = slot.decoder.decode(self._model.detokenize([token]))
        if piece:
            request.out.put(piece)
        is_full = len(slot.tokens) + 1 >= self.n_ctx_per_slot
        if slot.n_generated >= request.max_tokens or is_full:
            self._finish(slot, END)
        else:
            slot.pending = [token]

    def _finish(self, slot: _Slot, last: object) -> None:
        """End the slot's reply with `last` (END or an exception); the slot keeps its KV.

        A character cut in half by max_tokens stays in the decoder and is dropped, not spoken."""
        request = slot.request
        request.out.put(last)
        logger.debug("llama: slot {} done: {} tokens; evaluated {} of {} prompt tokens",
                     slot.seq_id, slot.n_generated, request.prompt_tokens_evaluated,
                     len(request.prompt))
        slot.request, slot.pending = None, []
        slot.sampler.close()
        slot.sampler = None
        slot.last_used = next(self._clock)


OPENING_TOKENS = 12  # a reply's first words: about the first piece the TTS speaks
OPENING_STRIDE = 3
PREFILL_STEP_TOKENS = 16  # ~0.2 s on 2 cores (a prompt token costs ~14 ms)
PACE_POLL_SECS = 0.05  # every reply is ahead of its playback: look again this often
SHIFT_PROBE_TOKENS = 16  # a dropped run counts only if this much of what follows it matches
STALL_WARN_SECS = 15.0  # a reply sits out at most a long sentence's worth ahead of playback


def _describe(request: Request, now: float) -> str:
    """A request in a stall warning: its kind, how long it has been still, its flags."""
    kind = "prefill" if request.is_prefill else "reply"
    flags = [name for name, on in (
        ("stopped", request.stop.is_set()), ("abandoned", request.is_abandoned),
        ("ahead", request.pace and request.pace.is_ahead()),
        ("running short", request.pace and request.pace.is_running_short())) if on]
    return f"{kind} still {now - request.moved_at:.1f} s" + (f" [{', '.join(flags)}]"
                                                             if flags else "")


def _work(order: list[_Slot]) -> Work:
    """How urgent a step is: a user waits on a prompt and a reply's first words; prefill is
    early reading; the rest of a reply is ahead of its playback."""
    if any(not s.request.is_prefill and s.is_opening for s in order):
        return Work.REPLY_OPENING
    if all(s.request.is_prefill for s in order):
        return Work.SPECULATIVE
    return Work.WRITING_AHEAD


def _dropped_run(cached: list[int], prompt: list[int], keep: int) -> int:
    """Length of a run of cached tokens right after the common prefix whose removal lines the
    cache up with the prompt again (the history window dropping old turns); 0 if none."""
    probe = prompt[keep: keep + SHIFT_PROBE_TOKENS]
    if len(probe) < SHIFT_PROBE_TOKENS:
        return 0
    for cut in range(1, len(cached) - keep - len(probe) + 1):
        if cached[keep + cut: keep + cut + len(probe)] == probe:
            return cut
    return 0
