"""pipecat's smart-turn v3.2 end-of-turn model, loaded once per process.

It hears from the voice (intonation, a drawn-out last word) whether a speaker has finished. It
is asked only when the transcript cannot tell (pipeline/turn_end.py), about 80 ms a call on one
thread.
"""

from pathlib import Path

import numpy as np


class SmartTurnModel:
    """The shared model. `is_complete` is thread-safe (onnxruntime's `run` is) and holds no
    state between calls, so every session may call it from a worker thread."""

    name = "smart-turn-v3.2"

    def __init__(self, path: Path):
        # Imported here: pipecat prints a banner on import, and `voxline models` (which reads
        # this package) must print nothing but its table.
        from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3

        self._analyzer = LocalSmartTurnAnalyzerV3(smart_turn_model_path=str(path), cpu_count=1)

    def is_complete(self, pcm16: bytes) -> tuple[bool, float]:
        """Whether the speech in `pcm16` (16 kHz mono, its last 8 s count) sounds finished,
        and the model's probability that it is."""
        audio = np.frombuffer(pcm16, np.int16).astype(np.float32) / 32768
        # pipecat's analyzer buffers a stream; its prediction step alone is what a one-off
        # question needs (contract: tests/test_private_surface.py).
        result = self._analyzer._predict_endpoint(audio)
        return result["prediction"] == 1, float(result["probability"])

    def warm_up(self) -> None:
        """One call, so the first user's turn does not pay for onnxruntime's first run."""
        self.is_complete(bytes(16000 * 2))
