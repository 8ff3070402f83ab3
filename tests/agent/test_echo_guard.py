"""The echo guard in a real session over /ws: an echo is never heard, and it is counted."""

import asyncio
import urllib.request

from tests.conftest import RunningServer, make_settings
from tests.pipeline.test_reply_writer import PARROT, PARROT_EXAMPLES
from voxline.bus import events
from voxline.pipeline.echo import echoed_sentences
from voxline.talk import talk

STATEMENT = "My brother is moving to a new city next month."
PARROT_AGENT = {
    "system_prompt": PARROT,
    "example_exchanges": [{"user": u, "assistant": a} for u, a in PARROT_EXAMPLES],
    "echo_fallback": "Oh, really?",
}


def _metrics(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        return response.read().decode()


async def _talk_to_a_parrot(settings, models, speech):
    """One statement to a server whose persona says everything back; what the client heard,
    the bus's echo and turn events, and /metrics after them."""
    server = await RunningServer(settings, models).start()
    seen = server.worker.bus.subscribe(
        lambda e: isinstance(e, events.EchoGuarded | events.TurnMetrics))
    try:
        result = await talk(url=server.ws_url, wav=speech(STATEMENT), out=None,
                            timeout_secs=60, printer=lambda line: None)
        got = []
        async with asyncio.timeout(10):
            while not any(isinstance(e, events.TurnMetrics) for e in got):
                got.append(await seen.get())
        for _ in range(100):  # /metrics follows the bus off the voice path: poll, bounded
            metrics = await asyncio.to_thread(_metrics, server.http_url)
            if "voxline_llm_echo_guard_total{" in metrics:
                break
            await asyncio.sleep(0.05)
    finally:
        seen.close()
        await server.stop()
    return result, got, metrics


async def test_a_parroted_statement_is_never_spoken_and_is_counted(models, speech):
    # No repeat penalty: with it even this persona seldom says the words back.
    settings = make_settings(agent=PARROT_AGENT, llm={"repeat_penalty": 1.0})
    result, got, metrics = await _talk_to_a_parrot(settings, models, speech)
    heard = result.texts("transcript.final")[-1]
    spoken = " ".join(result.texts("bot.text"))
    assert spoken and not echoed_sentences(spoken, heard), (heard, spoken)
    guarded = [e for e in got if isinstance(e, events.EchoGuarded)]
    assert guarded and guarded[0].attempt == 1
    assert echoed_sentences(guarded[0].text, heard), guarded[0].text
    turn = next(e for e in got if isinstance(e, events.TurnMetrics))
    assert turn.echo_guard_hits == len(guarded)
    assert 'voxline_llm_echo_guard_total{outcome="written_again"} 1.0' in metrics
    if len(guarded) == 2:  # the second try said it back too: the fallback was spoken
        assert spoken == "Oh, really?"
        assert 'voxline_llm_echo_guard_total{outcome="fallback"} 1.0' in metrics


async def test_without_the_guard_the_parrot_is_heard(models, speech):
    """The check above can fail: the same persona, unguarded, says the words back."""
    settings = make_settings(agent={**PARROT_AGENT, "echo_guard": False},
                             llm={"repeat_penalty": 1.0})
    result, got, _ = await _talk_to_a_parrot(settings, models, speech)
    heard = result.texts("transcript.final")[-1]
    assert echoed_sentences(" ".join(result.texts("bot.text")), heard)
    assert not [e for e in got if isinstance(e, events.EchoGuarded)]
