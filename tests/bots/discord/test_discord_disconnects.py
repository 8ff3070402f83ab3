"""The bot's voice connection as real networks and Discord treat it: a moderator's Disconnect,
the close codes that say "do not reconnect", a move to another channel, and a NAT that forgets
an idle UDP mapping."""

import asyncio

import pytest

from tests.bots.discord.fake import FakeDiscord
from tests.bots.discord.test_dave_group import still_answers, two_members_in_a_dave_call
from tests.bots.discord.test_discord_bot import (
    Conversations,
    alice_and_bot,
    eventually,
    joined,
    running_bot,
)
from tests.helpers import read_pcm
from voxline.bots.discord import channel as channel_module
from voxline.bots.discord import voice_client as voice_client_module
from voxline.bus import events

pytestmark = pytest.mark.slow
# Long past the watchdog's (shortened) rejoin time: a bot that would come back has by then.
STAYS_GONE_SECS = 3.0


def ended_sessions(talk: Conversations, name: str) -> list[events.SessionEnded]:
    return [e for e in talk.by_speaker[name] if isinstance(e, events.SessionEnded)]


@pytest.fixture
def quick_rejoin(monkeypatch):
    """The watchdog would rejoin a lost connection after 1 s instead of 10 s."""
    monkeypatch.setattr(channel_module, "REJOIN_AFTER_SECS", 1.0)


async def alice_talking(fake, alice, talk: Conversations, speech) -> None:
    """The bot joined, and Alice's session started."""
    await joined(fake, alice)
    await alice.speak(read_pcm(speech("Hello there.")))
    await talk.until(lambda t: t.started, 30)


async def gone_for_good(fake, bot, talk: Conversations) -> None:
    """Alice's session ended, the bot left, and it stays out of voice."""
    await talk.until(lambda t: ended_sessions(t, "Alice"), 10)
    await eventually(lambda: fake.guild_id not in bot.channels, 5)
    await asyncio.sleep(STAYS_GONE_SECS)
    assert not fake.is_bot_in_voice and fake.world.bot_user_id not in fake.world.voice, \
        "the bot came back"


# How Discord ends the call, and whether it has DAVE.
ENDINGS = {
    "kick, state update first": (True, lambda fake: fake.kick_bot(voice_ws_first=False)),
    "kick, voice close first": (True, lambda fake: fake.kick_bot(voice_ws_first=True)),
    "4021 rate limited": (False, lambda fake: fake.drop_voice(code=4021)),
    "4022 call terminated": (False, lambda fake: fake.drop_voice(code=4022)),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
async def test_when_discord_says_do_not_come_back_the_bot_leaves(models, speech, quick_rejoin,
                                                                 ending):
    """A moderator's Disconnect (voice close 4014) and close codes 4021/4022: leave, end the
    members' sessions, and do not rejoin (the watchdog used to, within seconds)."""
    dave, end_call = ENDINGS[ending]
    async with alice_and_bot(models, dave=dave) as (fake, alice, bot, worker):
        talk = Conversations(worker)
        await alice_talking(fake, alice, talk, speech)
        await end_call(fake)
        await gone_for_good(fake, bot, talk)
        status = await fake.slash(alice, "status", timeout=20)
        assert status.startswith("Not in a voice channel")
        talk.close()


async def test_a_move_ends_the_sessions_of_members_left_behind(models, speech, quick_rejoin):
    async with FakeDiscord(dave=False) as fake:
        alice, carol = fake.add_member("Alice"), fake.add_member("Carol")
        await fake.join_voice(alice)
        await fake.join_voice(carol, fake.other_voice_channel_id)
        async with running_bot(fake, models) as (bot, worker):
            talk = Conversations(worker)
            await joined(fake, alice)
            await alice.speak(read_pcm(speech("Hello there.")))
            await talk.until(lambda t: t.started, 30)

            await fake.move_bot(fake.other_voice_channel_id)
            await talk.until(lambda t: ended_sessions(t, "Alice"), 10)
            await fake.wait_bot_in_voice(timeout=20)
            session = bot.channels[fake.guild_id]
            assert session.channel.id == fake.other_voice_channel_id

            await carol.speak(read_pcm(speech("What color is the sky?")))
            await talk.until(lambda t: t.answered("Carol"), 60)
            await asyncio.sleep(STAYS_GONE_SECS)
            assert fake.world.voice[fake.world.bot_user_id].channel_id == \
                fake.other_voice_channel_id, "the bot went back to the channel it was moved from"
            talk.close()


async def test_a_listening_bot_keeps_its_nat_mapping_open(models, speech, monkeypatch):
    """Behind a NAT that forgets an idle UDP mapping, a bot that only listens stops hearing
    anyone unless it sends something: its keepalive."""
    monkeypatch.setattr(voice_client_module, "KEEPALIVE_SECS", 0.3)
    async with alice_and_bot(models, dave=False) as (fake, alice, bot, worker):
        talk = Conversations(worker)
        fake.voice.nat_idle_secs = 1.0
        await joined(fake, alice)
        await asyncio.sleep(2.0)  # listening, not playing: the mapping would have expired
        await alice.speak(read_pcm(speech("What color is the sky?")))
        await talk.until(lambda t: t.answered("Alice"), 60)
        assert fake.voice.udp.keepalive_count > 0 and fake.voice.nat_dropped_count == 0
        talk.close()


async def test_speakers_whose_audio_never_arrives_show_as_degraded_receive(
        models, speech, monkeypatch):
    monkeypatch.setattr(voice_client_module, "KEEPALIVE_SECS", 1000.0)  # none sent
    async with alice_and_bot(models, dave=False) as (fake, alice, bot, worker):
        fake.voice.nat_idle_secs = 1.0
        await joined(fake, alice)
        assert bot.component_status().health == "ok"
        await asyncio.sleep(1.5)
        await alice.speak(read_pcm(speech("What color is the sky?")))  # op 5, then dropped
        assert fake.voice.nat_dropped_count > 0
        await eventually(lambda: bot.component_status().health == "degraded", 5)
        assert "Alice" in bot.component_status().detail
        status = await fake.slash(alice, "status", timeout=20)
        assert "receive degraded" in status and "Alice" in status


@pytest.mark.parametrize("server_update_first", [False, True],
                         ids=["state-update-first", "server-update-first"])
async def test_a_dave_call_survives_a_voice_resume(models, speech, server_update_first):
    """Close 4015: discord.py re-sends op 4 (the two updates in either order), resumes (op 9
    and nothing else), and the call's key and DAVE group carry over."""
    async with two_members_in_a_dave_call(models) as (fake, alice, _bot, talk):
        fake.server_update_first = server_update_first
        await fake.drop_voice(code=4015)
        await eventually(lambda: fake.voice.resume_count == 1, 10)
        await fake.wait_bot_in_voice(timeout=20)
        await still_answers(alice, talk, speech)
        assert fake.voice.identify_count == 1 and fake.mls.invalid_commit_count == 0
