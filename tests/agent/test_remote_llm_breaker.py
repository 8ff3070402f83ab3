"""A remote LLM that fails, hangs or is down: the bot apologises out loud, the shared circuit
breaker opens and stops sending requests, and a probe closes it again once the server heals."""

import asyncio
import json

import pytest

from tests.conftest import RunningServer, make_settings
from tests.fake_openai import ANSWER, FakeOpenAIServer
from tests.helpers import cer, normalise, read_pcm, transcribe, wer, words
from tests.ws_client import ANSWER_TIMEOUT_SECS, QUESTION, connect, speak, start
from voxline.bus import events
from voxline.pipeline.circuit_breaker import CircuitBreaker

APOLOGY = "Sorry, I can't think right now. Please try again in a moment."
RESET_SECS = 30.0


@pytest.fixture
async def fake_llm():
    server = await FakeOpenAIServer().start()
    yield server
    await server.stop()


class FakeClock:
    """Monotonic seconds the test moves on by hand: the breaker's reset time without sleeping."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _turn(ws, pcm: bytes, reply: str) -> tuple[list[dict], bytes]:
    """Speak `pcm` (then silence, like a live microphone); return every event and the bot audio
    until the bot stops speaking after the last word of `reply` (a pause between its sentences
    can stop the bot's speech early)."""
    last_word = normalise(reply).split()[-1]

    async def microphone():
        await speak(ws, pcm)
        while True:
            await speak(ws, bytes(16000 * 2))

    seen, audio = [], bytearray()
    task = asyncio.create_task(microphone(), name="test-microphone")
    try:
        async with asyncio.timeout(ANSWER_TIMEOUT_SECS):
            while True:
                message = await ws.recv()
                if isinstance(message, bytes):
                    audio += message
                    continue
                seen.append(event := json.loads(message))
                if (event["type"] == "bot.stopped_speaking"
                        and normalise(_spoken(seen)).endswith(last_word)):
                    return seen, bytes(audio)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _spoken(seen: list[dict]) -> str:
    return " ".join(e["text"] for e in seen if e["type"] == "bot.text")


def _errors(seen: list[dict]) -> list[str]:
    return [e["code"] for e in seen if e["type"] == "error"]


async def _llm_health(server, health: str) -> events.ComponentStatus:
    """The next status event of this worker whose LLM component has `health`."""
    subscription = server.worker.bus.subscribe(lambda e: isinstance(e, events.ServiceStatus))
    try:
        async with asyncio.timeout(10):
            async for status in subscription:
                llm = next(c for c in status.components if c.name == "llm")
                if llm.health == health:
                    return llm
    finally:
        subscription.close()
    raise AssertionError("unreachable")


async def test_failures_are_apologised_for_then_the_circuit_opens_and_recovers(
    fake_llm, models, speech,
):
    settings = make_settings(llm={
        "provider": "openai", "base_url": fake_llm.base_url, "remote_model": "fake",
        "first_token_timeout_secs": 1.0, "breaker_failure_threshold": 2,
        "breaker_reset_secs": RESET_SECS, "apology_text": APOLOGY,
    })
    server = RunningServer(settings, models)
    clock = FakeClock()
    server.host.llm_breaker = breaker = CircuitBreaker(
        failure_threshold=2, reset_secs=RESET_SECS, clock=clock)
    await server.start()
    question = read_pcm(speech(QUESTION))
    try:
        async with connect(server.ws_url) as ws:
            await start(ws)

            # 1. The server answers 500: the apology is heard, as text and as audio.
            fake_llm.mode = "error"
            seen, audio = await _turn(ws, question, APOLOGY)
            assert _errors(seen) == ["llm_unavailable"], seen
            assert wer(APOLOGY, _spoken(seen)) < 0.2, seen
            heard = transcribe(models, audio, 16000)
            assert cer(APOLOGY, heard) < 0.3, heard  # characters: Piper varies by run
            assert fake_llm.requests == 1
            assert breaker.state == "closed" and breaker.consecutive_failures == 1

            # 2. The server hangs: after first_token_timeout_secs, the apology again.
            fake_llm.mode = "hang"
            seen, audio = await _turn(ws, question, APOLOGY)
            assert _errors(seen) == ["llm_timeout"], seen
            assert wer(APOLOGY, _spoken(seen)) < 0.2, seen
            assert len(audio) > 16000 * 2, "the apology was not spoken"
            assert fake_llm.requests == 2
            assert breaker.state == "open"
            down = await _llm_health(server, "down")
            assert "circuit open after 2 failures" in down.detail, down

            # 3. Open: the server is healthy again, but no request is sent; apology at once.
            fake_llm.mode = "healthy"
            seen, audio = await _turn(ws, question, APOLOGY)
            assert _errors(seen) == ["llm_circuit_open"], seen
            assert wer(APOLOGY, _spoken(seen)) < 0.2, seen
            assert fake_llm.requests == 2, "a request went out while the circuit was open"

            # 4. The reset time passes: one probe goes out, succeeds, answers resume.
            clock.now += RESET_SECS
            assert breaker.state == "half_open"
            seen, audio = await _turn(ws, question, ANSWER)
            assert _errors(seen) == [], seen
            assert {"paris"} <= words(_spoken(seen)), seen
            assert wer(ANSWER, _spoken(seen)) < 0.2, seen
            assert fake_llm.requests == 3
            assert breaker.state == "closed" and breaker.consecutive_failures == 0
            await _llm_health(server, "ok")

        metrics = server.worker.metrics.render().decode()
        for kind in ("llm_unavailable", "llm_timeout", "llm_circuit_open"):
            assert f'voxline_errors_total{{kind="{kind}"}} 1.0' in metrics, metrics
    finally:
        await server.stop()
