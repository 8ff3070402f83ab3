"""The turn-taking bench's scoring on hand-made timelines: what the user heard, 100 ms a
character ('#' bot audio played, '.' silence), with the user's words and the server's events
placed by hand."""

import pytest

from voxline.bench.turn_report import turn_taking_table
from voxline.bench.turn_scoring import (
    CallRecord,
    Utterance,
    first_audible,
    last_audible,
    playback_stop,
    rate,
    score_backchannel,
    score_complete_turn,
    score_echo,
    score_interruption,
    score_noise,
    silences,
)
from voxline.bench.turn_taking import (
    SUMMARIES,
    summarise_conversation,
    summarise_echo,
    summarise_mid_pause,
    summarise_noisy_question,
)


def heard(timeline: str, events: list[tuple[float, str]] = (), **event_fields) -> CallRecord:
    """A record of 100 ms frames; events given as (seconds, type)."""
    return CallRecord(played=[c == "#" for c in timeline.replace(" ", "")],
                      events=[(t, {"type": kind, **event_fields.get(kind, {})})
                              for t, kind in events], frame_secs=0.1)


def test_first_and_last_audible_are_frame_edges():
    record = heard(".... ###. .##.")
    assert first_audible(record, 0.0) == pytest.approx(0.4)
    assert first_audible(record, 0.75) == pytest.approx(0.9)
    assert first_audible(record, 1.2) is None
    assert last_audible(record, 0.0) == pytest.approx(1.1)  # end of the frame at 1.0 s
    assert last_audible(record, 0.0, 0.8) == pytest.approx(0.7)


def test_silences_count_a_gap_at_the_start_but_not_after_the_reply():
    record = heard("##.. ###. ..## ....")
    assert silences(record, 0.2, 2.0) == [(pytest.approx(0.2), pytest.approx(0.2)),
                                          (pytest.approx(0.7), pytest.approx(0.3))]


def test_a_gap_between_sentences_is_not_a_stop_but_a_long_silence_is():
    # 0.4 s gap at 0.5 s (a sentence boundary), then audio until 1.5 s, then silence.
    record = heard("##### .... ###### ..........")
    assert playback_stop(record, 0.2) == pytest.approx(1.5)
    assert playback_stop(record, 1.6) == pytest.approx(1.6)  # already silent: no delay
    assert playback_stop(heard("#" * 30), 0.2) is None  # never stopped


def test_a_pause_mid_sentence_answered_once_after_the_end_succeeds():
    said = Utterance("pizza", "I would like to order a pizza.", 0.5, 3.0)
    record = heard("." * 38 + "####", [(3.8, "turn.metrics")])
    item = score_complete_turn(record, said)
    assert item["ok"] and not item["is_early"] and item["answers"] == 1
    assert item["v2v_secs"] == pytest.approx(0.8)


def test_bot_audio_during_the_pause_fails_even_if_answered_again_after():
    said = Utterance("pizza", "I would like to order a pizza.", 0.5, 3.0)
    # The bot starts at 1.6 s, in the pause, is cut, then answers the whole sentence.
    record = heard("................####. ......... ####",
                   [(1.6, "turn.metrics"), (2.1, "interrupted"), (3.9, "turn.metrics")])
    item = score_complete_turn(record, said)
    assert item["is_early"] and item["answers"] == 2 and not item["ok"]


def test_two_answers_after_the_end_fail():
    said = Utterance("q", "q", 0.0, 0.5)
    record = heard("...... ### ..### ", [(1.2, "turn.metrics"), (1.7, "turn.metrics")])
    assert not score_complete_turn(record, said)["ok"]
    assert score_complete_turn(record, said, end=1.5)["ok"]  # the window bounds the count


def test_a_reply_that_kept_going_over_a_backchannel():
    question = Utterance("story", "Tell me a story.", 0.0, 1.0)
    yeah = Utterance("yeah", "yeah", 3.0, 3.4)
    # Reply from 1.5 s; a 0.3 s gap between sentences after the backchannel; ends at 5.6 s.
    record = heard("............... ############### ... ###### .....",
                   [(1.5, "turn.metrics")])
    item = score_backchannel(record, question, yeah, end=5.0)
    assert item["is_valid"] and item["ok"]
    assert item["longest_silence_secs"] == pytest.approx(0.3) and item["pauses"] == 1
    assert item["v2v_secs"] == pytest.approx(0.5)


def test_a_reply_cut_by_a_backchannel_and_answering_it_fails():
    question = Utterance("story", "Tell me a story.", 0.0, 1.0)
    yeah = Utterance("yeah", "yeah", 3.0, 3.4)
    record = heard("............... ################ ............... ####",
                   [(1.5, "turn.metrics"), (3.3, "interrupted"), (4.6, "turn.metrics")])
    item = score_backchannel(record, question, yeah, end=5.0)
    assert item["interrupted"] and item["extra_answers"] == 1 and not item["ok"]
    assert item["longest_silence_secs"] == pytest.approx(1.5)


def test_a_long_pause_without_interruption_still_fails_the_backchannel():
    """The bot holding its audio for 0.8 s to judge a "yeah" is heard as a stall."""
    question = Utterance("story", "Tell me a story.", 0.0, 1.0)
    yeah = Utterance("yeah", "yeah", 3.0, 3.4)
    record = heard("............... ################ ........ ######",
                   [(3.1, "bot.paused"), (3.9, "bot.resumed")])
    item = score_backchannel(record, question, yeah, end=4.5)
    assert not item["interrupted"] and not item["ok"] and item["paused_events"] == 1


def test_a_backchannel_after_the_reply_ended_is_not_counted():
    question = Utterance("story", "Tell me a story.", 0.0, 1.0)
    yeah = Utterance("yeah", "yeah", 3.0, 3.4)
    record = heard("............... #### ..............")
    item = score_backchannel(record, question, yeah, end=3.5)
    assert not item["is_valid"]
    assert rate([item, {"ok": True}]) == 1.0  # only valid items count


def test_an_interruption_measures_onset_to_silence_and_the_answer():
    interruption = Utterance("stop", "Wait, stop.", 2.0, 3.0)
    record = heard("#################### #### ............ #####",
                   [(2.3, "interrupted"), (3.6, "turn.metrics")])
    item = score_interruption(record, interruption, end=5.0)
    assert item["is_valid"] and item["interrupted"] and item["answered"]
    assert item["stop_secs"] == pytest.approx(0.4)
    assert item["v2v_secs"] == pytest.approx(0.6)  # end of "wait, stop" → the answer


def test_a_bot_that_talks_on_over_the_user_never_stops():
    interruption = Utterance("stop", "Wait, stop.", 2.0, 3.0)
    item = score_interruption(heard("#" * 50), interruption, end=5.0)
    assert item["stop_secs"] is None and not item["answered"]
    summary = SUMMARIES["interruption"]([item])
    assert summary["stopped"] == 0 and not summary["meets"]


def test_an_echo_that_cuts_the_reply_fails_and_a_clean_reply_passes():
    question = Utterance("story", "Tell me a story.", 0.0, 1.0)
    cut = heard("............ ###.............. ####",
                [(1.2, "turn.metrics"), (1.5, "interrupted"), (3.0, "turn.metrics")])
    assert not score_echo(cut, question, end=3.6)["ok"]
    whole = heard("............ #################", [(1.2, "turn.metrics"), (2.9, "bot.reply")],
                  **{"bot.reply": {"interrupted": False, "text": "Once."}})
    item = score_echo(whole, question, end=3.0)
    assert item["ok"] and item["is_complete"]


def test_noise_that_got_a_reply_fails():
    assert score_noise(heard("." * 30), 0.0, 3.0)["ok"]
    replied = score_noise(heard("." * 20 + "#####"), 0.0, 3.0)
    assert replied["is_audible"] and not replied["ok"]


def _turn(label: str, pause: float, ok: bool, v2v: float) -> dict:
    return {"label": label, "pause_secs": pause, "ok": ok, "is_early": not ok,
            "answers": 1, "v2v_secs": v2v}


def test_mid_pause_summary_rates_per_pause_and_the_extra_wait():
    items = [_turn("a", 0.6, False, 0.5), _turn("a", 1.5, True, 1.4), _turn("b", 0.6, True, 1.2),
             _turn("b", 1.5, True, 1.6), _turn("a", 0.0, True, 0.8), _turn("b", 0.0, True, 1.0),
             {"label": "c", "pause_secs": 1.0, "is_valid": False, "ok": False, "error": "x"}]
    summary = summarise_mid_pause(items)
    assert summary["rate"] == 0.75 and summary["n"] == 4
    assert summary["rate_by_pause"] == {"0.6": 0.5, "1.5": 1.0}
    assert summary["extra_wait_secs"] == pytest.approx(1.4 - 0.9)
    assert not summary["meets"] and summary["errors"] == ["c: x"]


def test_conversation_meets_its_latency_target_only_at_both_quantiles():
    fast = [{"ok": True, "v2v_secs": 0.6}] * 19 + [{"ok": True, "v2v_secs": 1.0}]
    assert summarise_conversation(fast)["meets"]
    slow_tail = [{"ok": True, "v2v_secs": 0.6}] * 18 + [{"ok": True, "v2v_secs": 1.3}] * 2
    assert not summarise_conversation(slow_tail)["meets"]


def test_noisy_question_wer_gap_in_points():
    items = [{"condition": "clean", "reference": "What is the capital of France?",
              "transcript": "What is the capital of France?", "answered": True,
              "v2v_secs": 1.0},
             {"condition": "noisy", "reference": "What is the capital of France?",
              "transcript": "What is the capital of Franz?", "answered": True,
              "v2v_secs": 1.1}]
    summary = summarise_noisy_question(items)
    assert summary["clean"]["wer"] == 0 and summary["wer_gap_points"] == pytest.approx(100 / 6)
    assert not summary["meets"]


def test_echo_summary_reads_the_minus_12_db_runs_and_the_barge_ins():
    items = [{"kind": "echo", "gain_db": -12.0, "ok": True, "v2v_secs": 1.0},
             {"kind": "echo", "gain_db": -12.0, "ok": False, "v2v_secs": 1.0},
             {"kind": "echo", "gain_db": -6.0, "ok": False, "v2v_secs": 1.0},
             {"kind": "barge_in", "gain_db": -12.0, "is_valid": True, "stop_secs": 0.4,
              "answered": True, "v2v_secs": 1.2}]
    summary = summarise_echo(items)
    assert summary["rate"] == 0.5 and summary["rate_by_gain_db"] == {"-6": 0.0, "-12": 0.5}
    assert summary["barge_in"]["meets"] and not summary["meets"]


def test_the_table_has_a_row_per_scenario_with_its_target():
    items = {"mid_pause": [_turn("a", 0.6, True, 1.0), _turn("a", 0.0, True, 0.8)],
             "conversation": [{"ok": True, "v2v_secs": 0.6}]}
    report = {"options": {"short": "True"}, "elapsed_secs": 60.0, "voices": ["en-us+m3"],
              "kokoro": "off (short mode)",
              "scenarios": {name: {"summary": SUMMARIES[name](its)}
                            for name, its in items.items()}}
    printed = turn_taking_table(report)
    assert "(a) mid-sentence pause" in printed and "100% of 1 once after end" in printed
    assert "wait +0.20s vs whole" in printed
    assert "(g) conversation" in printed and "p50 ≤0.7 s" in printed


def test_a_long_gap_the_old_reply_resumes_from_is_not_a_stop():
    """A sentence that synthesised slowly (1 s of silence) after the onset, then the same
    reply going on: the stop is where it went silent for good before the new answer."""
    interruption = Utterance("q", "Hold on, what is the capital of Spain?", 1.0, 3.0)
    record = heard("############ .......... ######## ........... ####",
                   [(2.0, "interrupted"), (4.1, "turn.metrics")])
    item = score_interruption(record, interruption, end=4.5)
    assert item["stop_secs"] == pytest.approx(2.0)  # at 3.0 s, not at the gap at 1.2 s
    assert item["answered"] and item["v2v_secs"] == pytest.approx(1.1)
