"""Piper synthesizes a long sentence in parts: its onnx run's memory grows with the audio it
makes (~17 MB a second), and nothing plays before the run ends."""

from tests.helpers import transcribe, wer
from voxline.models.piper import MAX_PART_PHONEMES, split_long

LONG = ("The friendly dragon flew over the quiet village at dawn, greeting every child it met "
        "with a warm smile and a puff of golden smoke, and then it landed softly in the old "
        "meadow behind the mill where the farmers kept their sheep and their bright red "
        "wagons all through the long summer months")


def _phonemes(text: str) -> list[str]:
    return list(text)  # one "phoneme" per character is enough to test the cutting


def test_a_short_sentence_stays_whole():
    assert split_long(_phonemes("Paris is the capital."), limit=40) == [
        _phonemes("Paris is the capital.")]


def test_parts_are_cut_after_a_clause_mark_else_between_words():
    text = "The dragon flew over the village, greeting the children with a smile and a puff"
    parts = ["".join(p) for p in split_long(_phonemes(text), limit=40)]
    assert parts == ["The dragon flew over the village,",
                     "greeting the children with a smile and", "a puff"]


def test_a_run_without_breaks_is_cut_at_the_limit():
    parts = split_long(_phonemes("x" * 100), limit=40)
    assert [len(p) for p in parts] == [40, 40, 20]


def test_a_long_sentence_is_spoken_in_parts_that_whisper_still_hears(models):
    chunks = list(models.tts.synthesize(LONG + "."))
    assert len(chunks) >= 3, "one onnx run per part"
    longest = max(len(c) for c in chunks) / 2 / models.tts.sample_rate
    assert longest < MAX_PART_PHONEMES / 10, f"a part of {longest:.1f} s"
    heard = " ".join(transcribe(models, chunk, models.tts.sample_rate) for chunk in chunks)
    assert wer(LONG, heard) <= 0.25, heard
