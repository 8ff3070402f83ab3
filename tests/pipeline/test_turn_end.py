"""Turn end: short VAD window, but no answering mid-sentence; first TTS piece is a clause."""

import pytest

from voxline.pipeline.text_aggregation import FirstClauseAggregator
from voxline.pipeline.turn_end import sounds_finished


@pytest.mark.parametrize("text", ["What is the capital of France?", "Thanks.", "Stop!",
                                  "I said \"hello.\""])
def test_finished_sentences(text):
    assert sounds_finished(text)


@pytest.mark.parametrize("text", ["What is the capital of", "I would like to", "Tea and",
                                  "so the.", "My name is", "My favorite color is...",
                                  "Well, I think…"])
def test_unfinished_sentences(text):
    assert not sounds_finished(text)


async def _pieces(aggregator, tokens):
    out = []
    for token in tokens:
        out += [a.text async for a in aggregator.aggregate(token)]
    tail = await aggregator.flush()
    return out + ([tail.text] if tail and tail.text else [])


async def test_a_reply_opens_with_clauses_then_goes_on_in_sentences():
    aggregator = FirstClauseAggregator(min_words=3, ramp_words=8)
    reply = ["Sure", ",", " the", " capital", " of", " France", ",", " as", " you", " know", ",",
             " is", " Paris", ".", " It", " is", " lovely", ",", " really", ".", " Yes", "."]
    pieces = await _pieces(aggregator, reply)
    assert pieces[0] == "Sure, the capital of France,"
    assert pieces[1] == "as you know,", "5 words spoken: still opening"
    assert pieces[2:] == ["is Paris.", "It is lovely, really.", "Yes."]
    # The next reply starts with a clause again.
    again = await _pieces(aggregator, ["Well", ",", " I", " think", " so", ",", " yes", "."])
    assert again[0] == "Well, I think so,"


async def test_short_lead_in_is_not_cut_alone():
    aggregator = FirstClauseAggregator(min_words=3)
    pieces = await _pieces(aggregator, ["Yes", ",", " it", " is", "."])
    assert pieces == ["Yes, it is."]


async def test_a_long_first_sentence_without_breaks_is_cut_after_max_words():
    aggregator = FirstClauseAggregator(min_words=3, max_words=8)
    words = "A friendly dragon is a dragon that loves to fly and is loyal.".split(" ")
    pieces = await _pieces(aggregator, [w if i == 0 else f" {w}" for i, w in enumerate(words)])
    assert pieces[0] == "A friendly dragon is a dragon that loves"
    assert pieces[1] == "to fly and is loyal."


async def test_the_second_piece_is_short_too():
    """With four sessions opening replies at once, a whole second sentence was written and
    synthesized only after the first clause had finished playing (0.2-3 s of silence)."""
    aggregator = FirstClauseAggregator(min_words=2, max_words=5, ramp_words=12, ramp_max_words=8)
    reply = ('Certainly! "The Catcher in the Rye" by J.D. Salinger is a classic that is perfect '
             'for reading this weekend. It is short. You will enjoy it.')
    pieces = await _pieces(aggregator, [reply[i:i + 4] for i in range(0, len(reply), 4)])
    # The opening quote going with "Certainly!" is pipecat's sentence split (not spoken).
    assert pieces == ['Certainly! "', 'The Catcher in the Rye" by J.D. Salinger',
                      "is a classic that is perfect for reading", "this weekend.",
                      "It is short.", "You will enjoy it."]


async def test_a_comma_inside_a_number_is_no_clause_break():
    aggregator = FirstClauseAggregator(min_words=2, max_words=8)
    pieces = await _pieces(aggregator, ["The", " moon", " is", " about", " 384", ",", "400",
                                        " km", " away", ",", " give", " or", " take", "."])
    assert pieces[0] == "The moon is about 384,400 km away,"


async def test_a_length_cut_does_not_end_on_a_leading_word():
    aggregator = FirstClauseAggregator(min_words=2, max_words=5)
    words = "A friendly dragon is a dragon that loves to fly.".split(" ")
    pieces = await _pieces(aggregator, [w if i == 0 else f" {w}" for i, w in enumerate(words)])
    assert pieces[0] == "A friendly dragon is a dragon"
    assert pieces[1] == "that loves to fly."


async def test_each_line_of_a_list_is_spoken_as_it_comes():
    """The sentence tokenizer alone kept a whole list as one piece until the reply ended."""
    aggregator = FirstClauseAggregator()
    reply = ("Sure, here are a few:\n\n- \"Dune\" by Frank Herbert\n"
             "- \"Emma\" by Jane Austen\nEnjoy them.")
    pieces = await _pieces(aggregator, [reply[i:i + 3] for i in range(0, len(reply), 3)])
    assert pieces == ["Sure, here are a few:", "- \"Dune\" by Frank Herbert",
                      "- \"Emma\" by Jane Austen", "Enjoy them."]


async def test_a_sentence_is_cut_short_when_the_audio_ahead_runs_out():
    """Under load the LLM writes a reply at ~10 tokens/s: waiting for a long sentence's end
    left the bot silent. Once the audio ahead is short, a piece of 3+ words goes at a word."""
    lead = {"secs": 5.0}
    aggregator = FirstClauseAggregator(ramp_words=0, audio_lead=lambda: lead["secs"],
                                       cut_lead_secs=0.8, min_cut_words=3)
    words = ("Hello there. The dragon flew over the mountains and the sea to find "
             "her friend.").split(" ")
    tokens = [w if i == 0 else f" {w}" for i, w in enumerate(words)]
    pieces = [a.text for token in tokens[:6] async for a in aggregator.aggregate(token)]
    assert pieces == ["Hello there."], "plenty of audio ahead: whole sentences"
    lead["secs"] = 0.5
    pieces = [a.text for token in tokens[6:13] async for a in aggregator.aggregate(token)]
    # Not before 3 words, nor after "and", "the" (the second piece waits for "sea").
    assert pieces == ["The dragon flew over", "the mountains and the sea"], pieces
    lead["secs"] = 5.0
    pieces = [a.text for token in [*tokens[13:], " Yes."]
              async for a in aggregator.aggregate(token)]
    assert pieces == ["to find her friend."], "audio ahead again: the sentence ends whole"


async def test_the_first_piece_is_not_cut_by_the_audio_lead():
    """Before a reply's first piece there is no audio of it yet: its own rules decide."""
    aggregator = FirstClauseAggregator(max_words=6, audio_lead=lambda: 0.0, min_cut_words=3)
    words = "Once upon a time there lived a dragon.".split(" ")
    pieces = await _pieces(aggregator, [w if i == 0 else f" {w}" for i, w in enumerate(words)])
    assert pieces[0] == "Once upon a time there lived"
