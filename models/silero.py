"""Silero VAD's onnx model, loaded once per process (each stream's state: pipeline/vad.py)."""

from pathlib import Path

import onnxruntime


def load_silero(path: Path) -> onnxruntime.InferenceSession:
    """The shared session: one thread, as pipecat runs it (a 32 ms window takes ~0.2 ms)."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), sess_options=options,
                                        providers=["CPUExecutionProvider"])
