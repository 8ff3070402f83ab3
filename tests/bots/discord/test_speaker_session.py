"""One member's conversation through `SpeakerTransport` and the real models, without Discord:
their speech in at 16 kHz, the bot's answer out through the floor at 48 kHz stereo."""

import asyncio
import contextlib

import numpy as np
import pytest
from loguru import logger

from tests.bots.discord.player import ThreadPlayer
from tests.helpers import (
    feed_speech,
    read_pcm,
    rms,
    transcribe,
    without_trailing_silence,
    words,
)
from voxline.agent import Persona, SessionOptions, run_session
from voxline.bots.discord.floor import PlaybackFloor
from voxline.bots.discord.transport import SpeakerTransport
from voxline.bus import events
from voxline.bus.inprocess import InProcessBus

pytestmark = pytest.mark.slow


@contextlib.asynccontextmanager
async def member_session(models, settings, bus, options: SessionOptions, name: str,
                         player: ThreadPlayer | None = None):
    """One member's session on its own transport and floor; the member leaves at the end."""
    floor = PlaybackFloor(player or ThreadPlayer())
    transport = SpeakerTransport(floor=floor, name=name)
    session = asyncio.create_task(run_session(transport, models, settings, bus, options))
    try:
        yield transport
        await transport.disconnect("left the channel")
        await asyncio.wait_for(session, 10)
    finally:
        session.cancel()
        await asyncio.gather(session, return_exceptions=True)
        await floor.close()


async def test_a_member_is_heard_and_answered_through_the_floor(models, settings, speech):
    bus = InProcessBus()
    subscription = bus.subscribe()
    player = ThreadPlayer()
    options = SessionOptions(
        session_id="discord-test", transport="discord", persona=Persona("Answer in one sentence."),
        audio_out_sample_rate=48000, guild="Guild", channel="General", speaker="Alice",
    )
    async with member_session(models, settings, bus, options, "discord-42", player) as transport:
        speech_pcm = read_pcm(speech("What is the capital of France?"))
        await feed_speech(transport, speech_pcm, silence_secs=1.0)
        seen: dict[type, events.Event] = {}
        async with asyncio.timeout(30):
            async for event in subscription:
                seen.setdefault(type(event), event)
                if isinstance(event, events.BotStoppedSpeaking):
                    break
    started = seen[events.SessionStarted]
    assert (started.transport, started.guild, started.channel, started.speaker) == (
        "discord", "Guild", "General", "Alice")
    assert "france" in words(seen[events.TranscriptFinal].text)
    stereo = np.frombuffer(bytes(player.audio), dtype=np.int16).reshape(-1, 2)
    assert (stereo[:, 0] == stereo[:, 1]).all()
    mono = stereo[:, 0].tobytes()
    assert rms(mono) > 0.01
    assert words(transcribe(models, mono, 48000)), "the bot's reply should be intelligible"


async def test_a_member_who_leaves_while_their_session_starts_ends_it(models, settings):
    """Regression: a disconnect before `run_session` registered its handler went unheard, and
    the session lived on until the idle timeout (300 s)."""
    floor = PlaybackFloor(ThreadPlayer())
    transport = SpeakerTransport(floor=floor, name="discord-43")
    options = SessionOptions(session_id="discord-left", transport="discord",
                             persona=Persona("Be brief."), audio_out_sample_rate=48000)
    session = asyncio.create_task(run_session(transport, models, settings, InProcessBus(),
                                              options))
    await transport.disconnect("left the channel")  # before the pipeline is even built
    try:
        await asyncio.wait_for(session, 10)
    finally:
        session.cancel()
        await asyncio.gather(session, return_exceptions=True)
        await floor.close()


async def test_a_member_who_stops_sending_ends_their_turn(models, settings, speech):
    """A Discord client sends nothing after its member's last words (five Opus silence frames,
    then no packets): the transport's own silence ends the turn, as a WebSocket client's
    microphone silence does. Regression: the VAD heard no silence, and the turn ended only on
    pipecat's audio-idle fallback, a second after the last packet."""
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    bus = InProcessBus()
    subscription = bus.subscribe()
    options = SessionOptions(session_id="discord-quiet", transport="discord",
                             persona=Persona("Answer in one sentence."),
                             audio_out_sample_rate=48000)
    try:
        async with member_session(models, settings, bus, options, "discord-44") as transport:
            question = without_trailing_silence(
                read_pcm(speech("What is the capital of France?")))
            await feed_speech(transport, question, silence_secs=0)
            final = None
            async with asyncio.timeout(15):
                async for event in subscription:
                    if isinstance(event, events.TranscriptFinal):
                        final = event
                    if isinstance(event, events.BotStartedSpeaking):
                        break
    finally:
        logger.remove(sink)
    assert final is not None and "france" in words(final.text)
    assert not [w for w in warnings if "no audio received" in w], warnings
