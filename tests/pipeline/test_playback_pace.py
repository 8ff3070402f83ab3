"""`PlaybackPace`: how far a reply's text may run ahead of its playback."""

import pytest

from voxline.pipeline import llm
from voxline.pipeline.llm import SPEECH_CHARS_PER_SEC, PlaybackPace


@pytest.fixture
def clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(llm.time, "monotonic", lambda: now[0])
    return now


def _chars(secs: float) -> str:
    """A finished sentence of `secs` of speech, and the first letter of the next one (which
    lets the TTS aggregator release it)."""
    return "x" * (int(secs * SPEECH_CHARS_PER_SEC) - 2) + ". N"


def test_text_ahead_of_playback_by_more_than_the_lead_pauses(clock):
    pace = PlaybackPace(lead_secs=5.0)
    pace.start_reply()
    pace.wrote(_chars(4.0))
    assert not pace.is_ahead()
    pace.wrote(_chars(2.0))
    assert pace.is_ahead(), "6 s of speech written, nothing played yet"
    pace.playback_started()
    clock[0] += 1.5
    assert not pace.is_ahead(), "1.5 s played: 4.5 s ahead"
    pace.wrote(_chars(1.0))
    assert pace.is_ahead()


def test_playback_about_to_run_dry_makes_the_next_words_urgent(clock):
    pace = PlaybackPace(lead_secs=5.0)
    pace.start_reply()
    pace.wrote(_chars(1.5))  # the first clause
    assert pace.is_running_short()
    pace.wrote(_chars(2.0))
    assert not pace.is_running_short()
    pace.playback_started()
    clock[0] += 2.0
    assert pace.is_running_short(), "1.5 s left to play"


def test_a_half_written_sentence_is_no_lead(clock):
    """The TTS speaks whole sentences: a long sentence not finished yet cannot be played, so
    the reply must not pause on it."""
    pace = PlaybackPace(lead_secs=5.0)
    pace.start_reply()
    pace.wrote("x" * int(10 * SPEECH_CHARS_PER_SEC))
    assert not pace.is_ahead() and pace.is_running_short()
    pace.wrote(" and so on. And")  # ends it: all of it counts now
    assert pace.is_ahead()


def test_a_sentence_counts_once_the_next_word_begins(clock):
    """pipecat's aggregator holds "... the ocean." until the next word shows it was no "Dr.":
    a reply that paused right after the period would leave the TTS nothing, and sit out as
    though it were 5 s ahead (the bench heard 2-3 s of silence mid-reply)."""
    pace = PlaybackPace(lead_secs=5.0)
    pace.start_reply()
    pace.wrote("x" * int(6 * SPEECH_CHARS_PER_SEC) + ".")
    assert not pace.is_ahead(), "the sentence is still held by the TTS aggregator"
    pace.wrote(" ")
    assert not pace.is_ahead()
    pace.wrote(" It")
    assert pace.is_ahead()


def test_a_line_counts_at_its_break(clock):
    """The TTS speaks a list item at its line break (FirstClauseAggregator)."""
    pace = PlaybackPace(lead_secs=5.0)
    pace.start_reply()
    pace.wrote("- " + "x" * int(6 * SPEECH_CHARS_PER_SEC))
    assert not pace.is_ahead()
    pace.wrote("\n")
    assert pace.is_ahead()


def test_without_audio_playback_is_assumed_after_a_grace_period(clock):
    """Audio that never starts (or kept playing from before) must not stall the reply."""
    pace = PlaybackPace(lead_secs=5.0)
    pace.start_reply()
    pace.wrote(_chars(6.0))
    clock[0] += PlaybackPace.NO_AUDIO_GRACE_SECS
    assert pace.is_ahead()
    clock[0] += 1.5
    assert not pace.is_ahead()


def test_each_reply_starts_from_nothing(clock):
    pace = PlaybackPace(lead_secs=5.0)
    pace.start_reply()
    pace.playback_started()
    pace.wrote(_chars(20.0))
    clock[0] += 30.0
    pace.start_reply()  # the next turn: its playback has not started
    pace.wrote(_chars(6.0))
    assert pace.is_ahead()


def test_audio_that_runs_out_mid_reply_starts_the_lead_from_nothing(clock):
    """Text the TTS cannot speak yet, or a voice faster than the estimate: once the bot has
    nothing left to play, the reply must write, whatever the estimate says."""
    pace = PlaybackPace(lead_secs=5.0)
    pace.start_reply()
    pace.playback_started()
    pace.wrote(_chars(30.0))
    clock[0] += 4.0
    assert pace.is_ahead(), "by the estimate 26 s are left to play"
    pace.playback_ran_out()
    assert not pace.is_ahead() and pace.is_running_short()
    pace.wrote(_chars(6.0))
    assert pace.is_ahead(), "ahead again once it has written more than the lead"
    pace.playback_started()
    clock[0] += 1.5
    assert not pace.is_ahead()
