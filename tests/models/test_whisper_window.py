"""Whisper's encoder sees the clip plus a margin, not the full 30 s window."""

import pytest

from tests.helpers import read_pcm, wer
from voxline.models.whisper import encoder_frames, max_new_tokens, without_repetition_loop

QUESTION = "Could you explain how airplanes stay in the air?"


@pytest.mark.parametrize(("audio_secs", "frames"), [
    (2.0, 1000),   # short: the 10 s minimum
    (8.5, 1150),   # the clip plus 3 s
    (29.0, 3000),  # never past the full window
    (95.0, 3000),  # long audio: faster-whisper cuts it into full windows
])
def test_the_window_covers_the_clip_and_a_margin(audio_secs, frames):
    assert encoder_frames(audio_secs, min_window_secs=10.0) == frames


def test_the_token_bound_grows_with_the_audio_up_to_one_window():
    assert max_new_tokens(2.0) < max_new_tokens(10.0) < max_new_tokens(60.0) == max_new_tokens(30)


def test_a_short_window_decodes_the_same_words(models, speech, monkeypatch):
    """The served engine (10 s minimum window) hears the question right, and what reaches
    CTranslate2's encoder is shorter than faster-whisper's 30 s."""
    import faster_whisper.transcribe

    widths: list[int] = []
    to_storage = faster_whisper.transcribe.get_ctranslate2_storage

    def spy(features):
        widths.append(features.shape[-1])
        return to_storage(features)

    monkeypatch.setattr(faster_whisper.transcribe, "get_ctranslate2_storage", spy)
    transcript = models.stt.transcribe(read_pcm(speech(QUESTION)))
    assert wer(QUESTION, transcript.text) <= 0.2, transcript.text
    assert widths and max(widths) <= 1000, widths


@pytest.mark.parametrize(("looped", "kept"), [
    ("the capital of Francis Paris Paris Paris Paris Paris", "the capital of Francis Paris"),
    ("turn it up, turn it up, turn it up, turn it up", "turn it up,"),
    ("I said no no", "I said no no"),  # two is speech, not a loop
    ("what time is it", "what time is it"),
])
def test_a_decoder_loop_is_cut_to_one_phrase(looped, kept):
    assert without_repetition_loop(looped) == kept
