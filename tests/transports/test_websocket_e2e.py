"""A spoken question over a real WebSocket on 127.0.0.1 gets a spoken, relevant answer."""

import pytest

from tests.helpers import LoopLagMonitor, cer, transcribe, wer, words
from voxline.talk import talk

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
async def conversation(server, speech, tmp_path_factory):
    """One full turn through `voxline talk`, with the event loop watched throughout."""
    out = tmp_path_factory.mktemp("talk") / "reply.wav"
    async with LoopLagMonitor() as lag:
        result = await talk(url=server.ws_url, wav=speech(QUESTION), out=out, timeout_secs=60,
                            printer=lambda line: None)
    return result, lag


async def test_user_words_are_transcribed(conversation):
    result, _ = conversation
    kinds = [e["type"] for e in result.events]
    assert "transcript.partial" in kinds, "a partial transcript should arrive while speaking"
    assert kinds.index("transcript.partial") < kinds.index("transcript.final")
    finals = result.texts("transcript.final")
    assert finals, f"no final transcript in {result.events}"
    assert wer(QUESTION, finals[-1]) <= 0.2, finals


async def test_reply_audio_is_relevant_speech(conversation, models):
    result, _ = conversation
    seconds = len(result.reply_pcm) / 2 / result.sample_rate
    assert seconds > 0.5, f"only {seconds:.2f}s of reply audio"
    heard = transcribe(models, bytes(result.reply_pcm), result.sample_rate)
    assert words(heard) & {"paris", "france", "capital"}, f"reply was {heard!r}"
    spoken = " ".join(result.texts("bot.text"))
    # Piper samples its voice (noise_scale), so the audio and Whisper's spelling of it vary by
    # run: compare characters, not words.
    assert cer(spoken, heard) < 0.3, (spoken, heard)


async def test_events_arrive_in_order_with_timings(conversation):
    result, _ = conversation
    kinds = [e["type"] for e in result.events]
    assert kinds[0] == "ready"
    order = ["transcript.final", "bot.started_speaking", "bot.text", "bot.stopped_speaking"]
    positions = [kinds.index(kind) for kind in order]
    assert positions == sorted(positions), kinds
    metrics = next(e for e in result.events if e["type"] == "turn.metrics")["stages"]
    for stage in ("stt_secs", "llm_secs", "tts_secs", "total_secs"):
        assert 0 < metrics[stage] < 10, (stage, metrics)
    parts = sum(v for k, v in metrics.items() if k != "total_secs")
    assert metrics["total_secs"] == pytest.approx(parts, abs=0.01)


async def test_whole_reply_is_sent_and_was_all_spoken(conversation):
    result, _ = conversation
    replies = [e for e in result.events if e["type"] == "bot.reply"]
    assert len(replies) == 1, result.events
    assert replies[0]["interrupted"] is False
    spoken = " ".join(result.texts("bot.text"))
    assert words(replies[0]["text"]) == words(spoken), (replies[0], spoken)


async def test_event_loop_never_blocked_during_a_turn(conversation):
    _, lag = conversation
    assert lag.max_lag_secs < 0.1, f"event loop blocked for {lag.max_lag_secs * 1000:.0f} ms"
