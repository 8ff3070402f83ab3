"""Opt-in smoke test against the real Discord (skipped unless configured; never in CI).

DISCORD_TOKEN and DISCORD_TEST_CHANNEL_ID (a voice channel the bot may join) make the bot join,
speak a phrase and leave. With DISCORD_LISTENER_TOKEN (a second bot in the same server) that bot
listens through our DAVE-aware receive and must hear the phrase.
"""

import asyncio
import os

import discord
import numpy as np
import pytest
import soxr

from tests.helpers import transcribe, words
from voxline.bots.discord.audio_source import BufferedAudioSource
from voxline.bots.discord.voice_client import ListeningVoiceClient

TOKEN = os.environ.get("DISCORD_TOKEN")
CHANNEL_ID = os.environ.get("DISCORD_TEST_CHANNEL_ID")
LISTENER_TOKEN = os.environ.get("DISCORD_LISTENER_TOKEN")
PHRASE = "The quick brown fox jumps over the lazy dog."

pytestmark = pytest.mark.skipif(
    not (TOKEN and CHANNEL_ID), reason="live Discord: set DISCORD_TOKEN and DISCORD_TEST_CHANNEL_ID"
)


def _phrase_48k_stereo(models) -> bytes:
    pcm = b"".join(models.tts.synthesize(PHRASE))
    mono = np.frombuffer(pcm, dtype=np.int16).astype(np.float32)
    resampled = soxr.resample(mono, models.tts.sample_rate, 48000).astype(np.int16)
    return np.repeat(resampled, 2).tobytes()


async def _joined(token: str) -> tuple[discord.Client, ListeningVoiceClient, asyncio.Task]:
    client = discord.Client(intents=discord.Intents.default())
    task = asyncio.create_task(client.start(token))
    await asyncio.wait_for(client.wait_until_ready(), 30)
    channel = client.get_channel(int(CHANNEL_ID)) or await client.fetch_channel(int(CHANNEL_ID))
    voice = await channel.connect(cls=ListeningVoiceClient, timeout=30)
    return client, voice, task


async def _leave(client: discord.Client, voice: ListeningVoiceClient, task: asyncio.Task):
    await voice.disconnect(force=True)
    await client.close()
    await asyncio.gather(task, return_exceptions=True)


async def test_live_join_speak_and_be_heard(models):
    heard = bytearray()
    listener = None
    if LISTENER_TOKEN:
        listener = await _joined(LISTENER_TOKEN)
        listener[1].listen(lambda _user, pcm: heard.extend(pcm))
    speaker = await _joined(TOKEN)
    try:
        source = BufferedAudioSource()
        source.push(_phrase_48k_stereo(models))
        source.finish()
        played = asyncio.Event()
        loop = asyncio.get_running_loop()
        speaker[1].play(source, after=lambda error: loop.call_soon_threadsafe(played.set))
        await asyncio.wait_for(played.wait(), 30)
        assert speaker[1].is_connected()
        await asyncio.sleep(1.0)  # the last packets are in flight to the listener
    finally:
        await _leave(*speaker)
        if listener:
            await _leave(*listener)
    if listener is None:
        pytest.skip("spoke; set DISCORD_LISTENER_TOKEN to also check that it was heard")
    assert listener[1].receiver.stats.dropped_dave == 0
    assert {"quick", "fox", "dog"} & words(transcribe(models, bytes(heard), 16000))
