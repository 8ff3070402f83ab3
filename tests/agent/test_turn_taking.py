"""A pause mid-sentence longer than the VAD window does not make the bot answer half a question."""

from tests.browser import mic_file
from voxline.talk import talk


async def test_pause_after_a_dangling_word_is_not_the_end_of_the_turn(server, speech, tmp_path):
    # Not "What is the capital of": tiny.en often hears "...capital on?" there, which reads
    # as finished; "I would like to" comes out the same at any lead-in or window.
    question = mic_file(tmp_path / "paused.wav",
                        (speech("I would like to"), 0.5), (speech("order a pizza."), 0.0))
    result = await talk(url=server.ws_url, wav=question, out=None, timeout_secs=60,
                        printer=lambda line: None)
    kinds = [e["type"] for e in result.events]
    finals = result.texts("transcript.final")
    assert len(finals) == 2, finals  # the VAD closed twice ...
    assert kinds.count("turn.metrics") == 1  # ... but the bot answered once,
    assert kinds.index("bot.started_speaking") > kinds.index("transcript.final") + 1  # after both
    assert "like" in finals[0].lower() and finals[1].strip()
