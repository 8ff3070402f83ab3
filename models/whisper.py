"""faster-whisper speech recognition, loaded once per process and shared by all sessions."""

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from loguru import logger

from voxline.models.compute import ComputeArbiter, Work

# What Whisper says on silence or breath noise. Dropped only when the audio is near-silent or the
# model itself thinks there was no speech, so a user who really says "thank you" is still heard.
SILENCE_HALLUCINATIONS = frozenset(
    {"you", "thank you", "thanks", "thank you very much", "thanks for watching", "bye", "so"}
)
NEAR_SILENCE_RMS = 0.01  # of full scale
NO_SPEECH_PROB = 0.6
WHISPER_SAMPLE_RATE = 16000
FRAMES_PER_SEC = 100  # Whisper's log-mel frames
FULL_WINDOW_SECS = 30
WINDOW_MARGIN_SECS = 3.0  # encoded past the clip's end: less hallucinates on what it cannot see
# A segment's text tokens stop this short of `max_new_tokens` (the bound also counts the
# decoder's start tokens): at least this many means the decoder was cut, not finished.
BOUND_SLACK_TOKENS = 4


@dataclass(frozen=True)
class Segment:
    """A stretch of a file's transcript, seconds from the file's start."""

    start: float
    end: float
    text: str
    tokens: tuple[int, ...] = ()
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0
    temperature: float = 0.0


@dataclass(frozen=True)
class Transcript:
    """One decoding result: the text and what it took to get it."""

    text: str
    audio_secs: float
    decode_secs: float
    is_quick: bool = False  # decoded with a window shorter than the engine's (it may loop)


def is_silence_hallucination(text: str, rms: float, no_speech_prob: float) -> bool:
    """True when `text` is one of Whisper's phrases for silence and the audio agrees."""
    normalised = re.sub(r"[^a-z ]", "", text.lower()).strip()
    if not normalised:
        return True
    return normalised in SILENCE_HALLUCINATIONS and (
        rms < NEAR_SILENCE_RMS or no_speech_prob > NO_SPEECH_PROB
    )


def encoder_frames(audio_secs: float, min_window_secs: float) -> int:
    """How much of Whisper's 30 s window to encode for a clip: the clip plus a margin, at least
    `min_window_secs`. faster-whisper always encodes the full window (a short clip padded with
    silence), which is most of a decode's time; CTranslate2's encoder takes shorter input, and
    cost grows with its length: a 10 s minimum decodes ~3× faster than 30 s at a lower word
    error rate; below ~7 s words are lost (docs/performance.md#whisper-encoder-window)."""
    wanted = max(min_window_secs, audio_secs + WINDOW_MARGIN_SECS)
    return int(min(FULL_WINDOW_SECS, wanted) * FRAMES_PER_SEC)


def without_repetition_loop(text: str) -> str:
    """`text` with a trailing run of one phrase (1–4 words, three times or more) cut to one:
    what greedy decoding writes when it loops ("… Paris Paris Paris Paris"). Call it only when
    the decoder stopped at its token bound, so that a user who says "no, no, no" is kept."""
    words = text.strip().split()
    for size in range(1, 5):
        phrase = [_bare(w) for w in words[-size:]]
        repeats = 1
        while (len(words) >= (repeats + 1) * size and
               [_bare(w) for w in words[-(repeats + 1) * size:-repeats * size]] == phrase):
            repeats += 1
        if repeats >= 3:
            return " ".join(words[: len(words) - (repeats - 1) * size])
    return text


def repeats_itself(text: str) -> bool:
    """Whether `text` ends in a loop `without_repetition_loop` would cut."""
    return without_repetition_loop(text) != text.strip()


def _bare(word: str) -> str:
    return re.sub(r"[^a-z0-9']", "", word.lower())


def max_new_tokens(audio_secs: float) -> int:
    """A bound on one window's tokens (speech is under ~5 tokens/s): a decoder caught in a
    repetition loop stops there instead of at Whisper's 448."""
    return int(12 + 5 * min(audio_secs, FULL_WINDOW_SECS))


class WhisperEngine:
    """A shared faster-whisper model plus the one thread that runs it.

    One worker thread: CTranslate2 already uses `cpu_threads` cores per call, and a second call in
    parallel on a 2-core machine would only make both slower.
    """

    def __init__(self, *, model_dir: Path, cpu_threads: int, beam_size: int, language: str,
                 min_window_secs: float = FULL_WINDOW_SECS, compute: ComputeArbiter | None = None):
        from faster_whisper import WhisperModel  # heavy import, only when loading

        class WindowedWhisperModel(WhisperModel):
            """Encodes the first `window_frames` of each (padded) 30 s window only."""

            window_frames = FULL_WINDOW_SECS * FRAMES_PER_SEC

            def encode(self, features):
                return super().encode(features[..., : self.window_frames])

        self.name = f"faster-whisper:{Path(model_dir).name}"
        self._model = WindowedWhisperModel(
            str(model_dir), device="cpu", compute_type="int8", cpu_threads=cpu_threads
        )
        self._min_window_secs = min_window_secs
        self._beam_size = beam_size
        self._language = language
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voxline-stt")
        self._compute = compute or ComputeArbiter()  # alone: never waits
        self._queued = 0  # decodes submitted by `decode` and not finished, all sessions
        self._queued_lock = threading.Lock()

    @property
    def is_busy(self) -> bool:
        """A decode is running or waiting: an optional one (an interim) would delay it."""
        return self._queued > 0

    def decode(self, pcm16: bytes, work: Work = Work.USER_WAITING, *,
               min_window_secs: float | None = None) -> "asyncio.Future[Transcript]":
        """`transcribe` on the engine's thread, in its turn on the CPU, from the event loop;
        awaitable (shieldable)."""
        with self._queued_lock:
            self._queued += 1
        future = asyncio.get_running_loop().run_in_executor(
            self.executor, self._transcribe_in_turn, pcm16, work, min_window_secs
        )
        future.add_done_callback(self._decoded)
        return future

    def _transcribe_in_turn(self, pcm16: bytes, work: Work,
                            min_window_secs: float | None) -> Transcript:
        with self._compute.turn(work):
            return self.transcribe(pcm16, min_window_secs=min_window_secs)

    def _decoded(self, _future) -> None:
        with self._queued_lock:
            self._queued -= 1

    def transcribe(self, pcm16: bytes, *, min_window_secs: float | None = None) -> Transcript:
        """Decode 16 kHz 16-bit mono PCM. Blocking: call it on `self.executor`.
        `min_window_secs` overrides the engine's shortest window for this decode."""
        import time

        started = time.perf_counter()
        audio = np.frombuffer(pcm16, dtype=np.int16).astype(np.float32) / 32768.0
        if audio.size == 0:
            return Transcript("", 0.0, 0.0)
        is_quick = min_window_secs is not None and min_window_secs < self._min_window_secs
        rms = float(np.sqrt(np.mean(audio**2)))
        audio_secs = audio.size / WHISPER_SAMPLE_RATE
        token_bound = max_new_tokens(audio_secs)
        self._model.window_frames = encoder_frames(
            audio_secs, min_window_secs or self._min_window_secs)
        segments, _ = self._model.transcribe(
            audio,
            language=self._language,
            beam_size=self._beam_size,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
            max_new_tokens=token_bound,
            # No fallback to sampling at higher temperatures: on hard audio (noise, a voice
            # over the echo) it decoded up to six times, 1.5 s instead of 0.25 s, for no
            # better words (docs/performance.md).
            temperature=0.0,
        )
        # The generator is lazy: the decoding happens here, in this worker thread.
        kept = [
            without_repetition_loop(s.text) if len(s.tokens) >= token_bound - BOUND_SLACK_TOKENS
            else s.text.strip()
            for s in segments
            if not is_silence_hallucination(s.text, rms, s.no_speech_prob)
        ]
        text = " ".join(t for t in kept if t)
        elapsed = time.perf_counter() - started
        logger.trace("whisper: {:.2f}s audio in {:.3f}s -> {!r}", audio_secs, elapsed, text)
        return Transcript(text, audio_secs, elapsed, is_quick)

    async def decode_file(self, pcm16: bytes, *, prompt: str | None = None,
                          work: Work = Work.USER_WAITING) -> AsyncIterator[Segment]:
        """A whole recording's segments as they are decoded, from the event loop: Whisper's own
        file decoding (30 s windows, beam search, timestamps, `prompt` as the initial prompt),
        as faster-whisper does with its defaults, with the silence phrases dropped."""
        loop = asyncio.get_running_loop()
        segments = self._segments(pcm16, prompt)
        with self._queued_lock:
            self._queued += 1
        try:
            while (segment := await loop.run_in_executor(
                    self.executor, self._next_in_turn, segments, work)) is not None:
                yield segment
        finally:
            with self._queued_lock:
                self._queued -= 1

    def _segments(self, pcm16: bytes, prompt: str | None) -> Iterator[Segment]:
        audio = np.frombuffer(pcm16, dtype=np.int16).astype(np.float32) / 32768.0
        if audio.size == 0:
            return
        rms = float(np.sqrt(np.mean(audio**2)))
        self._model.window_frames = FULL_WINDOW_SECS * FRAMES_PER_SEC
        segments, _ = self._model.transcribe(audio, language=self._language,
                                             initial_prompt=prompt or None, vad_filter=False)
        for s in segments:
            if not is_silence_hallucination(s.text, rms, s.no_speech_prob):
                yield Segment(round(s.start, 2), round(s.end, 2), s.text.strip(),
                              tokens=tuple(s.tokens), avg_logprob=s.avg_logprob,
                              compression_ratio=s.compression_ratio,
                              no_speech_prob=s.no_speech_prob, temperature=s.temperature or 0.0)

    def _next_in_turn(self, segments: Iterator[Segment], work: Work) -> Segment | None:
        # The window length is the engine's, set per decode: a file's decode and a session's
        # short ones take turns on this one thread, so set it again for each step.
        self._model.window_frames = FULL_WINDOW_SECS * FRAMES_PER_SEC
        with self._compute.turn(work):
            return next(segments, None)

    def warm_up(self) -> None:
        """First call pays one-off allocation costs; pay them at start-up instead."""
        rng = np.random.default_rng(0)
        noise = (rng.standard_normal(WHISPER_SAMPLE_RATE) * 300).astype(np.int16)
        self.transcribe(noise.tobytes())

    def close(self) -> None:
        """Stop the worker thread (at process exit)."""
        self.executor.shutdown(wait=False, cancel_futures=True)
