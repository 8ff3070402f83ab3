"""Small test utilities: word error rate, transcription of bot audio, event-loop lag."""

import asyncio
import re
import time
import wave
from pathlib import Path

import jiwer
import numpy as np


def normalise(text: str) -> str:
    """Lower case, no punctuation, single spaces (for WER and word checks)."""
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of normalised texts."""
    return jiwer.wer(normalise(reference), normalise(hypothesis))


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate of normalised texts: kinder than WER to near-homophones that tiny
    Whisper writes differently ("France is Paris" → "Francis Perris")."""
    return jiwer.cer(normalise(reference), normalise(hypothesis))


def words(text: str) -> set[str]:
    """The set of normalised words."""
    return set(normalise(text).split())


def read_pcm(path: Path) -> bytes:
    """The frames of a 16-bit mono wav."""
    with wave.open(str(path), "rb") as w:
        return w.readframes(w.getnframes())


def without_trailing_silence(pcm: bytes, *, peak: int = 64) -> bytes:
    """16-bit PCM up to its last sample at or above `peak`: what a client that transmits only
    while its user speaks (Discord's voice activity) sends of an utterance."""
    samples = np.frombuffer(pcm, dtype=np.int16)
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) >= peak)
    return samples[: loud[-1] + 1 if loud.size else 0].tobytes()


def transcribe(models, pcm: bytes, sample_rate: int) -> str:
    """Whisper transcript of 16-bit mono PCM at any rate (uses the shared test engine)."""
    import soxr

    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768
    if sample_rate != 16000:
        samples = soxr.resample(samples, sample_rate, 16000)
    pcm16 = (np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes()
    return models.stt.transcribe(pcm16).text


async def feed_speech(transport, pcm: bytes, *, silence_secs: float) -> None:
    """Feed 16 kHz mono speech, then silence, in real time 20 ms packets into a transport with
    `feed(pcm)` (the Discord member transport), as the voice receiver does."""
    pcm += bytes(int(silence_secs * 32000))
    for i in range(0, len(pcm), 640):
        transport.feed(pcm[i:i + 640])
        await asyncio.sleep(0.02)


def rms(pcm: bytes) -> float:
    """Root mean square of 16-bit PCM, as a fraction of full scale."""
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0


class LoopLagMonitor:
    """Measures how late the event loop wakes a 10 ms sleeper: a blocked loop shows up here."""

    def __init__(self, period_secs: float = 0.01):
        self._period = period_secs
        self.max_lag_secs = 0.0
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> "LoopLagMonitor":
        self._task = asyncio.create_task(self._watch(), name="loop-lag-monitor")
        return self

    async def __aexit__(self, *exc) -> None:
        assert self._task
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self._period)
            self.max_lag_secs = max(self.max_lag_secs, time.perf_counter() - started - self._period)
