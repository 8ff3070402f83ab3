"""The silence-hallucination filter drops Whisper's phrases for silence, not real speech."""

import pytest

from voxline.models.whisper import is_silence_hallucination


@pytest.mark.parametrize("text", ["you", " You.", "Thank you.", "thanks for watching!", ""])
def test_known_phrases_on_near_silence_are_dropped(text):
    assert is_silence_hallucination(text, rms=0.001, no_speech_prob=0.1)


def test_thank_you_said_out_loud_is_kept():
    assert not is_silence_hallucination("Thank you.", rms=0.1, no_speech_prob=0.05)


def test_other_text_is_kept_even_on_quiet_audio():
    assert not is_silence_hallucination("turn on the lights", rms=0.001, no_speech_prob=0.9)
