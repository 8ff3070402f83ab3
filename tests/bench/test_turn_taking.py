"""`voxline bench --turn-taking` in short mode against the test server (SmolLM2, headphones
unless a scenario puts the user in a leaky room): one run of every scenario, then one test per
scenario asserting its outcome. The backchannel and echo tests assert targets that need the
server's backchannel handling (bot.paused/bot.resumed) and echo cancellation (c6c5c6c).

The figures are real time on a shared 2-core machine: a loaded machine (other test runs)
stretches voice-to-voice, and with it every "answered within 20 s"."""

import json

import numpy as np
import pytest
from loguru import logger

from voxline.bench.prompts import SAMPLE_RATE
from voxline.bench.turn_audio import (
    ESPEAK_VOICES,
    Speaker,
    active_rms,
    babble,
    music,
    pink_noise,
    rms,
    to_float,
    with_noise,
)
from voxline.bench.turn_report import turn_taking_table
from voxline.bench.turn_taking import TurnTakingOptions, run_scenarios
from voxline.cli import _parser


@pytest.fixture(scope="module")
async def report(server):
    """The short run (about 3 minutes): every scenario once against the test server. What
    the STT heard and the judge made of it is kept for failure messages (the run happens in
    this fixture, whose log pytest shows for no test)."""
    heard: list[str] = []
    sink = logger.add(heard.append, level="DEBUG", format="{time:HH:mm:ss.SSS} {message}",
                      filter=lambda r: r["name"] in ("voxline.pipeline.stt",
                                                     "voxline.pipeline.barge_in",
                                                     "voxline.pipeline.echo_cancellation",
                                                     "voxline.bench.turn_taking"))
    try:
        result = await run_scenarios(server.ws_url, TurnTakingOptions(short=True))
    finally:
        logger.remove(sink)
    print(turn_taking_table(result))  # shown with -s, and on failure
    result["heard"] = heard
    return result


def _summary(report: dict, name: str) -> dict:
    return report["scenarios"][name]["summary"]


def _heard_during(report: dict, name: str) -> str:
    """The STT's transcripts and the judge's verdicts while scenario `name` ran."""
    text = "".join(report["heard"])
    start = text.find(f"turn-taking bench: {name}")
    end = text.find("turn-taking bench:", start + 1)
    return text[start: end if end > 0 else None]


async def test_every_scenario_ran_without_call_errors(report):
    for name, block in report["scenarios"].items():
        assert not block["summary"]["errors"], (name, block["summary"]["errors"])
        assert block["items"], name


async def test_a_pause_mid_sentence_is_answered_once_after_the_end(report):
    """(a) 0.6 s and 1.5 s pauses after a function word: no bot audio before the sentence
    is over, exactly one answer."""
    summary = _summary(report, "mid_pause")
    assert summary["n"] == 4
    # "I would like to … order a pizza": the pause's transcript ends on "to" (unfinished).
    # The rate over all sentences is the bench's figure: tiny.en sometimes hears "about the …"
    # as "about that?", a finished question, which neither the words nor smart-turn catch
    # (docs/performance.md).
    pizza = [i for i in report["scenarios"]["mid_pause"]["items"] if i["label"] != "pizza-whole"
             and i["label"].startswith("pizza")]
    assert pizza and all(i["ok"] for i in pizza), pizza
    assert summary["whole_rate"] == 1.0 and summary["extra_wait_secs"] is not None


async def test_an_interruption_silences_the_bot_and_is_answered(report, server, artifacts,
                                                                request):
    """(c) Talking over a long reply: the played audio stops within 0.5 s of the onset
    (p95), and the bot answers the interruption.

    Known open defect (#18): in about one full test run of two, one of the two interruptions
    is neither stopped nor answered; isolated runs never show it. Until it is traced, a miss
    is printed in full (what the STT heard, what the judge decided) and the scenario runs once
    more; a miss both times fails."""
    summary = _summary(report, "interruption")
    if summary["stopped"] != 2:
        # Kept in full (an assertion message is cut short) and announced in the run's output,
        # so a miss that the second run hides is still seen.
        details = artifacts / "missed-interruption.txt"
        details.write_text(json.dumps(report["scenarios"]["interruption"]["items"], indent=1,
                                      default=str) + "\n" + _heard_during(report, "interruption"))
        request.config.pluginmanager.get_plugin("terminalreporter").write_line(
            f"\nNOTE: an interruption was missed (open #18), running it once more; what the "
            f"STT heard and the judge decided: {details}")
        again = await run_scenarios(server.ws_url, TurnTakingOptions(short=True,
                                                                     scenarios=("interruption",)))
        summary = again["scenarios"]["interruption"]["summary"]
    assert summary["n"] == 2 and summary["stopped"] == 2, summary
    # The 0.5 s target is the bench's figure; here, a bound a loaded CI machine keeps.
    assert summary["stop_secs"]["max"] <= 1.0, summary["stop_secs"]
    assert summary["answered_rate"] == 1.0


async def test_noise_alone_gets_no_reply(report):
    """(e) Pink noise, babble and music-like tones, no words: no turn, no bot audio."""
    summary = _summary(report, "noise")
    assert summary["by_kind"] == {"pink": True, "babble": True, "music": True}, summary


async def test_a_question_in_noise_is_answered_and_understood(report):
    """(f) The same question clean and in pink noise at 10 dB SNR."""
    summary = _summary(report, "noisy_question")
    assert summary["clean"]["answered_rate"] == 1.0
    assert summary["noisy"]["answered_rate"] == 1.0
    assert summary["wer_gap_points"] <= 5, report["scenarios"]["noisy_question"]["items"]


async def test_a_conversation_is_answered_turn_by_turn(report):
    """(g) Three complete turns in one call: each answered once, after its end."""
    summary = _summary(report, "conversation")
    assert summary["turns"] == 3 and summary["answered_once_rate"] == 1.0, summary
    assert summary["v2v_secs"]["n"] == 3 and summary["v2v_secs"]["max"] < 5.0


async def test_a_backchannel_does_not_stop_the_reply(report):
    """(b) "yeah" 1–3 s into a long reply: no interruption, no answer to it, no gap over
    0.5 s in what the user hears."""
    summary = _summary(report, "backchannel")
    assert summary["n"] == 1, report["scenarios"]["backchannel"]["items"]
    assert summary["rate"] >= 0.9, report["scenarios"]["backchannel"]["items"]


async def test_the_bots_own_echo_does_not_cut_its_reply(report):
    """(d) The reply played into a room leaking it back at −12 dB: not cut by itself."""
    summary = _summary(report, "echo")
    assert summary["rate_by_gain_db"] == {"-12": 1.0}, report["scenarios"]["echo"]["items"]


async def test_a_barge_in_over_the_echo_silences_the_bot(report):
    """(d) With the echo in the microphone, the user's interruption still stops the bot
    within 0.6 s, and not before the user spoke."""
    barge_in = _summary(report, "echo")["barge_in"]
    assert barge_in["cut_by_echo_first"] == 0 and barge_in["n"] == 1, barge_in
    # The 0.6 s target is the bench's figure; here, a bound a loaded CI machine keeps.
    assert barge_in["stopped"] == 1 and barge_in["stop_secs"]["max"] <= 1.0, barge_in


def test_the_cli_takes_the_turn_taking_flags():
    args = _parser().parse_args(["bench", "--turn-taking", "--short", "--url",
                                 "ws://127.0.0.1:1/ws", "--echo-cancellation-field"])
    assert args.turn_taking and args.short and args.echo_cancellation_field


def test_noise_beds_have_their_level_and_length():
    rng = np.random.default_rng(1)
    voices = [(np.sin(np.arange(8000) * (0.05 + i / 50)) * 8000).astype(np.int16).tobytes()
              for i in range(3)]
    for level, bed in ((0.03, pink_noise(2.0, 0.03, rng)), (0.04, music(2.0, 0.04, rng)),
                       (0.02, babble(2.0, 0.02, voices, rng))):
        assert len(bed) == 2 * SAMPLE_RATE
        assert rms(bed) == pytest.approx(level, rel=1e-3)


def test_a_paused_sentence_has_its_pause_and_noise_its_snr(tmp_path):
    speaker = Speaker(tmp_path, enable_kokoro=False)
    voice = ESPEAK_VOICES[1]
    paused = speaker.say_with_pause("I would like to", "order a pizza.", 1.0, voice, "pizza")
    whole = speaker.say("I would like to order a pizza.", voice)
    # The pause adds about its length (espeak's own word gap is shorter than 0.1 s).
    assert 0.9 < paused.speech_end_secs - whole.speech_end_secs < 1.2
    samples = to_float(paused.pcm)
    frames = np.sqrt(np.mean(samples[: len(samples) // 320 * 320].reshape(-1, 320) ** 2, 1))
    longest_quiet = max(len(run) for run in "".join(
        "." if level < 0.01 else "#" for level in frames).split("#"))
    assert 0.95 <= longest_quiet * 0.02 <= 1.1
    noisy = with_noise(whole, pink_noise(10.0, 0.1, np.random.default_rng(2)), 10.0)
    noise_only = to_float(noisy.pcm) - to_float(whole.pcm)
    snr = 20 * np.log10(active_rms(whole.pcm) / rms(noise_only))
    assert snr == pytest.approx(10.0, abs=0.3)
