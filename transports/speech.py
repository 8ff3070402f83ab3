"""Speech to text and text to speech as single requests, outside a conversation: what the
Wyoming server and the OpenAI-compatible /v1/audio endpoints serve, on the worker's shared
models, each request published on the bus as its connection's session."""

import asyncio
import time
from collections.abc import AsyncIterator

from voxline.bus import events
from voxline.models import ModelSet
from voxline.models.compute import Work
from voxline.models.whisper import WHISPER_SAMPLE_RATE, Segment
from voxline.pipeline.text_aggregation import FirstClauseAggregator
from voxline.pipeline.tts import next_chunk
from voxline.worker.host import ServedConnection

BYTES_PER_SAMPLE = 2  # 16-bit PCM throughout


class TextTooLong(ValueError):
    """More text than `tts.max_text_chars` in one request."""


class SpeechRequests:
    """One connection's requests: `transcribe` 16 kHz mono 16-bit PCM, `synthesize` text into
    the engine's PCM (at `sample_rate`)."""

    def __init__(self, models: ModelSet, served: ServedConnection, *, transport: str,
                 max_text_chars: int):
        self._models = models
        self._served = served
        self._transport = transport
        self._max_text_chars = max_text_chars

    @property
    def sample_rate(self) -> int:
        """Hz of what `synthesize` yields."""
        return self._models.tts.sample_rate

    async def transcribe(self, pcm16: bytes) -> str:
        """The whole clip's transcript (a user waits for it)."""
        started = time.monotonic()
        transcript = await self._models.stt.decode(pcm16, Work.USER_WAITING)
        if transcript.text:
            self._served.bus.publish(events.TranscriptFinal, text=transcript.text)
        self._served.bus.publish(
            events.SpeechServed, kind="stt", transport=self._transport,
            audio_secs=len(pcm16) / BYTES_PER_SAMPLE / WHISPER_SAMPLE_RATE,
            processing_secs=time.monotonic() - started)
        return transcript.text

    async def transcribe_so_far(self, pcm16: bytes) -> str | None:
        """A partial transcript of the audio so far, or None when the engine is busy (a partial
        never delays anyone's final transcript)."""
        if self._models.stt.is_busy:
            return None
        transcript = await self._models.stt.decode(pcm16, Work.SPECULATIVE)
        if transcript.text:
            self._served.bus.publish(events.TranscriptPartial, text=transcript.text)
        return transcript.text

    async def transcribe_file(self, pcm16: bytes, *,
                              prompt: str | None = None) -> AsyncIterator[Segment]:
        """A recording's segments as Whisper decodes them (the file's own decoding: see
        `WhisperEngine.decode_file`)."""
        started = time.monotonic()
        texts = []
        try:
            async for segment in self._models.stt.decode_file(pcm16, prompt=prompt):
                texts.append(segment.text)
                yield segment
        finally:
            if text := " ".join(t for t in texts if t):
                self._served.bus.publish(events.TranscriptFinal, text=text[:4000])
            self._served.bus.publish(
                events.SpeechServed, kind="stt", transport=self._transport,
                audio_secs=len(pcm16) / BYTES_PER_SAMPLE / WHISPER_SAMPLE_RATE,
                processing_secs=time.monotonic() - started)

    async def synthesize(self, text: str, *, speed: float = 1.0) -> AsyncIterator[bytes]:
        """`text` spoken (at `speed` times the voice's speed) piece by piece as the engine makes
        it, cut as the bot's replies are (`FirstClauseAggregator`: a short opening, then
        whole sentences), so the first audio comes after the first few words are synthesized,
        not the whole first sentence. Raises `TextTooLong` before any audio."""
        if len(text) > self._max_text_chars:
            raise TextTooLong(f"the text has {len(text)} characters; at most "
                              f"{self._max_text_chars} (tts.max_text_chars) are spoken at once")
        started = time.monotonic()
        first_audio_secs: float | None = None
        audio_bytes = 0
        loop = asyncio.get_running_loop()
        executor, work = self._models.tts_first_executor, Work.USER_WAITING
        try:
            async for piece in _pieces(text):
                chunks = self._models.tts.synthesize(piece, speed)
                while chunk := await loop.run_in_executor(executor, next_chunk, chunks, work):
                    if first_audio_secs is None:
                        first_audio_secs = time.monotonic() - started
                    executor, work = self._models.tts_executor, Work.PLAYBACK
                    audio_bytes += len(chunk)
                    yield chunk
        finally:
            if text.strip():
                self._served.bus.publish(events.BotSpoken, text=text.strip())
            self._served.bus.publish(
                events.SpeechServed, kind="tts", transport=self._transport,
                audio_secs=audio_bytes / BYTES_PER_SAMPLE / self.sample_rate,
                processing_secs=first_audio_secs if first_audio_secs is not None
                else time.monotonic() - started)


async def _pieces(text: str) -> AsyncIterator[str]:
    aggregator = FirstClauseAggregator()
    async for aggregation in aggregator.aggregate(text):
        yield aggregation.text
    if (rest := await aggregator.flush()) is not None and rest.text.strip():
        yield rest.text
