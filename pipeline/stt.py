"""Streaming speech to text: interim transcripts while the user speaks, a final one at the end."""

import asyncio
from collections.abc import AsyncGenerator

from loguru import logger
from pipecat.frames.frames import (
    Frame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.settings import STTSettings
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.utils.time import time_now_iso8601

from voxline.models.whisper import WHISPER_SAMPLE_RATE, WhisperEngine


class StreamingWhisperSTTService(SegmentedSTTService):
    """faster-whisper on a shared model, with interim results.

    pipecat's segmented STT decodes once, after the VAD says the user stopped. This adds an interim
    decode of the audio so far every `interim_interval_secs` while the user speaks (skipped while
    a decode is still running, so a slow machine gets fewer interims, never a backlog). Decoding
    runs on the engine's own thread, never on the event loop.
    """

    def __init__(
        self, *, engine: WhisperEngine, language: str, interim_interval_secs: float = 0.7,
        **kwargs,
    ):
        super().__init__(
            sample_rate=WHISPER_SAMPLE_RATE,
            settings=STTSettings(model=engine.name, language=language),
            # Measured speech-end → final transcript on 2 cores (tiny.en), see docs/models.md.
            ttfs_p99_latency=1.0,
            # Whisper needs a little silence after the last word to finish it; the VAD window
            # already holds `stop_secs` of it, so a short pad is enough.
            trailing_silence_secs=0.2,
            **kwargs,
        )
        self._engine = engine
        self._interim_interval_secs = interim_interval_secs
        self._interim_task: asyncio.Task | None = None
        self._utterance = 0  # bumps at each VAD start, so a late interim is recognised and dropped

    @property
    def wants_wav_segments(self) -> bool:
        """The engine reads raw 16-bit PCM."""
        return False

    def can_generate_metrics(self) -> bool:
        """Report TTFB/processing metrics like pipecat's own STT services."""
        return True

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        """Start interims with the user's speech and stop them when it ends."""
        await super().process_frame(frame, direction)
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._utterance += 1
            await self._stop_interims()
            self._interim_task = self.create_task(self._interim_task_handler(self._utterance))
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            # Not on InterruptionFrame: the user starting to speak is what causes one.
            self._utterance += 1
            await self._stop_interims()

    async def cleanup(self):
        """Stop the interim and segment tasks with the service.

        The segment task is also cancelled here because a session cancelled while starting can
        see `cancel()` before `start()` created it (regression: it outlived the session).
        """
        await self._stop_interims()
        await self._cancel_segment_task()
        await super().cleanup()

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        """Final transcript of one utterance (called by the base class after VAD stop)."""
        await self.start_processing_metrics()
        transcript = await self._decode(audio)
        await self.stop_processing_metrics()
        if transcript:
            logger.debug("{}: final transcript {!r}", self, transcript)
            yield TranscriptionFrame(transcript, self._user_id, time_now_iso8601(), finalized=True)

    async def _decode(self, audio: bytes) -> str:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._engine.executor, self._engine.transcribe, audio)
        return result.text

    async def _interim_task_handler(self, utterance: int):
        last_size = 0
        while True:
            await asyncio.sleep(self._interim_interval_secs)
            audio = bytes(self._audio_buffer)
            if len(audio) <= last_size:
                continue
            last_size = len(audio)
            text = await self._decode(audio)
            if text and utterance == self._utterance:
                await self.push_frame(
                    InterimTranscriptionFrame(text, self._user_id, time_now_iso8601())
                )

    async def _stop_interims(self):
        if self._interim_task:
            await self.cancel_task(self._interim_task)
            self._interim_task = None
