"""Audio on the fake's side: speech in for members to send, the bot's speech out.

Discord audio is Opus at 48 kHz stereo in 20 ms frames (960 samples a channel,
3840 bytes of int16). Members' speech is resampled to that with soxr; the bot's
packets are decoded back to it with discord.py's own libopus binding.
"""

import asyncio
import time

import numpy as np
import soxr
from discord.opus import Decoder, OpusError
from loguru import logger

from .rtp import OPUS_SILENCE

SAMPLE_RATE = 48000
CHANNELS = 2
FRAME_SECS = 0.02
FRAME_SAMPLES = 960
FRAME_BYTES = FRAME_SAMPLES * CHANNELS * 2
# Peak below this (int16) counts as silence: Opus leaves a small hiss after real speech.
SILENCE_PEAK = 64


def to_discord_frames(pcm: bytes | np.ndarray, sample_rate: int) -> list[bytes]:
    """int16 mono PCM at sample_rate → 48 kHz stereo 20 ms frames (the last zero-padded)."""
    samples = np.frombuffer(pcm, dtype=np.int16) if isinstance(pcm, bytes | bytearray) \
        else np.asarray(pcm)
    if samples.ndim != 1:
        raise ValueError(f"speech must be mono (1-D), got shape {samples.shape}")
    if samples.dtype != np.int16:
        raise ValueError(f"speech must be int16 samples, got {samples.dtype}")
    mono = samples.astype(np.float32) / 32768
    if sample_rate != SAMPLE_RATE:
        mono = soxr.resample(mono, sample_rate, SAMPLE_RATE)
    pcm48 = (np.clip(mono, -1, 1) * 32767).astype(np.int16)
    pad = -len(pcm48) % FRAME_SAMPLES
    stereo = np.repeat(np.concatenate([pcm48, np.zeros(pad, np.int16)]), CHANNELS)
    data = stereo.tobytes()
    return [data[i:i + FRAME_BYTES] for i in range(0, len(data), FRAME_BYTES)]


def is_voiced(frame: bytes) -> bool:
    return bool(frame) and int(np.abs(np.frombuffer(frame, np.int16)).max()) >= SILENCE_PEAK


class BotAudio:
    """Collects the bot's decoded speech; `collect()` hands it out once a turn has ended."""

    def __init__(self) -> None:
        self._arrived = asyncio.Event()
        self._decoder: Decoder | None = None
        self._buffer = bytearray()
        self._voiced_frames = 0
        self._last_voiced_at = 0.0
        self.packet_count = 0
        self.dave_frame_count = 0  # frames that were end-to-end encrypted
        self.plain_frame_count = 0  # non-silence frames that were not
        self.undecryptable_count = 0  # DAVE frames no fake member's session could open
        self.undecodable_count = 0  # frames libopus rejected
        self.opus_bytes = 0  # of the non-silence frames (DAVE removed): the bitrate

    def on_frame(self, frame: bytes, *, was_encrypted: bool) -> None:
        """One Opus frame from the bot (DAVE already removed)."""
        self.packet_count += 1
        if frame == OPUS_SILENCE:
            pcm = bytes(FRAME_BYTES)
        else:
            self.opus_bytes += len(frame)
            if was_encrypted:
                self.dave_frame_count += 1
            else:
                self.plain_frame_count += 1
            if self._decoder is None:
                self._decoder = Decoder()
            try:
                pcm = self._decoder.decode(frame, fec=False)
            except OpusError as e:
                self.undecodable_count += 1
                logger.warning("fake Discord: the bot sent a frame libopus rejects: {}", e)
                return
        self._buffer += pcm
        if is_voiced(pcm):
            self._voiced_frames += 1
            self._last_voiced_at = time.monotonic()
        self._arrived.set()

    async def collect(self, *, min_secs: float, silence_secs: float, timeout_secs: float) -> bytes:
        """Waits for ≥ min_secs of voiced audio then silence_secs without any; returns it all.

        Returns everything received since the previous collect (48 kHz stereo int16).
        """
        deadline = time.monotonic() + timeout_secs

        def voiced_secs() -> float:
            return self._voiced_frames * FRAME_SECS

        while True:
            now = time.monotonic()
            quiet_secs = now - self._last_voiced_at
            if voiced_secs() >= min_secs and quiet_secs >= silence_secs:
                break
            if now >= deadline:
                raise TimeoutError(
                    f"fake Discord: the bot sent {voiced_secs():.2f}s of voiced audio in "
                    f"{timeout_secs:g}s; wanted {min_secs:g}s then {silence_secs:g}s of quiet")
            wait_secs = deadline - now
            if voiced_secs() >= min_secs:
                wait_secs = min(wait_secs, silence_secs - quiet_secs)
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), max(wait_secs, 0.001))
            except TimeoutError:
                pass  # quiet long enough, or the deadline: the loop decides
        audio = bytes(self._buffer)
        self._buffer.clear()
        self._voiced_frames = 0
        logger.debug("fake Discord: collected {:.2f}s of the bot's audio",
                     len(audio) / FRAME_BYTES * FRAME_SECS)
        return audio
