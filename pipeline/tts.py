"""Text to speech on a shared local engine (Piper or Kokoro), streamed per sentence."""

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from concurrent.futures import Executor

from loguru import logger
from pipecat.frames.frames import Frame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TTSService
from pipecat.utils.text.transforms.strip_markdown import strip_markdown

from voxline.models.compute import Urgency, Work, working_on
from voxline.models.loader import SpeechSynthesizer
from voxline.pipeline.playback_hold import MAX_HOLD_SECS, PlaybackHold
from voxline.pipeline.text_aggregation import FirstClauseAggregator

CHUNK_SECS = 0.04
# Less audio than this left to play before the reply's next sentence is needed: synthesizing it
# comes right after a waiting user's words (a gap in the bot's speech is heard like a wait, but
# this sentence still has some audio ahead of it, and a first piece has none).
SHORT_LEAD_SECS = 1.5
# Less than this: the listener is about to hear a gap. The text is cut at the next word rather
# than at the sentence's end, and synthesized before anything else, a waiting user's words
# included: ranked after them, gaps were still heard when four sessions' turns collided
# (docs/performance.md#four-long-replies-at-once).
GAP_IMMINENT_SECS = 0.5
JUDGED_POLL_SECS = 0.05  # how often a sentence waiting on a judgement checks the audio ahead


class LocalTTSService(TTSService):
    """Speaks each sentence the base class aggregates, as soon as the LLM finishes it.

    The engine's generator is advanced one chunk per hop to `executor`, so an interruption can
    stop synthesis between chunks. Audio is resampled by the base class to the transport's rate.
    """

    def __init__(self, *, engine: SpeechSynthesizer, executor: Executor,
                 first_executor: Executor | None = None, max_text_chars: int = 1000,
                 hold: PlaybackHold | None = None, **kwargs):
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            settings=TTSSettings(model=engine.name, voice=engine.name, language=None),
            # A small model sometimes answers in markdown anyway: bullets, ** and # are not
            # read out as symbols (pipecat's transform; list lines are already cut apart).
            text_transforms=[("*", strip_markdown)],
            **kwargs,
        )
        self._engine = engine
        self._executor = executor
        self._first_executor = first_executor or executor
        self._max_text_chars = max_text_chars
        self._hold = hold
        self._last_context_id: str | None = None  # the reply whose first piece was synthesized
        # When that reply's audio synthesized so far will have played (time.monotonic(), read
        # from the engine's threads too), if it plays as soon as it is ready: audio ready after
        # a gap starts when it is ready.
        self._audio_until = 0.0
        # Replace pipecat's sentence aggregator: a reply opens with clauses, and a sentence is
        # cut short when the audio ahead of it is about to run out.
        self._text_aggregator = FirstClauseAggregator(
            aggregation_type=self._text_aggregation_mode, language=self._text_aggregator.language,
            audio_lead=self.audio_lead_secs, cut_lead_secs=GAP_IMMINENT_SECS,
        )

    def audio_lead_secs(self) -> float:
        """Seconds of the current reply's synthesized audio not yet played. Pieces are
        synthesized one after another before the next is aggregated, so when the aggregator
        asks, every piece it gave is in this."""
        return max(0.0, self._audio_until - time.monotonic())

    def can_generate_metrics(self) -> bool:
        """Report TTFB like pipecat's own TTS services."""
        return True

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        """Synthesize one sentence and yield its audio frames. Text over `max_text_chars` (a
        sentence that never ends, a huge greeting) is cut at a word: synthesis time and memory
        grow with it, and one request must not hold the shared engine for long."""
        if len(text) > self._max_text_chars:
            kept = text[: self._max_text_chars].rsplit(" ", 1)[0] or text[: self._max_text_chars]
            logger.warning("{}: {} characters to speak, over the {} limit (tts.max_text_chars); "
                           "speaking the first {}", self, len(text), self._max_text_chars,
                           len(kept))
            text = kept
        await self.start_tts_usage_metrics(text)
        is_first_piece, self._last_context_id = context_id != self._last_context_id, context_id
        async for frame in self._stream_audio_frames_from_iterator(
            self._chunks(self._engine.synthesize(text), is_first_piece=is_first_piece),
            in_sample_rate=self._engine.sample_rate,
            context_id=context_id,
        ):
            await self.stop_ttfb_metrics()
            yield frame

    async def _chunks(self, chunks: Iterator[bytes], *,
                      is_first_piece: bool) -> AsyncIterator[bytes]:
        """Engine chunks (a whole sentence each), re-cut into ~40 ms pieces so frames stay small.
        The engine synthesizes each chunk in its turn on the CPU, as urgent as `_urgency`
        says: a reply's first one as a user waits for it (and on its own executor, ahead of
        other sessions' later sentences)."""
        loop = asyncio.get_running_loop()
        piece = int(self._engine.sample_rate * CHUNK_SECS) * 2
        executor = self._first_executor if is_first_piece else self._executor
        if is_first_piece:
            self._audio_until = 0.0
        while True:
            await self._wait_while_judged()
            chunk = await loop.run_in_executor(executor, next_chunk, chunks,
                                               self._urgency_of(is_first_piece))
            if chunk is None:
                return
            is_first_piece = False
            chunk_secs = len(chunk) / 2 / self._engine.sample_rate
            self._audio_until = max(self._audio_until, time.monotonic()) + chunk_secs
            executor = self._executor
            for offset in range(0, len(chunk), piece):
                yield chunk[offset: offset + piece]

    async def _wait_while_judged(self) -> None:
        """While speech over the bot is judged, and while its audio is held for it, the next
        sentence waits unless the audio playing is about to run out: the CPU goes to the
        decode that decides, whose words end the hold (docs/performance.md, "Judging speech
        over the bot"). The audio ahead does not play while held."""
        if self._hold is None:
            return
        give_up_at = time.monotonic() + MAX_HOLD_SECS
        while self._hold.is_deciding and time.monotonic() < give_up_at:
            is_held, since = self._hold.is_held, time.monotonic()
            if not is_held and self.audio_lead_secs() < GAP_IMMINENT_SECS:
                return
            await self._hold.wait_decided(JUDGED_POLL_SECS)
            if is_held and self._audio_until > since:
                self._audio_until += time.monotonic() - since

    def _urgency_of(self, is_first_piece: bool) -> Urgency:
        """A user waits for a reply's first words. The next ones are urgent as their audio is
        needed, asked again while they wait for the CPU (the audio ahead keeps playing): due
        within `GAP_IMMINENT_SECS`, a gap is about to be heard; within `SHORT_LEAD_SECS`,
        soon."""
        if is_first_piece:
            return Work.USER_WAITING

        def urgency() -> Work:
            lead = self.audio_lead_secs()
            if lead < GAP_IMMINENT_SECS:
                return Work.AUDIO_RUNNING_OUT
            return Work.RUNNING_DRY if lead < SHORT_LEAD_SECS else Work.PLAYBACK
        return urgency


def next_chunk(chunks: Iterator[bytes], work: Urgency) -> bytes | None:
    """The engine's next chunk, or None at its end: blocking, call it on a TTS executor.
    The engine takes the turn around its inference only: finding that the sentence had no
    more audio must not wait for a turn (the reply's next sentence waits on it)."""
    with working_on(work):
        return next(chunks, None)
