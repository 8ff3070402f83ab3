"""Piper text to speech (piper-tts, GPL-3.0: an optional extra), shared by all sessions."""

import dataclasses
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import onnxruntime

from voxline.models.compute import ComputeArbiter
from voxline.models.onnx_memory import ShrinkingSession
from voxline.models.registry import ModelFileError


class PiperSynthesizer:
    """A loaded Piper voice. `synthesize` yields one PCM chunk per sentence; each sentence's
    inference takes its turn on `compute`."""

    def __init__(self, *, model_path: Path, config_path: Path, speed: float, num_threads: int,
                 compute: ComputeArbiter | None = None):
        try:
            from piper import PiperVoice
            from piper.config import PiperConfig, SynthesisConfig
        except ImportError as e:
            raise ModelFileError(
                "TTS engine 'piper' needs the piper extra: pip install 'voxline[piper]' "
                "(piper-tts is GPL-3.0), or set tts.engine to 'kokoro'"
            ) from e
        # Built by hand rather than PiperVoice.load() so the onnx thread count is ours to cap.
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        # Idle threads sleep instead of spinning: the cores go to whoever computes next.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._voice = _locked_phonemizer(PiperVoice)(
            session=ShrinkingSession(onnxruntime.InferenceSession(
                str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
            ), compute or ComputeArbiter()),
            config=PiperConfig.from_dict(json.loads(Path(config_path).read_text())),
        )
        self._config = SynthesisConfig(length_scale=1.0 / speed)
        self.name = f"piper:{Path(model_path).stem}"
        self.sample_rate: int = self._voice.config.sample_rate

    def synthesize(self, text: str, speed: float = 1.0) -> Iterator[bytes]:
        """16-bit mono PCM at `sample_rate`, `speed` times the voice's set speed. Blocking:
        iterate it in a worker thread."""
        config = self._config if speed == 1.0 else dataclasses.replace(
            self._config, length_scale=self._config.length_scale / speed)
        for chunk in self._voice.synthesize(text, syn_config=config):
            yield chunk.audio_int16_bytes

    def warm_up(self) -> None:
        """Pay onnxruntime's first-run cost at start-up."""
        for _ in self.synthesize("Ready."):
            pass


# Piper's onnx run holds ~0.9 MB per phoneme until it ends (~17 MB per second of audio,
# measured: a 200-character sentence +177 MB for the run, 800 characters +688 MB), and none of
# its audio plays before then. Longer sentences are synthesized in parts: ~6 s of audio and
# ~+100 MB at most, the first part playing while the next is made.
MAX_PART_PHONEMES = 120
PART_BREAKS = (",;:", " ")  # cut after a clause mark if there is one, else between words


def split_long(phonemes: list[str], limit: int = MAX_PART_PHONEMES) -> list[list[str]]:
    """One sentence's phonemes as parts of at most `limit`, cut at the last clause mark, else
    the last space, in the window (not in its first third: no tiny parts), else at `limit`."""
    parts = []
    while len(phonemes) > limit:
        cut = next((i + 1 for marks in PART_BREAKS
                    for i in range(limit - 1, limit // 3, -1) if phonemes[i] in marks), limit)
        parts.append(_strip_spaces(phonemes[:cut]))
        phonemes = _strip_spaces(phonemes[cut:])
    return [*parts, phonemes]


def _strip_spaces(phonemes: list[str]) -> list[str]:
    start, end = 0, len(phonemes)
    while start < end and phonemes[start] == " ":
        start += 1
    while end > start and phonemes[end - 1] == " ":
        end -= 1
    return phonemes[start:end]


def _locked_phonemizer(voice_class: type) -> type:
    """PiperVoice, phonemizing one text at a time: piper's espeak-ng bridge keeps global state,
    and sessions' sentences run in several threads. Inference is not under this lock: it takes
    its own turn on the CPU. Each long sentence comes back in parts (`split_long`): Piper
    synthesizes each phonemized "sentence" in one run."""
    lock = threading.Lock()

    class LockedPhonemizerVoice(voice_class):
        def phonemize(self, text: str) -> list[list[str]]:
            with lock:
                sentences = super().phonemize(text)
            return [part for sentence in sentences for part in split_long(sentence)]

    return LockedPhonemizerVoice
