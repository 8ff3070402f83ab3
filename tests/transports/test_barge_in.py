"""Barge-in end to end: talking over the bot stops its audio (held at once while the words are
judged) and emits `interrupted`."""

import asyncio
import json
import time

import websockets

from tests.helpers import read_pcm, wer
from voxline.bus import events

CHUNK = 640  # 20 ms at 16 kHz
STORY = "Please tell me a short story about a friendly dragon."
FOLLOW_UP = "Tell me something interesting about the ocean."


async def _speak(ws, pcm: bytes, trailing_silence_secs: float = 1.2) -> None:
    """Send like a microphone: real time, 20 ms frames, then some silence."""
    audio = pcm + bytes(int(16000 * trailing_silence_secs) * 2)
    started = time.monotonic()
    for i, offset in enumerate(range(0, len(audio), CHUNK)):
        await ws.send(audio[offset: offset + CHUNK])
        await asyncio.sleep(max(0.0, started + (i + 1) * 0.02 - time.monotonic()))


async def test_speech_over_the_bot_stops_its_audio_and_is_answered(server, speech):
    bus_events = server.worker.bus.subscribe()
    timeline: list[tuple[float, str, object]] = []  # (arrival, kind, payload)
    async with websockets.connect(server.ws_url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
        ready = json.loads(await ws.recv())
        talker = asyncio.create_task(_speak(ws, read_pcm(speech(STORY))))

        async def receive_until(kind: str, count: int = 1):
            seen = 0
            while seen < count:
                message = await asyncio.wait_for(ws.recv(), 30)
                if isinstance(message, bytes):
                    timeline.append((time.monotonic(), "audio", len(message)))
                    continue
                event = json.loads(message)
                timeline.append((time.monotonic(), event["type"], event))
                seen += event["type"] == kind

        await receive_until("bot.started_speaking")
        await talker
        barge_in_at = time.monotonic()
        talker = asyncio.create_task(_speak(ws, read_pcm(speech(FOLLOW_UP)), 2.0))
        await receive_until("interrupted")
        interrupted_at = timeline[-1][0]
        await receive_until("bot.started_speaking")  # the follow-up is answered
        await talker
    await asyncio.sleep(0)

    # The bot's audio stopped within a few hundred ms of the user starting to talk over it
    # (it is held from agent.barge_in_hold_secs), and the words then interrupted it.
    last_audio = max(t for t, kind, _ in timeline if kind == "audio"
                     and t < interrupted_at and not _answer_started(timeline, t))
    assert last_audio - barge_in_at < 0.8, f"took {last_audio - barge_in_at:.2f}s"
    assert interrupted_at - barge_in_at < 2.0, f"took {interrupted_at - barge_in_at:.2f}s"
    late_audio = sum(n for t, kind, n in timeline if kind == "audio"
                     and interrupted_at < t < interrupted_at + 1.0
                     and not _answer_started(timeline, t))
    assert late_audio <= 16000 * 2 * 0.1, f"{late_audio} bytes of bot audio after `interrupted`"

    finals = [p["text"] for _, kind, p in timeline if kind == "transcript.final"]
    assert wer(FOLLOW_UP, finals[-1]) <= 0.25, finals

    # What the bot "said" in turn 1 (tts.spoken) is only part of what the LLM wrote:
    # the unspoken rest was dropped, and that is what the history keeps.
    session = ready["session_id"]
    published = []
    while not bus_events.empty():
        event = bus_events.get_nowait()
        if event.session_id == session:
            published.append(event)
    bus_events.close()
    # (The LLM may well have finished writing before the user interrupted the audio.)
    replies = [e for e in published if isinstance(e, events.LLMResponseReady)]
    assert replies, published
    assert any(isinstance(e, events.TurnInterrupted) for e in published)
    first_turn_spoken = []
    for e in published:
        if isinstance(e, events.TurnInterrupted):
            break
        if isinstance(e, events.BotSpoken):
            first_turn_spoken.append(e.text)
    assert len(" ".join(first_turn_spoken)) < len(replies[0].text)


def _answer_started(timeline, t: float) -> bool:
    """True once the bot has started answering the follow-up (its audio is legitimate)."""
    starts = [at for at, kind, _ in timeline if kind == "bot.started_speaking"]
    return len(starts) >= 2 and t >= starts[1]
