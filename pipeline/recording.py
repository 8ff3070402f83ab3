"""Writes one session's audio to a WAV file: the user on the left channel, the bot on the right."""

import asyncio
import wave
from pathlib import Path

from loguru import logger
from pipecat.processors.audio.audio_buffer_processor import AudioBufferProcessor

RECORDING_SAMPLE_RATE = 16000
FLUSH_EVERY_SECS = 5


def session_recorder(*, path: Path) -> AudioBufferProcessor:
    """pipecat's `AudioBufferProcessor` (stereo: user left, bot right, 16 kHz), recording from
    the pipeline's start and appending every few seconds of audio to the WAV at `path`.

    The file is opened on the first audio, written in a worker thread (never on the loop) and
    finished (header sizes) when the recording stops: the session's end or cancellation. Only
    `run_session` creates it, and only when the server allows recording and the client asked.
    """
    recorder = AudioBufferProcessor(
        sample_rate=RECORDING_SAMPLE_RATE, num_channels=2,
        buffer_size=RECORDING_SAMPLE_RATE * 2 * 2 * FLUSH_EVERY_SECS,
        auto_start_recording=True,
    )
    writer = _WavWriter(path)
    # pipecat runs each event handler as its own task; tasks start in the order the events
    # came and the lock is FIFO, so chunks are written in order and the close comes last.
    lock = asyncio.Lock()

    @recorder.event_handler("on_audio_data")
    async def on_audio_data(_recorder, audio: bytes, sample_rate: int, num_channels: int):
        async with lock:
            await asyncio.to_thread(writer.append, audio, sample_rate, num_channels)

    @recorder.event_handler("on_recording_stopped")
    async def on_recording_stopped(_recorder):
        async with lock:
            await asyncio.to_thread(writer.close)

    return recorder


class _WavWriter:
    """A WAV file grown chunk by chunk; `wave` rewrites the header sizes on close."""

    def __init__(self, path: Path):
        self._path = path
        self._wav: wave.Wave_write | None = None

    def append(self, audio: bytes, sample_rate: int, num_channels: int) -> None:
        if self._wav is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._wav = wave.open(str(self._path), "wb")
            self._wav.setnchannels(num_channels)
            self._wav.setsampwidth(2)
            self._wav.setframerate(sample_rate)
        self._wav.writeframes(audio)

    def close(self) -> None:
        if self._wav is not None:
            self._wav.close()
            self._wav = None
            logger.info("Recording saved: {}", self._path)
