"""A processor that raises in one session ends that session with an error event; a session
running beside it on the same shared models answers as if nothing happened."""

import asyncio
import dataclasses

import pytest

from tests.bots.discord.player import ThreadPlayer
from tests.helpers import feed_speech, read_pcm
from voxline.agent import Persona, SessionOptions, run_session
from voxline.bots.discord.floor import PlaybackFloor
from voxline.bots.discord.transport import SpeakerTransport
from voxline.bus import events
from voxline.bus.inprocess import InProcessBus

pytestmark = pytest.mark.slow


class BrokenSynthesizer:
    """A TTS engine whose every synthesis fails (a processor raising mid-session)."""

    def __init__(self, real):
        self.name, self.sample_rate = real.name, real.sample_rate

    def synthesize(self, text: str):
        raise RuntimeError("synthesizer crashed")


async def test_a_failing_session_ends_alone(models, settings, speech):
    bus = InProcessBus()
    subscription = bus.subscribe()
    broken_models = dataclasses.replace(models, tts=BrokenSynthesizer(models.tts))
    floors, sessions = [], {}
    for name, session_models in (("healthy", models), ("broken", broken_models)):
        floor = PlaybackFloor(ThreadPlayer())
        transport = SpeakerTransport(floor=floor, name=name)
        options = SessionOptions(session_id=name, transport="discord", persona=Persona("Be brief."),
                                 audio_out_sample_rate=48000)
        task = asyncio.create_task(run_session(transport, session_models, settings, bus, options))
        floors.append(floor)
        sessions[name] = (transport, task)
    question = read_pcm(speech("What is the capital of France?"))
    try:
        await asyncio.gather(*(feed_speech(t, question, silence_secs=1.0)
                               for t, _ in sessions.values()))
        seen: list[events.Event] = []
        async with asyncio.timeout(45):
            while not (any(isinstance(e, events.SessionError) and e.session_id == "broken"
                           for e in seen)
                       and any(isinstance(e, events.BotStoppedSpeaking)
                               and e.session_id == "healthy" for e in seen)):
                seen.append(await subscription.get())
        error = next(e for e in seen if isinstance(e, events.SessionError))
        assert error.session_id == "broken" and "synthesizer crashed" in error.message
        await asyncio.wait_for(sessions["broken"][1], 10)  # it ended by itself
        assert not sessions["healthy"][1].done()
        assert any(isinstance(e, events.BotSpoken) and e.session_id == "healthy" for e in seen)
    finally:
        for transport, task in sessions.values():
            await transport.disconnect("test over")
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 10)
        for floor in floors:
            await floor.close()
