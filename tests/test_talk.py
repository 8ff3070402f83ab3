"""`ReplyEnd`: when a client may consider the bot's answer over."""

from voxline.transports.reply_end import ReplyEnd

REPLY = {"type": "bot.reply", "text": "Paris. It is big.", "interrupted": False}


def _feed(events: list[dict | str]) -> list[bool]:
    reply_end = ReplyEnd()
    return [reply_end.see(e if isinstance(e, dict) else {"type": e}) for e in events]


def _said(text: str) -> dict:
    return {"type": "bot.text", "text": text}


def test_a_pause_between_sentences_is_not_the_end():
    # The LLM finished writing before synthesis of the second sentence did.
    done = _feed(["bot.started_speaking", _said("Paris."), REPLY, "bot.stopped_speaking",
                  "bot.started_speaking", _said("It is big."), "bot.stopped_speaking"])
    assert done == [False, False, False, False, False, False, True]


def test_the_last_sentence_spoken_before_the_reply_event_ends_it_on_that_event():
    done = _feed(["bot.started_speaking", _said("Paris. It is big."), "bot.stopped_speaking",
                  REPLY])
    assert done == [False, False, False, True]


def test_an_interrupted_reply_ends_when_the_audio_stops():
    cut = {**REPLY, "interrupted": True}
    assert _feed(["bot.started_speaking", _said("Paris."), cut, "bot.stopped_speaking"]) == [
        False, False, False, True]


def test_a_reply_that_was_never_spoken_is_not_over():
    assert _feed([REPLY, "transcript.final"]) == [False, False]
