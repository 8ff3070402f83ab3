"""Smart-turn v3.2, shared by the process: the voice's verdict where a transcript cannot tell."""

import wave


def test_a_finished_question_sounds_finished(models, speech):
    with wave.open(str(speech("What is the capital of France?")), "rb") as w:
        pcm = w.readframes(w.getnframes()) + bytes(16000 * 2 // 5)  # and 0.2 s of silence
    is_complete, probability = models.turn.is_complete(pcm)
    assert is_complete and probability > 0.5


def test_silence_is_not_a_finished_turn(models):
    is_complete, probability = models.turn.is_complete(bytes(16000 * 2))
    assert 0.0 <= probability <= 1.0
    assert not (is_complete and probability > 0.99)
