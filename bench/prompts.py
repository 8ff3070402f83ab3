"""Spoken prompts for the benchmark: a built-in set made with espeak-ng, or the user's manifest."""

import json
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

SAMPLE_RATE = 16000
SPEECH_THRESHOLD = 0.01  # RMS (of full scale) above which a 20 ms window is speech

BUILT_IN = [
    ("capital", "What is the capital of France?"),
    ("book", "Can you recommend a good book to read this weekend?"),
    ("dragon", "Please tell me a short story about a friendly dragon."),
    ("ocean", "Tell me something interesting about the ocean."),
    ("weather", "What should I wear when it rains?"),
    ("cook", "How do I cook rice on the stove?"),
    ("sleep", "Give me one tip to sleep better."),
    ("moon", "How far away is the moon?"),
]


class PromptError(Exception):
    """A prompt cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class Prompt:
    """One user utterance: 16 kHz mono PCM, its reference text, where the speech ends."""

    id: str
    text: str
    pcm: bytes
    speech_end_secs: float  # last speech in the clip (voice-to-voice starts there)

    @property
    def duration_secs(self) -> float:
        """Length of the clip."""
        return len(self.pcm) / 2 / SAMPLE_RATE


def built_in_prompts(folder: Path) -> list[Prompt]:
    """The built-in prompts, spoken by espeak-ng into `folder`."""
    if shutil.which("espeak-ng") is None:
        raise PromptError("the built-in prompts need espeak-ng (apt-get install espeak-ng), "
                          "or pass --manifest FILE.jsonl with your own recordings")
    folder.mkdir(parents=True, exist_ok=True)
    prompts = []
    for prompt_id, text in BUILT_IN:
        raw = folder / f"{prompt_id}.raw.wav"
        subprocess.run(["espeak-ng", "-s", "165", "-w", str(raw), text], check=True)
        prompts.append(prompt_from_wav(prompt_id, text, raw))
    return prompts


def manifest_prompts(manifest: Path) -> list[Prompt]:
    """Prompts from a JSON-lines file of {"id", "wav", "text"} (wav paths relative to it)."""
    prompts = []
    try:
        lines = manifest.read_text().splitlines()
    except OSError as e:
        raise PromptError(f"cannot read manifest {manifest}: {e.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            wav = (manifest.parent / entry["wav"]).resolve()
            prompts.append(prompt_from_wav(str(entry["id"]), str(entry["text"]), wav))
        except (ValueError, KeyError, TypeError) as e:
            raise PromptError(
                f"{manifest}:{number}: need {{\"id\", \"wav\", \"text\"}}: {e}"
            ) from None
    if not prompts:
        raise PromptError(f"{manifest} has no prompts")
    return prompts


def pick_prompts(prompts: list[Prompt], ids: list[str]) -> list[Prompt]:
    """The prompts named in `ids`, in that order (a name may repeat): to benchmark one kind
    of turn, such as long replies from every session at once."""
    by_id = {prompt.id: prompt for prompt in prompts}
    if unknown := [i for i in ids if i not in by_id]:
        raise PromptError(f"no prompt named {', '.join(unknown)}; the prompts are: "
                          f"{', '.join(by_id)}")
    return [by_id[i] for i in ids]


def prompt_from_wav(prompt_id: str, text: str, wav: Path) -> Prompt:
    """A 16-bit wav of any rate and channel count as a 16 kHz mono prompt."""
    try:
        with wave.open(str(wav), "rb") as w:
            if w.getsampwidth() != 2:
                raise PromptError(f"{wav}: need 16-bit PCM")
            rate, channels = w.getframerate(), w.getnchannels()
            samples = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    except (OSError, wave.Error, EOFError) as e:
        raise PromptError(f"{wav}: cannot read wav: {e}") from None
    audio = samples.reshape(-1, channels).mean(axis=1).astype(np.float32) / 32768
    if rate != SAMPLE_RATE:
        audio = soxr.resample(audio, rate, SAMPLE_RATE)
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes()
    return Prompt(prompt_id, text, pcm, speech_end(pcm))


def speech_end(pcm: bytes) -> float:
    """Seconds from the start of the clip to the end of its last 20 ms window of speech."""
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768
    window = SAMPLE_RATE // 50
    last = 0
    for index in range(0, len(samples) - window + 1, window):
        if np.sqrt(np.mean(samples[index: index + window] ** 2)) > SPEECH_THRESHOLD:
            last = index + window
    return last / SAMPLE_RATE
