"""Engine choice from settings: Kokoro loads from its packages and speaks."""

import numpy as np

from tests.conftest import make_settings
from voxline.models.compute import ComputeArbiter
from voxline.models.loader import _load_tts
from voxline.models.registry import ModelRegistry


def test_kokoro_engine_is_selected_and_speaks():
    settings = make_settings(tts={"engine": "kokoro", "voice": "jf_alpha"})
    engine = _load_tts(settings, ModelRegistry(settings.models.cache_dir), ComputeArbiter())
    assert engine.name.startswith("kokoro") and engine.sample_rate == 24000
    pcm = b"".join(engine.synthesize("Good morning."))
    samples = np.frombuffer(pcm, dtype=np.int16)
    assert samples.size > 24000 * 0.3 and np.abs(samples).max() > 1000
