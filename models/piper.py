"""Piper text to speech (piper-tts, GPL-3.0: an optional extra), shared by all sessions."""

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

    def synthesize(self, text: str) -> Iterator[bytes]:
        """16-bit mono PCM at `sample_rate`. Blocking: iterate it in a worker thread."""
        for chunk in self._voice.synthesize(text, syn_config=self._config):
            yield chunk.audio_int16_bytes

    def warm_up(self) -> None:
        """Pay onnxruntime's first-run cost at start-up."""
        for _ in self.synthesize("Ready."):
            pass


def _locked_phonemizer(voice_class: type) -> type:
    """PiperVoice, phonemizing one text at a time: piper's espeak-ng bridge keeps global state,
    and sessions' sentences run in several threads. Inference is not under this lock: it takes
    its own turn on the CPU."""
    lock = threading.Lock()

    class LockedPhonemizerVoice(voice_class):
        def phonemize(self, text: str) -> list[list[str]]:
            with lock:
                return super().phonemize(text)

    return LockedPhonemizerVoice
