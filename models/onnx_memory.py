"""onnxruntime's CPU arena keeps the peak of every run: give it back after each synthesis."""

import onnxruntime

from voxline.models.compute import ComputeArbiter

# Measured with Piper (joe-medium, 2 threads): after a few long sentences the arena held
# ~350 MB, and it grew in steps whenever a longer sentence came (the soak's RSS steps). Shrunk
# after each run: 186 MB instead of 534 MB, synthesis ~10% slower (a 5-word piece 0.097 s
# against 0.081 s). Without the arena at all it was 40% slower.
SHRINK_ARENA = "memory.enable_memory_arena_shrinkage"


def shrinking_run_options() -> onnxruntime.RunOptions:
    """Run options that release the CPU arena's unused chunks at the end of the run."""
    options = onnxruntime.RunOptions()
    options.add_run_config_entry(SHRINK_ARENA, "cpu:0")
    return options


class ShrinkingSession:
    """An InferenceSession whose `run` takes its turn on the CPU (`compute`, as urgent as the
    caller said) and shrinks the arena afterwards, for code that calls `session.run(names,
    feed)` itself (PiperVoice) and for our Kokoro."""

    def __init__(self, session: onnxruntime.InferenceSession, compute: ComputeArbiter):
        self._session = session
        self._compute = compute
        self._run_options = shrinking_run_options()

    def run(self, output_names, input_feed, run_options=None):
        with self._compute.caller_turn():
            return self._session.run(output_names, input_feed, run_options or self._run_options)

    def __getattr__(self, name: str):
        return getattr(self._session, name)
