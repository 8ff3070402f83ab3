"""Frames ↔ WebSocket messages for docs/protocol.md: raw PCM both ways, JSON for the rest."""

import time
from collections.abc import Awaitable, Callable

from pipecat.audio.utils import create_stream_resampler
from pipecat.frames.frames import EndWorkerFrame, Frame, InputAudioRawFrame, OutputAudioRawFrame
from pipecat.serializers.base_serializer import FrameSerializer

from voxline.transports.protocol import ProtocolError, parse_text

PIPELINE_SAMPLE_RATE = 16000  # VAD and Whisper both want 16 kHz
MAX_BAD_MESSAGES = 50  # per session: a client past this is broken or hostile


class AudioBudget:
    """How much audio a client may have sent by now: `rate` × the seconds since it started,
    plus `burst_secs` (a network that bunches packets). A microphone sends 1× real time;
    more than the budget only fills the server's memory faster than the pipeline drains it."""

    def __init__(self, *, rate: float, burst_secs: float,
                 clock: Callable[[], float] = time.monotonic):
        self._rate, self._burst, self._clock = rate, burst_secs, clock
        self._available, self._at = burst_secs, clock()

    def spend(self, secs: float) -> bool:
        """Take `secs` of audio from the budget; False (nothing taken) if it would overdraw."""
        now = self._clock()
        self._available = min(self._burst, self._available + (now - self._at) * self._rate)
        self._at = now
        if secs > self._available:
            return False
        self._available -= secs
        return True


class PCMSerializer(FrameSerializer):
    """Client PCM (any supported rate) → 16 kHz input frames; bot audio → raw PCM bytes.

    Bad input is reported through `report_error` and dropped: the session goes on. A client
    that sends audio faster than `audio_budget` allows, or `MAX_BAD_MESSAGES` unusable
    messages, is given up on: `give_up(code, message)` tells it and closes the connection, and
    what it sends after that is ignored.
    """

    def __init__(
        self,
        *,
        client_sample_rate: int,
        max_frame_bytes: int,
        max_text_bytes: int,
        report_error: Callable[[str, str], None],
        audio_budget: AudioBudget,
        give_up: Callable[[str, str], Awaitable[None]],
    ):
        super().__init__()
        self._client_sample_rate = client_sample_rate
        self._max_frame_bytes = max_frame_bytes
        self._max_text_bytes = max_text_bytes
        self._report_error = report_error
        self._budget = audio_budget
        self._give_up = give_up
        self._bad_messages = 0
        self._gave_up = False
        self._resampler = create_stream_resampler()

    async def serialize(self, frame: Frame) -> str | bytes | None:
        """Bot audio as raw 16-bit PCM (the output transport has already resampled it)."""
        if isinstance(frame, OutputAudioRawFrame):
            return frame.audio
        return None

    async def deserialize(self, data: str | bytes) -> Frame | None:
        """One client message → a frame, or None (after reporting why) when unusable."""
        if self._gave_up:
            return None
        try:
            if isinstance(data, bytes):
                return await self._audio_frame(data)
            return self._control_frame(parse_text(data, max_bytes=self._max_text_bytes))
        except ProtocolError as e:
            self._bad_messages += 1
            if self._bad_messages < MAX_BAD_MESSAGES:
                self._report_error(e.code, e.message)
                return None
            await self._stop_listening("too_many_errors", f"{MAX_BAD_MESSAGES} unusable "
                                       f"messages (the last: {e.code}); closing")
            return None

    async def _stop_listening(self, code: str, message: str) -> None:
        self._gave_up = True
        await self._give_up(code, message)

    async def _audio_frame(self, pcm: bytes) -> InputAudioRawFrame | None:
        if not pcm:
            raise ProtocolError("empty_frame", "binary frame is empty; send 16-bit PCM samples")
        if len(pcm) > self._max_frame_bytes:
            raise ProtocolError(
                "frame_too_large",
                f"binary frame of {len(pcm)} bytes is over the {self._max_frame_bytes}-byte "
                f"limit; send audio in chunks of 20–100 ms",
            )
        if len(pcm) % 2:
            raise ProtocolError(
                "odd_length_pcm",
                f"binary frame of {len(pcm)} bytes is not whole 16-bit samples; "
                "audio must be 16-bit little-endian mono PCM",
            )
        if not self._budget.spend(len(pcm) / 2 / self._client_sample_rate):
            await self._stop_listening(
                "audio_too_fast", "audio arrives much faster than real time; send it as it is "
                "captured (20–100 ms chunks at their own pace); closing")
            return None
        if self._client_sample_rate != PIPELINE_SAMPLE_RATE:
            pcm = await self._resampler.resample(
                pcm, self._client_sample_rate, PIPELINE_SAMPLE_RATE
            )
        return InputAudioRawFrame(audio=pcm, sample_rate=PIPELINE_SAMPLE_RATE, num_channels=1)

    def _control_frame(self, message: dict) -> Frame | None:
        kind = message["type"]
        if kind == "stop":
            # Ask the worker to end: queued frames (the current reply) flush first, then close.
            return EndWorkerFrame(reason="client sent stop")
        if kind == "start":
            raise ProtocolError("already_started", "the session has already started; send audio, "
                                "or {\"type\": \"stop\"} to end it")
        raise ProtocolError(
            "unknown_type", f"unknown message type '{kind[:40]}'; expected 'stop' or binary audio"
        )
