"""voxline's Discord bot end to end: a real discord.Client against the loopback fake Discord,
real models, fake members speaking espeak-ng questions over (DAVE-)encrypted RTP."""

import asyncio
import contextlib
from collections import defaultdict

import numpy as np
import pytest

from tests.bots.discord.fake import FakeDiscord
from tests.bots.discord.fake.interactions import CommandNotPermitted
from tests.conftest import make_settings
from tests.helpers import read_pcm, rms, transcribe, words
from voxline.bots.discord.bot import VoxlineDiscordBot
from voxline.bus import events
from voxline.worker import Worker

pytestmark = pytest.mark.slow
ALICE_ASKS = "What is the capital of France?"
BOB_ASKS = "What color is the sky?"


@contextlib.asynccontextmanager
async def running_bot(fake: FakeDiscord, models, **discord_settings):
    """Our bot, logged in to the fake, on a worker of its own (in-process bus), as
    `voxline discord` runs it."""
    settings = make_settings(discord={"guild_ids": [fake.guild_id], **discord_settings})
    bot = None
    worker = Worker(settings, models, worker_id="test:discord", with_dashboard=False,
                    extra_components=lambda: [bot.component_status()] if bot else [])
    async with worker:
        with fake.patched():
            bot = VoxlineDiscordBot(host=worker.host, settings=settings.discord,
                                    **fake.client_kwargs())
            task = asyncio.create_task(bot.start(fake.bot_token), name="test-voxline-bot")
            try:
                await fake.wait_until_ready()
                await asyncio.wait_for(bot.wait_until_ready(), 10)  # on_ready (after guild waits)
                yield bot, worker
            finally:
                await bot.close()
                await asyncio.wait_for(task, 15)


@contextlib.asynccontextmanager
async def alice_and_bot(models, *, dave: bool, server_update_first: bool = False):
    """A fake Discord with Alice already in its voice channel, and our bot logged in."""
    async with FakeDiscord(dave=dave, server_update_first=server_update_first) as fake:
        alice = fake.add_member("Alice")
        await fake.join_voice(alice)
        async with running_bot(fake, models) as (bot, worker):
            yield fake, alice, bot, worker


class Conversations:
    """The bus events of every Discord session, grouped by the member it listens to."""

    def __init__(self, worker):
        self._subscription = worker.bus.subscribe()
        self.speaker_of: dict[str, str] = {}  # session id → member name
        self.by_speaker: dict[str, list[events.Event]] = defaultdict(list)
        self.started: list[events.SessionStarted] = []
        self.order: list[tuple[str, str]] = []  # (member, topic) of speaking events, in order

    async def until(self, done, timeout_secs: float = 60) -> None:
        async with asyncio.timeout(timeout_secs):
            while not done(self):
                self._add(await self._subscription.get())

    def _add(self, event: events.Event) -> None:
        if isinstance(event, events.SessionStarted):
            self.started.append(event)
            self.speaker_of[event.session_id] = event.speaker
        name = self.speaker_of.get(event.session_id)
        if name is not None:
            self.by_speaker[name].append(event)
            if isinstance(event, events.BotStartedSpeaking | events.BotStoppedSpeaking):
                self.order.append((name, event.topic))

    def texts(self, name: str, kind: type) -> list[str]:
        return [e.text for e in self.by_speaker[name] if isinstance(e, kind)]

    def answered(self, name: str) -> bool:
        return any(isinstance(e, events.BotStoppedSpeaking) for e in self.by_speaker[name])

    def close(self) -> None:
        self._subscription.close()


async def joined(fake: FakeDiscord, member) -> str:
    """`member` says /join; the bot's reply, once it is in voice (and in the DAVE group)."""
    reply = await fake.slash(member, "join", timeout=20)
    await fake.wait_bot_in_voice(timeout=20)
    return reply


async def eventually(condition, timeout_secs: float = 10) -> None:
    for _ in range(int(timeout_secs / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_two_members_are_heard_and_answered_in_turn_with_dave(models, speech):
    async with FakeDiscord(dave=True) as fake:
        alice, bob = fake.add_member("Alice"), fake.add_member("Bob")
        await fake.join_voice(alice)
        await fake.join_voice(bob)
        async with running_bot(fake, models) as (bot, worker):
            talk = Conversations(worker)
            assert (await joined(fake, alice)).startswith("Joined #")

            async def bob_speaks_a_moment_later():
                await asyncio.sleep(0.3)
                await bob.speak(read_pcm(speech(BOB_ASKS)))

            await asyncio.gather(alice.speak(read_pcm(speech(ALICE_ASKS))),
                                 bob_speaks_a_moment_later())
            await talk.until(lambda t: t.answered("Alice") and t.answered("Bob"), 90)
            audio = await fake.bot_audio(min_secs=1.0, silence_secs=0.5, timeout=30)

            # Each member has their own session, under their own user id, with their words.
            by_id = {s.speaker: s.speaker_id for s in talk.started}
            assert by_id == {"Alice": str(alice.user_id), "Bob": str(bob.user_id)}
            assert all(s.transport == "discord" and s.channel for s in talk.started)
            assert "france" in words(" ".join(talk.texts("Alice", events.TranscriptFinal)))
            assert "sky" in words(" ".join(talk.texts("Bob", events.TranscriptFinal)))
            # One answer at a time: the second starts only after the first has stopped.
            topics = [topic for _, topic in talk.order]
            assert topics == ["tts.started", "tts.finished"] * (len(topics) // 2), talk.order
            # What came back over DAVE-encrypted Opus is the speech of both answers.
            assert fake.audio.dave_frame_count > 0 and fake.audio.undecryptable_count == 0
            mono = np.frombuffer(audio, dtype=np.int16).reshape(-1, 2)[:, 0].tobytes()
            assert rms(mono) > 0.01
            spoken = words(" ".join(talk.texts("Alice", events.BotSpoken)
                                    + talk.texts("Bob", events.BotSpoken)))
            assert len(words(transcribe(models, mono, 48000)) & spoken) >= 2

            # A replayed and a corrupted frame are dropped and counted, never played.
            receiver = bot.channels[fake.guild_id].voice.receiver
            dropped_before = receiver.stats.dropped_dave
            await alice.send_replayed_packet()
            await alice.send_corrupted_packet()
            await eventually(lambda: receiver.stats.dropped_dave == dropped_before + 2)

            assert (await fake.slash(alice, "leave", timeout=20)).startswith("Left #")
            await fake.wait_bot_out_of_voice(timeout=10)
            await talk.until(lambda t: sum(isinstance(e, events.SessionEnded)
                                           for es in t.by_speaker.values() for e in es) == 2)
            assert not bot.channels
            talk.close()


@pytest.mark.parametrize("server_update_first", [False, True],
                         ids=["state-update-first", "server-update-first"])
async def test_without_dave_with_header_extensions_and_through_a_voice_reconnect(
        models, speech, server_update_first):
    async with alice_and_bot(models, dave=False, server_update_first=server_update_first) as (
            fake, alice, bot, worker):
        talk = Conversations(worker)
        await joined(fake, alice)
        question = read_pcm(speech(ALICE_ASKS))
        await alice.speak(question, header_extension=True)
        await talk.until(lambda t: t.answered("Alice"), 60)
        assert "france" in words(" ".join(talk.texts("Alice", events.TranscriptFinal)))
        assert fake.audio.plain_frame_count > 0 and fake.audio.dave_frame_count == 0
        # Encoded for speech (VoIP, 48 kbps: 120 bytes a frame), not as music at 128 kbps.
        assert fake.audio.opus_bytes / fake.audio.plain_frame_count < 160

        await fake.drop_voice(code=4015)  # the voice server went away: discord.py resumes
        await fake.wait_bot_in_voice(timeout=20)
        await fake.bot_audio(min_secs=0.1, silence_secs=0.2, timeout=5)  # drain the first
        await alice.speak(read_pcm(speech(BOB_ASKS)), header_extension=True)
        await talk.until(
            lambda t: sum(isinstance(e, events.BotStoppedSpeaking)
                          for e in t.by_speaker["Alice"]) >= 2, 60)
        assert len(talk.started) == 1, "the member's session outlived the reconnect"
        await fake.change_voice_server(new_endpoint=True)  # a region change: a new server
        await fake.wait_bot_in_voice(timeout=20)
        status = await fake.slash(alice, "status", timeout=20)
        assert "listening to 1 member" in status and "no DAVE" in status
        talk.close()


async def test_bots_and_muted_members_are_not_listened_to(models, speech):
    async with FakeDiscord(dave=True) as fake:
        alice, robo = fake.add_member("Alice"), fake.add_member("Robo", bot=True)
        carol = fake.add_member("Carol")
        for member in (alice, robo):
            await fake.join_voice(member)
        await fake.join_voice(carol, self_mute=True)
        async with running_bot(fake, models) as (bot, worker):
            talk = Conversations(worker)
            await joined(fake, alice)
            question = read_pcm(speech(ALICE_ASKS))
            await asyncio.gather(robo.speak(question), carol.speak(question))
            receiver = bot.channels[fake.guild_id].voice.receiver
            assert receiver.stats.decoded > 0  # heard and decrypted, then ignored
            await alice.speak(question)
            await talk.until(lambda t: len(t.started) >= 1, 20)
            assert [s.speaker for s in talk.started] == ["Alice"]
            talk.close()


async def test_a_member_speaking_over_the_bot_cuts_another_members_answer(models, speech):
    """Barge-in across sessions: Bob's words stop the answer playing to Alice (vc.stop()), and
    Alice's session records its reply as interrupted."""
    async with FakeDiscord(dave=True) as fake:
        alice, bob = fake.add_member("Alice"), fake.add_member("Bob")
        await fake.join_voice(alice)
        await fake.join_voice(bob)
        async with running_bot(fake, models) as (bot, worker):
            talk = Conversations(worker)
            await joined(fake, alice)
            await alice.speak(read_pcm(speech("Tell me a long story about a dragon.")))
            await talk.until(lambda t: ("Alice", "tts.started") in t.order, 60)
            await bob.speak(read_pcm(speech("Wait, stop please.")))
            await talk.until(lambda t: any(isinstance(e, events.TurnInterrupted)
                                           for e in t.by_speaker["Alice"]), 10)
            await talk.until(lambda t: ("Alice", "tts.finished") in t.order, 5)
            channel = bot.channels[fake.guild_id]
            alice_output = channel._speakers[alice.user_id].transport.output()
            assert channel._floor.owner is not alice_output  # only Bob's answer may play now
            talk.close()


async def test_packets_before_the_speaking_event_are_held_then_heard(models, speech):
    async with alice_and_bot(models, dave=True) as (fake, alice, bot, worker):
        await joined(fake, alice)
        receiver = bot.channels[fake.guild_id].voice.receiver
        await alice.speak(read_pcm(speech("Hello."))[:16000], announce=False)  # 0.5 s
        assert receiver.stats.held > 0 and receiver.stats.decoded == 0
        await alice.announce()
        await eventually(lambda: receiver.stats.decoded >= receiver.stats.held - 2)
        assert receiver.stats.dropped_dave == 0 and receiver.stats.dropped_unmapped == 0


async def test_join_refusals_are_clear(models):
    async with FakeDiscord(dave=False, bot_can_connect=False) as fake:
        alice, bob = fake.add_member("Alice"), fake.add_member("Bob", manage_guild=True)
        await fake.join_voice(bob)
        async with running_bot(fake, models):
            reply = await fake.slash(alice, "join", timeout=20)
            assert "Join a voice channel first" in reply
            reply = await fake.slash(bob, "join", timeout=20)
            assert "Connect and Speak permissions" in reply
            assert "Not in a voice channel" in await fake.slash(bob, "status", timeout=20)
            assert "not in a voice channel" in await fake.slash(bob, "leave", timeout=20)
            assert "Persona set" in await fake.slash(bob, "persona", text="Be a pirate.")


async def test_persona_is_for_server_managers_and_acknowledged_within_discords_deadline(
        models, speech):
    """/persona changes the bot for the whole server: Manage Server only. It ends every
    member's session, which can outlast the 3 s Discord gives the first response: it defers
    first, then says it is done."""
    async with alice_and_bot(models, dave=False) as (fake, alice, bot, worker):
        ada = fake.add_member("Ada", manage_guild=True)
        await joined(fake, alice)
        await alice.speak(read_pcm(speech("Hello there.")), announce=True)
        await eventually(lambda: bot.channels[fake.guild_id].speakers)
        with pytest.raises(CommandNotPermitted):
            await fake.slash(alice, "persona", text="Be a pirate.")
        assert "Persona set" in await fake.slash(ada, "persona", text="Be a pirate.",
                                                 timeout=20)
        answers = [r for r in fake.interaction_responses if r.command == "persona"]
        assert answers[0].kind == "callback" and answers[0].callback_type == 5, answers
        assert answers[-1].kind == "followup" and "Persona set" in answers[-1].text


async def test_already_in_another_channel_and_leaving_an_empty_channel(models):
    async with FakeDiscord(dave=True) as fake:
        alice, bob = fake.add_member("Alice"), fake.add_member("Bob")
        await fake.join_voice(alice)
        await fake.join_voice(bob, fake.other_voice_channel_id)
        async with running_bot(fake, models, idle_leave_secs=1.0) as (bot, worker):
            await joined(fake, alice)
            reply = await fake.slash(bob, "join", timeout=20)
            assert "already in #" in reply and "/leave" in reply
            assert bot.component_status().health == "ok"
            await fake.leave_voice(alice)  # nobody left: the bot goes after idle_leave_secs
            await fake.wait_bot_out_of_voice(timeout=10)
            await eventually(lambda: not bot.channels)


async def test_the_bot_reports_its_discord_service_status(models):
    async with FakeDiscord(dave=False) as fake:
        async with running_bot(fake, models) as (bot, worker):
            # The worker's own telemetry, with the bot's status as `voxline discord` adds it.
            subscription = worker.bus.subscribe(lambda e: isinstance(e, events.ServiceStatus))
            try:
                status = await asyncio.wait_for(subscription.get(), 10)
            finally:
                subscription.close()
            discord_status = next(c for c in status.components if c.name == "discord")
            assert discord_status.health == "ok" and discord_status.detail == "ready"


async def test_voxline_discord_process_runs_and_stops_cleanly(models, monkeypatch):
    """`run_discord` (what `voxline discord` runs): models, bus, telemetry, control, the bot."""
    import dataclasses

    from voxline import discord_bot, server

    shared = dataclasses.replace(models)
    shared.close = lambda: None  # the test run's models outlive this process stand-in
    monkeypatch.setattr(server, "load_models", lambda settings, progress: shared)
    ready = asyncio.Event()  # stopping before on_ready leaves discord.py's ready event unrun
    monkeypatch.setattr(VoxlineDiscordBot, "on_ready", lambda _bot: _set(ready))
    async with FakeDiscord(dave=False) as fake:
        alice = fake.add_member("Alice")
        settings = make_settings(discord={"token": fake.bot_token, "guild_ids": [fake.guild_id]})
        with fake.patched():
            process = asyncio.create_task(discord_bot.run_discord(settings, **fake.client_kwargs()))
            try:
                await fake.wait_until_ready()
                await asyncio.wait_for(ready.wait(), 10)
                assert "Not in a voice channel" in await fake.slash(alice, "status", timeout=20)
            finally:
                process.cancel()
                await asyncio.gather(process, return_exceptions=True)
        assert process.cancelled() or process.exception() is None


async def _set(event: asyncio.Event) -> None:
    event.set()
