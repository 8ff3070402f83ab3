"""faster-whisper speech recognition, loaded once per process and shared by all sessions."""

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from loguru import logger

# What Whisper says on silence or breath noise. Dropped only when the audio is near-silent or the
# model itself thinks there was no speech, so a user who really says "thank you" is still heard.
SILENCE_HALLUCINATIONS = frozenset(
    {"you", "thank you", "thanks", "thank you very much", "thanks for watching", "bye", "so"}
)
NEAR_SILENCE_RMS = 0.01  # of full scale
NO_SPEECH_PROB = 0.6
WHISPER_SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Transcript:
    """One decoding result: the text and what it took to get it."""

    text: str
    audio_secs: float
    decode_secs: float


def is_silence_hallucination(text: str, rms: float, no_speech_prob: float) -> bool:
    """True when `text` is one of Whisper's phrases for silence and the audio agrees."""
    normalised = re.sub(r"[^a-z ]", "", text.lower()).strip()
    if not normalised:
        return True
    return normalised in SILENCE_HALLUCINATIONS and (
        rms < NEAR_SILENCE_RMS or no_speech_prob > NO_SPEECH_PROB
    )


class WhisperEngine:
    """A shared faster-whisper model plus the one thread that runs it.

    One worker thread: CTranslate2 already uses `cpu_threads` cores per call, and a second call in
    parallel on a 2-core machine would only make both slower.
    """

    def __init__(self, *, model_dir: Path, cpu_threads: int, beam_size: int, language: str):
        from faster_whisper import WhisperModel  # heavy import, only when loading

        self.name = f"faster-whisper:{Path(model_dir).name}"
        self._model = WhisperModel(
            str(model_dir), device="cpu", compute_type="int8", cpu_threads=cpu_threads
        )
        self._beam_size = beam_size
        self._language = language
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voxline-stt")

    def transcribe(self, pcm16: bytes) -> Transcript:
        """Decode 16 kHz 16-bit mono PCM. Blocking: call it on `self.executor`."""
        import time

        started = time.perf_counter()
        audio = np.frombuffer(pcm16, dtype=np.int16).astype(np.float32) / 32768.0
        if audio.size == 0:
            return Transcript("", 0.0, 0.0)
        rms = float(np.sqrt(np.mean(audio**2)))
        segments, _ = self._model.transcribe(
            audio,
            language=self._language,
            beam_size=self._beam_size,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        # The generator is lazy: the decoding happens here, in this worker thread.
        kept = [
            s.text.strip()
            for s in segments
            if not is_silence_hallucination(s.text, rms, s.no_speech_prob)
        ]
        text = " ".join(t for t in kept if t)
        elapsed = time.perf_counter() - started
        logger.trace("whisper: {:.2f}s audio in {:.3f}s -> {!r}", audio.size / 16000, elapsed, text)
        return Transcript(text, audio.size / WHISPER_SAMPLE_RATE, elapsed)

    def warm_up(self) -> None:
        """First call pays one-off allocation costs; pay them at start-up instead."""
        rng = np.random.default_rng(0)
        noise = (rng.standard_normal(WHISPER_SAMPLE_RATE) * 300).astype(np.int16)
        self.transcribe(noise.tobytes())

    def close(self) -> None:
        """Stop the worker thread (at process exit)."""
        self.executor.shutdown(wait=False, cancel_futures=True)
