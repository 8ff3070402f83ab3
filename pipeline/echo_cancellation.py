"""Acoustic echo cancellation on the server: the bot's own voice, played by a client's
loudspeaker and picked up again by its microphone, is taken out of the user's audio before the
VAD hears it.

The canceller is the WebRTC audio-processing module (AEC3, with its delay estimator: the
client's playback delay is unknown), as LiveKit's Python SDK ships it prebuilt. Its reference is
what the output transport actually sent, in the order sent, one 10 ms frame of it per 10 ms of
microphone audio: the two streams share the client's clock, not the server's.
"""

from collections import deque

import numpy as np
from livekit import rtc
from loguru import logger
from pipecat.audio.utils import create_stream_resampler
from pipecat.frames.frames import Frame, InputAudioRawFrame, OutputAudioRawFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from voxline.pipeline.frames import EchoFoundFrame

FRAME_SECS = 0.01  # the module works on 10 ms frames only
# Whether the client's microphone hears its loudspeaker at all is found out by cross-correlating
# the last second of what it captured with what was played (phase transform: an echo, a filtered
# copy of the bot's audio, gives one sharp peak at its delay; a voice does not, however it rises
# and falls with the bot's), at delays up to `MAX_ECHO_DELAY_SECS`.
ECHO_WINDOW_FRAMES = 100
MAX_ECHO_DELAY_SECS = 0.5
ECHO_CHECK_EVERY_FRAMES = 10  # 0.1 s: a check costs ~2.5 ms of CPU
MIN_BOT_FRAMES = 25  # of bot audio in the window before deciding
BOT_AUDIO_LOUDNESS = 2.0  # log10 energy of a 10 ms frame that counts as bot audio (~-70 dBFS)
# The peak over the correlation's standard deviation. Echoes measured 48-160 (-6 to -30 dB),
# voices over the bot up to 28 (docs/performance.md).
ECHO_PEAK = 40.0
# The peak must come back at the same delay on the next check: a chance match does not.
SAME_DELAY_SAMPLES = 16
# More queued than this, the microphone has stalled (a network hiccup): drop the oldest, so
# that the delay the canceller has to find stays within its reach.
MAX_QUEUED_SECS = 0.4


class EchoCanceller:
    """One session's echo canceller, 16-bit mono PCM.

    `microphone()` goes right after the transport's input, `loudspeaker()` right after its
    output; both share this state. Lives as long as the session's pipeline.
    """

    def __init__(self, *, sample_rate: int = 16000):
        self.sample_rate = sample_rate
        self._frame_bytes = int(sample_rate * FRAME_SECS) * 2
        self._apm = rtc.AudioProcessingModule(echo_cancellation=True, high_pass_filter=True)
        self._reference: deque[bytes] = deque()  # 10 ms frames the client has been sent
        self._leftover = b""  # microphone audio short of a whole frame
        self._silence = bytes(self._frame_bytes)
        self._resampler = create_stream_resampler()
        self._echo = EchoDetector(sample_rate=sample_rate)

    @property
    def is_echo_heard(self) -> bool:
        """The client's microphone has been found to hear its loudspeaker."""
        return self._echo.is_echo_heard

    def microphone(self) -> "EchoCancellingProcessor":
        """The processor that cleans the user's audio."""
        return EchoCancellingProcessor(canceller=self)

    def loudspeaker(self) -> "PlayedAudioProcessor":
        """The processor that tells the canceller what the client was sent to play."""
        return PlayedAudioProcessor(canceller=self)

    async def played(self, audio: bytes, sample_rate: int) -> None:
        """Queue bot audio that was just sent to the client, as the echo's reference."""
        if sample_rate != self.sample_rate:
            audio = await self._resampler.resample(audio, sample_rate, self.sample_rate)
        pending = self._reference[-1] if self._reference and len(
            self._reference[-1]) < self._frame_bytes else b""
        if pending:
            self._reference.pop()
        audio = pending + audio
        for offset in range(0, len(audio), self._frame_bytes):
            self._reference.append(audio[offset: offset + self._frame_bytes])
        max_frames = int(MAX_QUEUED_SECS / FRAME_SECS)
        while len(self._reference) > max_frames:
            self._reference.popleft()

    def clean(self, audio: bytes) -> bytes:
        """The microphone audio with the echo taken out. Whole 10 ms frames only: a remainder
        waits for the next call (so the output may be up to 10 ms shorter or longer)."""
        audio = self._leftover + audio
        whole = len(audio) - len(audio) % self._frame_bytes
        self._leftover = audio[whole:]
        cleaned = bytearray()
        for offset in range(0, whole, self._frame_bytes):
            reference = self._next_reference()
            microphone = audio[offset: offset + self._frame_bytes]
            self._apm.process_reverse_stream(self._audio_frame(reference))
            frame = self._audio_frame(microphone)
            self._apm.process_stream(frame)
            # Until the microphone is found to hear the loudspeaker, its audio passes as it
            # is: with no echo to take out, AEC3 takes the user's first words over the bot
            # for echo (docs/performance.md). The module still runs, so it is ready.
            if self._echo.hears_echo(reference, microphone):
                cleaned += frame.data.cast("B")
            else:
                cleaned += microphone
        return bytes(cleaned)

    def _next_reference(self) -> bytes:
        """The reference for the next 10 ms of microphone audio: the oldest sent audio not yet
        used, or silence while the bot is quiet. Audio is always sent before its echo is
        captured, so the reference never lags the echo; when the microphone runs it dry between
        two bursts (a 40 ms chunk per write), the silence put in delays the rest a little, and
        the queue keeps that much in hand from then on."""
        if not self._reference:
            return self._silence
        return self._reference.popleft().ljust(self._frame_bytes, b"\0")

    def _audio_frame(self, pcm: bytes) -> rtc.AudioFrame:
        samples = len(pcm) // 2
        return rtc.AudioFrame(bytearray(pcm), self.sample_rate, 1, samples)


class EchoDetector:
    """Says whether a microphone hears the loudspeaker: once what it captures holds a copy of
    what was played (at one delay up to `MAX_ECHO_DELAY_SECS`, on two checks in a row), it
    does, for the rest of the session. A user talking over the bot is no copy of it."""

    def __init__(self, *, sample_rate: int = 16000):
        self._played: deque[bytes] = deque(maxlen=ECHO_WINDOW_FRAMES)
        self._heard: deque[bytes] = deque(maxlen=ECHO_WINDOW_FRAMES)
        self._bot_frames: deque[bool] = deque(maxlen=ECHO_WINDOW_FRAMES)
        self._sample_rate = sample_rate
        self._max_delay = int(MAX_ECHO_DELAY_SECS * sample_rate)
        self._frames = 0
        self._last_delay: int | None = None  # where the last check found a peak
        self.is_echo_heard = False

    def hears_echo(self, reference: bytes, microphone: bytes) -> bool:
        """Take one 10 ms frame of each; whether the echo has been heard so far."""
        if self.is_echo_heard:
            return True
        self._played.append(reference)
        self._heard.append(microphone)
        self._bot_frames.append(_loudness(reference) > BOT_AUDIO_LOUDNESS)
        self._frames += 1
        if self._frames % ECHO_CHECK_EVERY_FRAMES == 0:
            delay = self._echo_delay() if sum(self._bot_frames) >= MIN_BOT_FRAMES else None
            self.is_echo_heard = (delay is not None and self._last_delay is not None
                                  and abs(delay - self._last_delay) <= SAME_DELAY_SAMPLES)
            self._last_delay = delay
            if self.is_echo_heard:
                logger.debug("The client's microphone hears its loudspeaker ({:.0f} ms late): "
                             "cancelling echo", delay / self._sample_rate * 1000)
        return self.is_echo_heard

    def _echo_delay(self) -> int | None:
        """The delay (samples) at which the microphone holds a copy of the played audio, if
        it does."""
        played = np.frombuffer(b"".join(self._played), np.int16).astype(np.float64)
        heard = np.frombuffer(b"".join(self._heard), np.int16).astype(np.float64)
        size = 1 << (len(played) + len(heard)).bit_length()
        spectrum = np.fft.rfft(heard, size) * np.conj(np.fft.rfft(played, size))
        spectrum /= np.abs(spectrum) + 1e-9
        correlation = np.fft.irfft(spectrum, size)
        later = np.abs(correlation[: self._max_delay + 1])  # the echo comes after the sound
        delay = int(np.argmax(later))
        spread = float(np.std(correlation))
        return delay if spread > 0 and later[delay] / spread >= ECHO_PEAK else None


def _loudness(pcm: bytes) -> float:
    """log10 of a frame's energy (1 for digital silence... 9.6 for full scale)."""
    samples = np.frombuffer(pcm, np.int16).astype(np.float32)
    return float(np.log10(np.mean(samples * samples) + 10.0))


class EchoCancellingProcessor(FrameProcessor):
    """Replaces each microphone frame's audio with the canceller's output, and says when
    the echo is found (`EchoFoundFrame`, once)."""

    def __init__(self, *, canceller: EchoCanceller, **kwargs):
        super().__init__(**kwargs)
        self._canceller = canceller
        self._is_echo_announced = False

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        """Clean input audio at the canceller's rate; pass everything else on."""
        await super().process_frame(frame, direction)
        if (isinstance(frame, InputAudioRawFrame) and frame.num_channels == 1
                and frame.sample_rate == self._canceller.sample_rate):
            cleaned = self._canceller.clean(frame.audio)
            if not cleaned:
                return  # less than 10 ms so far: it goes out with the next frame
            frame.audio = cleaned
            frame.num_frames = len(cleaned) // 2
            if self._canceller.is_echo_heard and not self._is_echo_announced:
                self._is_echo_announced = True
                await self.push_frame(EchoFoundFrame(), direction)
        await self.push_frame(frame, direction)


class PlayedAudioProcessor(FrameProcessor):
    """Feeds the bot audio the output transport has sent (it pushes each written frame on)
    to the canceller as its reference."""

    def __init__(self, *, canceller: EchoCanceller, **kwargs):
        super().__init__(**kwargs)
        self._canceller = canceller

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        """Pass every frame on; remember written bot audio."""
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, OutputAudioRawFrame) and direction == FrameDirection.DOWNSTREAM:
            await self._canceller.played(frame.audio, frame.sample_rate)
