"""Streaming speech to text: interim transcripts while the user speaks, a final one at the end."""

import asyncio
from collections.abc import AsyncGenerator

from loguru import logger
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
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

from voxline.models.compute import Work
from voxline.models.smart_turn import SmartTurnModel
from voxline.models.whisper import (
    WHISPER_SAMPLE_RATE,
    Transcript,
    WhisperEngine,
    repeats_itself,
    without_repetition_loop,
)
from voxline.pipeline.frames import EchoFoundFrame, NoWordsFrame
from voxline.pipeline.turn_end import VoiceVerdict, sounds_finished, sounds_unfinished
from voxline.pipeline.vad import UserSpeechPausedFrame, UserSpeechResumedFrame

INTERIM_POLL_SECS = 0.05
# Speech that began over the bot and pauses soon is judged on its words (a backchannel or an
# interruption) while the bot is paused: decoded with a shorter window, faster, with the same
# words on short clips (docs/performance.md, "Judging speech over the bot").
OVER_THE_BOT_WINDOW_SECS = 5.0
# Audio held at such a pause: pipecat keeps up to 1 s from before the speech was detected,
# then a backchannel's 1.2 s at most.
OVER_THE_BOT_QUICK_SECS = 2.5


class StreamingWhisperSTTService(SegmentedSTTService):
    """faster-whisper on a shared model, with interim results.

    pipecat's segmented STT decodes once, after the VAD says the user stopped. This adds an interim
    decode of the audio so far every `interim_interval_secs` while the user speaks (skipped while
    a decode is still running, so a slow machine gets fewer interims, never a backlog), and a
    speculative final: when the user pauses (`UserSpeechPausedFrame`), the speech so far is
    decoded at once, during the VAD's silence window; if the window closes without new speech,
    that decode is the final transcript. Decoding runs on the engine's own thread, never on the
    event loop.
    """

    def __init__(
        self, *, engine: WhisperEngine, language: str, interim_interval_secs: float = 1.0,
        turn_model: SmartTurnModel | None = None, **kwargs,
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
        self._turn_model = turn_model
        self._interim_interval_secs = interim_interval_secs
        self._interim_task: asyncio.Task | None = None
        # The decode started at the user's latest pause; void once they speak again.
        self._speculative: asyncio.Future[Transcript] | None = None
        self._speculative_final: asyncio.Future[Transcript] | None = None
        # A pause's decode not yet shown as an interim: it serves as the next one.
        self._unreported_pause: tuple[asyncio.Future[Transcript], int] | None = None
        self._is_speaking = False
        self._is_bot_speaking = False
        self._is_over_the_bot = False  # this speech began while the bot was talking
        self._finals = 0  # final transcripts pushed: an interim started before one is stale

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
        if isinstance(frame, (BotStartedSpeakingFrame, BotStoppedSpeakingFrame)):
            self._is_bot_speaking = isinstance(frame, BotStartedSpeakingFrame)
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            await self._stop_interims()
            self._unreported_pause = None  # the last utterance's: never this one's partial
            self._is_speaking = True
            self._is_over_the_bot = self._is_bot_speaking
            self._interim_task = self.create_task(self._interim_task_handler())
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            # The interim task finishes the decode it may have in flight (its partial still
            # comes before the final), then ends. Not on InterruptionFrame: the user starting
            # to speak is what causes one.
            self._is_speaking = False
        elif isinstance(frame, UserSpeechPausedFrame) and self._is_speaking:
            # Padded like the final segment: Whisper needs some silence after the last word.
            self._speculative = self._engine.decode(
                bytes(self._audio_buffer) + self._trailing_silence(),
                min_window_secs=self._pause_window_secs())
            self._unreported_pause = (self._speculative, len(self._audio_buffer))
        elif isinstance(frame, UserSpeechResumedFrame):
            self._speculative = None
        elif isinstance(frame, EchoFoundFrame):
            await self._forget_audio_so_far()

    def _pause_window_secs(self) -> float | None:
        """A short window for the pause of short speech over the bot (its verdict keeps the
        bot paused); the engine's own for everything else."""
        is_short = len(self._audio_buffer) <= OVER_THE_BOT_QUICK_SECS * self.sample_rate * 2
        return OVER_THE_BOT_WINDOW_SECS if self._is_over_the_bot and is_short else None

    async def _forget_audio_so_far(self):
        """The audio heard until the echo canceller started holds the bot's own voice: what
        follows is transcribed without it (its words would pass for the user's)."""
        self._audio_buffer.clear()
        self._speculative = self._unreported_pause = None
        if self._is_speaking:
            await self._stop_interims()
            self._interim_task = self.create_task(self._interim_task_handler())

    async def cleanup(self):
        """Stop the interim and segment tasks with the service.

        The segment task is also cancelled here because a session cancelled while starting can
        see `cancel()` before `start()` created it (regression: it outlived the session).
        """
        await self._stop_interims()
        await self._cancel_segment_task()
        await super().cleanup()

    async def _handle_user_stopped_speaking(self, frame: VADUserStoppedSpeakingFrame):
        # No speech since the pause began (it would have voided the guess): reuse its decode.
        self._speculative_final, self._speculative = self._speculative, None
        await super()._handle_user_stopped_speaking(frame)

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame, None]:
        """Final transcript of one utterance (called by the base class after VAD stop)."""
        await self.start_processing_metrics()
        speculative, self._speculative_final = self._speculative_final, None
        result, source = None, "decoded after the stop"
        if speculative is not None:
            result, source = await speculative, "decoded at the pause"
            if result.is_quick and repeats_itself(result.text):
                # A short window can loop ("wait wait wait"): its words, once, go out now (speech
                # over the bot is judged on them); the words the LLM reads are decoded with the
                # engine's window.
                yield InterimTranscriptionFrame(without_repetition_loop(result.text),
                                                self._user_id, time_now_iso8601())
                # Most often a backchannel, which no one reads: the bot's next sentence, if it
                # is needed soon, goes first (after an interruption nothing competes).
                result = await self._engine.decode(audio, Work.PLAYBACK)
                source = "decoded again: the pause's short window looped"
        if result is None:
            result = await self._engine.decode(audio)
        transcript = result.text
        await self.stop_processing_metrics()
        self._finals += 1  # interims of this utterance arriving later are stale
        if transcript:
            logger.debug("{}: final transcript {!r} ({})", self, transcript, source)
            if self._needs_voice_verdict(transcript):
                # The words go out now, the verdict (~80-170 ms) with the final: speech over
                # the bot is judged on its words, and "Wait" must not wait for smart-turn.
                yield InterimTranscriptionFrame(transcript, self._user_id, time_now_iso8601())
            yield TranscriptionFrame(transcript, self._user_id, time_now_iso8601(), finalized=True,
                                     result=await self._voice_verdict(transcript, audio))
        else:
            yield NoWordsFrame()

    async def _voice_verdict(self, transcript: str, audio: bytes) -> VoiceVerdict | None:
        """Smart-turn's verdict on the utterance, only where its words cannot tell whether the
        user has finished (pipeline/turn_end.py): ~80 ms, so not for every turn."""
        if not self._needs_voice_verdict(transcript):
            return None
        is_complete, probability = await asyncio.to_thread(self._turn_model.is_complete, audio)
        logger.debug("{}: smart-turn on {!r}: {} ({:.2f})", self, transcript,
                     "complete" if is_complete else "incomplete", probability)
        return VoiceVerdict(is_complete, probability)

    def _needs_voice_verdict(self, transcript: str) -> bool:
        return bool(self._turn_model) and not (sounds_finished(transcript)
                                               or sounds_unfinished(transcript))

    async def _interim_task_handler(self):
        """Every interval: the latest pause's decode if there was one (free: it ran anyway),
        else a decode of the speech so far, unless the engine (shared by all sessions) is busy:
        it has one thread, and an interim must not delay anyone's pause decode or final
        transcript. Pauses make most partials."""
        last_size, finals = 0, self._finals
        while self._is_speaking:
            await self._interim_due()
            if not self._is_speaking:
                return
            at_pause = self._unreported_pause is not None
            if self._unreported_pause:
                (decoded, last_size), self._unreported_pause = self._unreported_pause, None
            else:
                audio = bytes(self._audio_buffer)
                if (len(audio) <= last_size or self._speculative is not None
                        or self._engine.is_busy):
                    continue  # nothing new; paused: that decode is already running; busy
                last_size = len(audio)
                decoded = self._engine.decode(audio, Work.SPECULATIVE)
            # Shielded: a pause's decode may also be the final transcript; cancelling this
            # task (the next utterance starting) must not cancel it.
            result = await asyncio.shield(decoded)
            text = without_repetition_loop(result.text) if result.is_quick else result.text
            if finals != self._finals:
                continue
            if text:
                await self.push_frame(
                    InterimTranscriptionFrame(text, self._user_id, time_now_iso8601())
                )
            elif at_pause:  # all the speech so far, and no words in it
                await self.push_frame(NoWordsFrame())

    async def _interim_due(self) -> None:
        """One interval, or less once a pause's decode is ready (shown, and read by the LLM,
        while the user may still go on)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._interim_interval_secs
        while loop.time() < deadline:
            if self._unreported_pause and self._unreported_pause[0].done():
                return
            await asyncio.sleep(INTERIM_POLL_SECS)

    async def _stop_interims(self):
        if self._interim_task:
            await self.cancel_task(self._interim_task)
            self._interim_task = None
