"""The bot in a DAVE call whose group changes the ways Discord's voice server changes it:
commits the bot wins and loses, a revoked join, the bot left alone, a member whose commit the
bot missed, a downgrade to transport encryption and back, and proposals no one can parse."""

import asyncio
import contextlib

import pytest

from tests.bots.discord.fake import FakeDiscord
from tests.bots.discord.fake.mls_group import BotMls
from tests.bots.discord.fake.sender import TRAILING_SILENCE_FRAMES
from tests.bots.discord.test_discord_bot import (
    Conversations,
    alice_and_bot,
    eventually,
    joined,
    running_bot,
)
from tests.helpers import read_pcm, words
from voxline.bus import events

pytestmark = pytest.mark.slow
# About five seconds of speech: long enough for the group to change while it is spoken.
LONG_QUESTION = ("Could you tell me, in just a few words, what the weather is usually like "
                 "in Paris in the spring?")


@contextlib.asynccontextmanager
async def two_members_in_a_dave_call(models):
    """Alice and Bob in a DAVE call (a real MLS group of two), the bot joined by Alice."""
    async with FakeDiscord(dave=True) as fake:
        alice, bob = fake.add_member("Alice"), fake.add_member("Bob")
        for member in (alice, bob):
            await fake.join_voice(member)
        async with running_bot(fake, models) as (bot, worker):
            talk = Conversations(worker)
            await joined(fake, alice)
            yield fake, alice, bot, talk
            talk.close()


async def still_answers(alice, talk: Conversations, speech) -> None:
    await alice.speak(read_pcm(speech("What color is the sky?")))
    await talk.until(lambda t: t.answered("Alice"), 60)


def answer_count(talk: Conversations, name: str) -> int:
    return sum(isinstance(e, events.BotStoppedSpeaking) for e in talk.by_speaker[name])


async def speaking_through(member, pcm: bytes, change) -> None:
    """`member` says `pcm`; a second into it, `change()` happens to the call."""
    async def a_second_in():
        await asyncio.sleep(1.0)
        await change()

    await asyncio.gather(member.speak(pcm), a_second_in())


def assert_heard_whole(bot, fake, member, utterances: int) -> None:
    """Every frame `member` sent was decrypted and decoded: none dropped, none garbled."""
    stats = bot.channels[fake.guild_id].voice.receiver.stats
    assert (stats.dropped_dave, stats.dropped_opus, stats.dropped_late) == (0, 0, 0), stats
    sent = len(member.sent_opus) + utterances * TRAILING_SILENCE_FRAMES
    assert stats.decoded_by_member[member.user_id] == sent, stats


async def test_a_member_is_heard_whole_while_the_group_changes_around_them(models, speech):
    """While Alice talks, Carol joins (a fake member's commit beats the bot's), Dave joins and
    leaves before his Add is committed (the server revokes it), and Bob leaves. Members send
    with new keys only from each op 22; not one of Alice's frames is lost."""
    async with two_members_in_a_dave_call(models) as (fake, alice, bot, talk):
        bob = next(m for m in fake.members.values() if m.name == "Bob")
        carol, dave = fake.add_member("Carol"), fake.add_member("Dave")

        async def group_changes():
            fake.mls.members_win_commits = True
            await fake.join_voice(carol)
            fake.mls.members_win_commits = False
            await fake.join_voice_briefly(dave)
            await fake.leave_voice(bob)

        await speaking_through(alice, read_pcm(speech(LONG_QUESTION)), group_changes)
        await talk.until(lambda t: t.answered("Alice"), 60)
        assert "paris" in words(" ".join(talk.texts("Alice", events.TranscriptFinal)))
        assert_heard_whole(bot, fake, alice, utterances=1)
        assert fake.mls.group == [alice, carol] and fake.is_bot_in_voice
        assert (fake.mls.invalid_commit_count, fake.mls.unexpected_commit_count) == (0, 0)
        assert fake.voice.identify_count == 1


async def test_a_call_that_leaves_dave_and_comes_back_loses_no_frame(models, speech):
    """Regression: frames sent just before a downgrade (still end-to-end encrypted, arriving
    after it) went to the Opus decoder as they were, and `/status` still showed the old
    group's privacy code; after an upgrade's op 24, the plain frames members send until its
    op 22 were dropped as undecryptable."""
    async with two_members_in_a_dave_call(models) as (fake, alice, bot, talk):
        dave_frames = fake.audio.dave_frame_count
        await speaking_through(alice, read_pcm(speech(LONG_QUESTION)), fake.mls.downgrade)
        await talk.until(lambda t: answer_count(t, "Alice") == 1, 60)
        assert fake.mls.protocol_version == 0
        assert fake.audio.dave_frame_count == dave_frames and fake.audio.plain_frame_count > 0
        assert "no DAVE" in await fake.slash(alice, "status", timeout=20)

        await speaking_through(alice, read_pcm(speech("And what is it like in the autumn?")),
                               fake.mls.upgrade)
        await fake.wait_bot_in_voice(timeout=20)
        await talk.until(lambda t: answer_count(t, "Alice") == 2, 60)
        assert fake.mls.protocol_version == 1 and fake.audio.dave_frame_count > dave_frames
        assert "privacy code" in await fake.slash(alice, "status", timeout=20)
        assert_heard_whole(bot, fake, alice, utterances=2)
        assert fake.mls.invalid_commit_count == 0 and fake.voice.identify_count == 1


async def test_a_bot_left_alone_starts_a_group_of_its_own(models, speech):
    """The last member leaves: Discord has the bot start a new group (op 24 epoch 1, op 21
    transition 0); whoever joins next is added to that group."""
    async with alice_and_bot(models, dave=True) as (fake, alice, _bot, worker):
        talk = Conversations(worker)
        await joined(fake, alice)
        await fake.leave_voice(alice)
        await fake.wait_bot_in_voice(timeout=20)  # its new key package taken
        assert fake.mls.sole_member_reset_count == 1 and fake.mls.bot is BotMls.ALONE
        await fake.join_voice(alice)
        await still_answers(alice, talk, speech)
        assert fake.mls.invalid_commit_count == 0 and fake.voice.identify_count == 1
        talk.close()


async def test_a_bot_its_dave_group_left_behind_asks_to_be_added_again(models, speech):
    """Regression: a member whose frames stopped decrypting (the bot missed a commit) was not
    heard again for the rest of the call."""
    async with two_members_in_a_dave_call(models) as (fake, alice, _bot, talk):
        fake.mls.leave_bot_behind()
        await alice.speak(read_pcm(speech("Hello there, how are you doing today?")))
        await fake.wait_bot_in_voice(timeout=20)  # added to the members' group again
        assert fake.mls.invalid_commit_count == 1
        await still_answers(alice, talk, speech)


async def test_an_error_inside_discord_py_s_dave_handling_is_survived(models, speech):
    """Regression: malformed proposals killed discord.py's voice poller while it still said
    connected, and the bot heard no one again."""
    async with two_members_in_a_dave_call(models) as (fake, alice, _bot, talk):
        identified = fake.voice.identify_count
        await fake.mls.send_malformed_proposals()
        await eventually(lambda: fake.voice.identify_count > identified, 10)
        await fake.wait_bot_in_voice(timeout=20)
        await still_answers(alice, talk, speech)
