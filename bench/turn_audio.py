"""The turn-taking bench's audio, made at run time: the user's sentences in several voices
(espeak-ng variants, and Kokoro voices that are not the bot's when its model is installed),
sentences with a pause inside, and noise beds (pink, babble, music-like).

Piper "joe" is the bot's own voice and is never used for the user. Everything is 16 kHz mono
16-bit PCM, the rate the scripted client sends.
"""

import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr
from loguru import logger

from voxline.bench.prompts import (
    SAMPLE_RATE,
    SPEECH_THRESHOLD,
    Prompt,
    PromptError,
    prompt_from_wav,
    speech_end,
)


@dataclass(frozen=True)
class Voice:
    """A user's voice: an espeak-ng variant at a speed (words a minute) and pitch (0-99), or a
    Kokoro voice pack (`kokoro` set)."""

    name: str
    speed_wpm: int = 165
    pitch: int = 50
    kokoro: str = ""


ESPEAK_VOICES = (
    Voice("en-us+m3", 165, 45), Voice("en+f2", 150, 60), Voice("en-gb+m1", 175, 40),
    Voice("en-us+f4", 140, 65), Voice("en-us+m7", 185, 35), Voice("en-gb+f3", 160, 55),
)
# Kokoro's packaged voices are Japanese packs reading English; jf_alpha is the bot's Kokoro
# voice (tts.engine: kokoro), so the user never gets it.
KOKORO_VOICES = (Voice("kokoro-jm_kumo", kokoro="jm_kumo"),
                 Voice("kokoro-jf_nezumi", kokoro="jf_nezumi"))
BOT_KOKORO_VOICE = "jf_alpha"


class Speaker:
    """Says sentences in a voice into `folder`. A Kokoro voice is loaded on first use."""

    def __init__(self, folder: Path, *, enable_kokoro: bool):
        if shutil.which("espeak-ng") is None:
            raise PromptError("the turn-taking bench needs espeak-ng (apt-get install espeak-ng)")
        self._folder = folder
        self._folder.mkdir(parents=True, exist_ok=True)
        self._count = 0
        self._kokoro: dict[str, object] = {}  # voice pack -> voxline's KokoroSynthesizer
        self.kokoro_note = "off (short mode)"
        if enable_kokoro:
            self.kokoro_note = self._load_kokoro(KOKORO_VOICES[0].kokoro)

    @property
    def voices(self) -> tuple[Voice, ...]:
        """Every usable voice: espeak-ng variants, then Kokoro's if it loaded."""
        return ESPEAK_VOICES + (KOKORO_VOICES if self._kokoro else ())

    def say(self, text: str, voice: Voice, prompt_id: str = "") -> Prompt:
        """`text` spoken in `voice`, trimmed of leading silence beyond 0.1 s."""
        self._count += 1
        raw = self._folder / f"{self._count:03d}.wav"
        if voice.kokoro:
            self._kokoro_wav(voice.kokoro, text, raw)
        else:
            subprocess.run(["espeak-ng", "-v", voice.name, "-s", str(voice.speed_wpm),
                            "-p", str(voice.pitch), "-w", str(raw), text], check=True)
        prompt = prompt_from_wav(prompt_id or f"u{self._count}", text, raw)
        raw.unlink()
        start = max(0, int((speech_start(prompt.pcm) - 0.1) * SAMPLE_RATE)) * 2
        return Prompt(prompt.id, text, prompt.pcm[start:],
                      prompt.speech_end_secs - start / 2 / SAMPLE_RATE)

    def say_with_pause(self, first: str, second: str, pause_secs: float, voice: Voice,
                       prompt_id: str) -> Prompt:
        """`first`, `pause_secs` of silence after its last speech, then `second`: one
        sentence said with a hesitation in it (the reference text is the whole sentence)."""
        head, tail = self.say(first, voice), self.say(second, voice)
        head_pcm = head.pcm[: int(head.speech_end_secs * SAMPLE_RATE) * 2]
        skip = int(max(0.0, speech_start(tail.pcm) - 0.02) * SAMPLE_RATE) * 2
        pcm = head_pcm + silence(pause_secs) + tail.pcm[skip:]
        return Prompt(prompt_id, f"{first} {second}", pcm, speech_end(pcm))

    def close(self) -> None:
        """Release the Kokoro engines."""
        self._kokoro.clear()

    def _load_kokoro(self, voice: str) -> str:
        """Load voxline's own Kokoro engine in `voice` from the packaged files; says whether
        it could (a missing model means espeak-ng voices only)."""
        from voxline.config import load_settings
        from voxline.models import catalog
        from voxline.models.kokoro import KokoroSynthesizer
        from voxline.models.registry import ModelFileError, ModelRegistry

        if voice == BOT_KOKORO_VOICE:
            raise ValueError(f"Kokoro voice {voice} is the bot's; pick another for the user")
        try:
            registry = ModelRegistry(load_settings().models.cache_dir)
            packs = registry.path_of(catalog.KOKORO_FRONTEND)
            self._kokoro[voice] = KokoroSynthesizer(
                model_path=registry.path_of(catalog.KOKORO_82M), voices_path=packs,
                vocab_path=packs.with_name("vocab.json"), voice=voice, num_threads=2)
        except (ModelFileError, OSError, ValueError) as e:
            logger.warning("turn-taking bench: Kokoro is not usable, espeak-ng only: {}", e)
            return f"unavailable: {e}"
        return "used: " + ", ".join(v.kokoro for v in KOKORO_VOICES)

    def _kokoro_wav(self, voice: str, text: str, path: Path) -> None:
        """Kokoro (24 kHz) resampled to 16 kHz into a wav."""
        if voice not in self._kokoro:
            self._load_kokoro(voice)
        engine = self._kokoro[voice]
        samples = np.frombuffer(b"".join(engine.synthesize(text)), np.int16)
        audio = soxr.resample(samples.astype(np.float32) / 32768, engine.sample_rate,
                              SAMPLE_RATE)
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(SAMPLE_RATE)
            w.writeframes(to_pcm(audio))


def speech_start(pcm: bytes) -> float:
    """Seconds from the start of the clip to its first 20 ms window of speech."""
    samples = to_float(pcm)
    window = SAMPLE_RATE // 50
    for index in range(0, len(samples) - window + 1, window):
        if np.sqrt(np.mean(samples[index: index + window] ** 2)) > SPEECH_THRESHOLD:
            return index / SAMPLE_RATE
    return 0.0


def silence(secs: float) -> bytes:
    """Digital silence, as a microphone between words sends (the bench's rooms are quiet)."""
    return bytes(int(secs * SAMPLE_RATE) * 2)


def to_float(pcm: bytes) -> np.ndarray:
    """16-bit PCM as floats in [-1, 1]."""
    return np.frombuffer(pcm, np.int16).astype(np.float32) / 32768


def to_pcm(audio: np.ndarray) -> bytes:
    """Floats in [-1, 1] as 16-bit PCM (clipped)."""
    return (np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes()


def rms(audio: np.ndarray) -> float:
    """Root mean square (0 for nothing)."""
    return float(np.sqrt(np.mean(audio**2))) if audio.size else 0.0


def active_rms(pcm: bytes) -> float:
    """RMS of the 20 ms windows that are speech: a clip's level, not diluted by its pauses."""
    samples = to_float(pcm)
    window = SAMPLE_RATE // 50
    frames = samples[: len(samples) // window * window].reshape(-1, window)
    levels = np.sqrt(np.mean(frames**2, axis=1))
    loud = frames[levels > SPEECH_THRESHOLD]
    return rms(loud.ravel())


def pink_noise(secs: float, level_rms: float, rng: np.random.Generator) -> np.ndarray:
    """Pink (1/f power) noise at `level_rms` of full scale."""
    count = int(secs * SAMPLE_RATE)
    spectrum = np.fft.rfft(rng.standard_normal(count))
    freqs = np.fft.rfftfreq(count, 1 / SAMPLE_RATE)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, count).astype(np.float32)
    return noise * (level_rms / max(rms(noise), 1e-9))


def babble(secs: float, level_rms: float, voices: list[bytes],
           rng: np.random.Generator) -> np.ndarray:
    """Several voices at once, each reversed (speech-like but no words), looped from a random
    offset and summed: a café's chatter."""
    count = int(secs * SAMPLE_RATE)
    out = np.zeros(count, np.float32)
    for pcm in voices:
        voice = to_float(pcm)[::-1]
        looped = np.tile(voice, count // len(voice) + 2)
        start = int(rng.integers(0, len(voice)))
        out += looped[start: start + count] * rng.uniform(0.6, 1.0)
    return out * (level_rms / max(rms(out), 1e-9))


def music(secs: float, level_rms: float, rng: np.random.Generator,
          bpm: float = 112.0) -> np.ndarray:
    """Music-like sound: a pentatonic melody of harmonic tones on every beat, a bass note on
    every other beat and a low thump on each beat."""
    beat = 60.0 / bpm
    count = int(secs * SAMPLE_RATE)
    out = np.zeros(count + SAMPLE_RATE, np.float32)
    scale = [0, 2, 4, 7, 9, 12, 14]
    note_len = int(beat * SAMPLE_RATE)
    t = np.arange(note_len) / SAMPLE_RATE
    envelope = np.exp(-t * 4.0)
    for index in range(int(secs / beat) + 1):
        at = index * note_len
        freq = 330.0 * 2 ** (scale[int(rng.integers(0, len(scale)))] / 12)
        tone = sum(np.sin(2 * np.pi * freq * k * t) / k for k in (1, 2, 3, 4))
        out[at: at + note_len] += 0.5 * tone * envelope
        if index % 2 == 0:
            bass = 110.0 * 2 ** (scale[index // 2 % 4] / 12) / 2
            out[at: at + note_len] += 0.6 * np.sin(2 * np.pi * bass * t) * np.exp(-t * 2.0)
        out[at: at + note_len] += np.sin(2 * np.pi * 60 * t) * np.exp(-t * 30.0)
    out = out[:count]
    return out * (level_rms / max(rms(out), 1e-9))


def with_noise(prompt: Prompt, noise: np.ndarray, snr_db: float) -> Prompt:
    """`prompt` with `noise` under it, scaled so that the speech is `snr_db` louder than the
    noise (speech level from its active windows). `noise` must be at least as long."""
    speech = to_float(prompt.pcm)
    under = noise[: len(speech)]
    mixed = speech + under * (active_rms(prompt.pcm) / 10 ** (snr_db / 20) / max(rms(under), 1e-9))
    return Prompt(f"{prompt.id}-snr{snr_db:g}", prompt.text, to_pcm(mixed),
                  prompt.speech_end_secs)
