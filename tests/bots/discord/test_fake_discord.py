"""The fake Discord drives a real discord.py client: login, slash commands, voice, DAVE.

The bot here is a plain `discord.Client` with a tiny command tree, not voxline's bot:
these tests are about the fake. The proof that its encryption is right is decrypting
what the bot's socket received by hand, with the bot's own secret key and DAVE session.
"""

import asyncio
import contextlib
import io
import struct

import davey
import discord
import nacl.secret
import numpy as np
import pytest
from discord import app_commands
from discord.voice_state import VoiceConnectionState

from tests.bots.discord.fake import FakeDiscord
from tests.bots.discord.fake.dave import ExternalSender, split_commit_welcome
from tests.bots.discord.fake.rtp import RtpSizeCipher

OPUS_SILENCE = b"\xf8\xff\xfe"


def tone(secs: float, *, rate: int, hz: float = 440.0, stereo: bool = False) -> bytes:
    t = np.arange(int(secs * rate)) / rate
    samples = (np.sin(2 * np.pi * hz * t) * 12000).astype(np.int16)
    return (np.repeat(samples, 2) if stereo else samples).tobytes()


class RecordingVoiceClient(discord.VoiceClient):
    """A VoiceClient that keeps every UDP datagram it receives and every op 5 it is sent."""

    def __init__(self, client: discord.Client, channel) -> None:
        super().__init__(client, channel)
        self.datagrams: asyncio.Queue[bytes] = asyncio.Queue()
        self.speaking_ops: list[dict] = []

    def create_connection_state(self) -> VoiceConnectionState:
        return VoiceConnectionState(self, hook=self._on_ws_message)

    async def _on_ws_message(self, ws, msg: dict) -> None:
        if msg["op"] == 5:
            self.speaking_ops.append(msg["d"])

    async def connect(self, **kwargs) -> None:
        await super().connect(**kwargs)
        self._connection.add_socket_listener(self._on_datagram)

    def _on_datagram(self, data: bytes) -> None:  # the socket reader thread
        self.loop.call_soon_threadsafe(self.datagrams.put_nowait, data)


def make_client(fake: FakeDiscord) -> discord.Client:
    client = discord.Client(intents=discord.Intents.default(), **fake.client_kwargs())
    tree = app_commands.CommandTree(client)
    guild = discord.Object(fake.guild_id)

    @tree.command(description="Join your voice channel")
    async def join(interaction: discord.Interaction) -> None:
        voice = interaction.user.voice
        if voice is None or voice.channel is None:
            await interaction.response.send_message("You are not in a voice channel.")
            return
        if not voice.channel.permissions_for(interaction.guild.me).connect:
            await interaction.response.send_message("I have no permission to join.")
            return
        await interaction.response.defer(thinking=True)
        await voice.channel.connect(cls=RecordingVoiceClient, timeout=10)
        await interaction.followup.send(f"Joined {voice.channel.name}.")

    @tree.command(description="Set the persona")
    async def persona(interaction: discord.Interaction, text: str) -> None:
        await interaction.response.send_message(f"Persona: {text}")

    @tree.command(description="Leave voice")
    async def leave(interaction: discord.Interaction) -> None:
        await interaction.guild.voice_client.disconnect()
        await interaction.response.defer()
        await interaction.edit_original_response(content="Bye.")

    async def setup_hook() -> None:
        tree.copy_global_to(guild=guild)
        await tree.sync(guild=guild)

    client.setup_hook = setup_hook
    return client


@contextlib.asynccontextmanager
async def running_bot(fake: FakeDiscord):
    with fake.patched():
        client = make_client(fake)
        task = asyncio.create_task(client.start(fake.bot_token), name="test-bot")
        try:
            await fake.wait_until_ready()
            yield client
        finally:
            await client.close()
            await asyncio.wait_for(task, 10)


def voice_client(client: discord.Client) -> RecordingVoiceClient:
    vc = client.voice_clients[0]
    assert isinstance(vc, RecordingVoiceClient)
    return vc


async def received_opus(vc: RecordingVoiceClient, user_id: int, count: int) -> list[bytes]:
    """Decrypts by hand what the bot's socket got: the rtpsize seal, then DAVE if on."""
    aead = nacl.secret.Aead(bytes(vc.secret_key))
    frames: list[bytes] = []
    while len(frames) < count:
        data = await asyncio.wait_for(vc.datagrams.get(), 5)
        if len(data) < 16 or data[1] & 0x7F != 0x78:
            continue  # the IP discovery answer
        header_len = 12
        ext_words = 0
        if data[0] & 0x10:
            ext_words = struct.unpack_from(">H", data, 14)[0]
            header_len += 4
        plain = aead.decrypt(data[header_len:-4], data[:header_len], data[-4:] + bytes(20))
        payload = plain[4 * ext_words:]
        if payload == OPUS_SILENCE:
            continue
        session = vc._connection.dave_session
        if session is not None and vc._connection.dave_protocol_version:
            payload = session.decrypt(user_id, davey.MediaType.audio, payload)
        frames.append(payload)
    return frames


def drain(vc: RecordingVoiceClient) -> None:
    while not vc.datagrams.empty():
        vc.datagrams.get_nowait()


def test_dave_helpers_round_trip():
    """Signed Adds and Removes work on real davey sessions; op 28 splits at the right byte."""
    sender, channel = ExternalSender(), 42
    a, b = davey.DaveSession(1, 1, channel), davey.DaveSession(1, 2, channel)
    for s in (a, b):
        s.set_external_sender(sender.package)
    result = a.process_proposals(davey.ProposalsOperationType.append,
                                 sender.add_proposals(channel, 0, [b.get_serialized_key_package()]))
    assert split_commit_welcome(result.commit + result.welcome) == (result.commit, result.welcome)
    a.process_commit(result.commit)
    b.process_welcome(result.welcome)
    assert b.decrypt(1, davey.MediaType.audio, a.encrypt_opus(b"\x01" * 40)) == b"\x01" * 40
    removal = a.process_proposals(davey.ProposalsOperationType.append,
                                  sender.remove_proposals(channel, a.epoch, [b.own_leaf_index]))
    assert split_commit_welcome(removal.commit) == (removal.commit, None)  # has an UpdatePath


def test_rtpsize_seal_matches_discord_py_layout():
    cipher = RtpSizeCipher(bytes(range(32)))
    packet = cipher.seal(sequence=7, timestamp=960, ssrc=99, payload=b"opus",
                         extension=b"\x10\x7f\x00\x00")
    assert packet[:2] == b"\x90\x78" and packet[12:16] == b"\xbe\xde\x00\x01"
    assert packet[-4:] == b"\x00\x00\x00\x00"
    opened = cipher.open(packet)
    assert (opened.payload, opened.ssrc, opened.sequence) == (b"opus", 99, 7)


async def test_login_sync_and_slash_replies():
    async with FakeDiscord(dave=False) as fake:
        alice = fake.add_member("Alice")
        async with running_bot(fake):
            synced = fake.commands.scopes[fake.guild_id]
            assert {"join", "persona", "leave"} <= set(synced)
            assert await fake.slash(alice, "persona", text="be brief") == "Persona: be brief"
            assert await fake.slash(alice, "join") == "You are not in a voice channel."
            callback = fake.interaction_responses[0]
            assert (callback.kind, callback.callback_type) == ("callback", 4)
        assert fake.rest.unknown_routes == []


async def test_no_connect_permission():
    async with FakeDiscord(dave=False, bot_can_connect=False) as fake:
        alice = fake.add_member("Alice")
        await fake.join_voice(alice)
        async with running_bot(fake):
            assert await fake.slash(alice, "join") == "I have no permission to join."


async def test_dave_voice_both_ways_then_leave():
    async with FakeDiscord(dave=True) as fake:
        alice = fake.add_member("Alice")
        await fake.join_voice(alice)
        async with running_bot(fake) as client:
            assert await fake.slash(alice, "join") == "Joined Voice 1."
            await fake.wait_bot_in_voice()
            vc = voice_client(client)
            assert vc._connection.dave_session.ready
            assert set(vc._connection.dave_session.get_user_ids()) == {
                str(fake.bot_user_id), str(alice.user_id)}

            vc.play(discord.PCMAudio(io.BytesIO(tone(0.8, rate=48000, stereo=True))))
            heard = await fake.bot_audio(min_secs=0.5, silence_secs=0.3, timeout=10)
            assert np.abs(np.frombuffer(heard, np.int16)).max() > 5000
            assert fake.audio.dave_frame_count >= 25 and fake.audio.plain_frame_count == 0
            assert any(e["speaking"] for e in fake.bot_speaking_events)

            drain(vc)
            sent = await alice.speak(tone(0.3, rate=16000), sample_rate=16000)
            assert await received_opus(vc, alice.user_id, sent) == alice.sent_opus[-sent:]
            assert {"user_id": str(alice.user_id), "ssrc": alice.ssrc, "speaking": 1} in \
                vc.speaking_ops

            drain(vc)
            await alice.send_replayed_packet()
            with pytest.raises(ValueError, match="NoValidCryptorFound"):
                await received_opus(vc, alice.user_id, 1)
            await alice.send_corrupted_packet()
            with pytest.raises(ValueError):
                await received_opus(vc, alice.user_id, 1)

            # A resume (4015) is the bot's to test (test_discord_disconnects.py): the fake
            # answers it as Discord documents, which stock discord.py 2.7.1 cannot complete.
            assert await fake.slash(alice, "leave") == "Bye."
            await fake.wait_bot_out_of_voice()


async def test_bot_alone_then_members_join_and_leave_with_header_extension():
    async with FakeDiscord(dave=True) as fake:
        alice, bob = fake.add_member("Alice"), fake.add_member("Bob")
        async with running_bot(fake) as client:
            channel = client.get_channel(fake.voice_channel_id)
            vc = await channel.connect(cls=RecordingVoiceClient, timeout=10)
            await fake.wait_bot_in_voice()
            await fake.join_voice(alice)  # op 27 → the bot commits (28) → 29; alice welcomed
            await fake.join_voice(bob)
            await fake.wait_bot_in_voice()
            session = vc._connection.dave_session
            assert set(session.get_user_ids()) == {
                str(fake.bot_user_id), str(alice.user_id), str(bob.user_id)}

            drain(vc)
            sent = await bob.speak(tone(0.2, rate=16000), header_extension=True, announce=False)
            assert await received_opus(vc, bob.user_id, sent) == bob.sent_opus[-sent:]
            assert not any(op.get("user_id") == str(bob.user_id) for op in vc.speaking_ops)

            await fake.leave_voice(bob)  # a Remove the bot commits
            assert str(bob.user_id) not in session.get_user_ids()

            await fake.change_voice_server(new_endpoint=True)  # the bot re-identifies there
            await fake.wait_bot_in_voice(timeout=15)
            assert fake.voice.identify_count == 2
            assert vc.endpoint == fake.voice.endpoints[1]
            drain(vc)
            sent = await alice.speak(tone(0.1, rate=16000))
            assert await received_opus(vc, alice.user_id, sent) == alice.sent_opus[-sent:]
            await vc.disconnect()


async def test_voice_without_dave_and_a_server_change():
    async with FakeDiscord(dave=False) as fake:
        alice = fake.add_member("Alice")
        await fake.join_voice(alice)
        async with running_bot(fake) as client:
            assert await fake.slash(alice, "join") == "Joined Voice 1."
            await fake.wait_bot_in_voice()
            vc = voice_client(client)
            assert vc._connection.dave_session is None

            drain(vc)
            sent = await alice.speak(tone(0.1, rate=16000))
            assert await received_opus(vc, alice.user_id, sent) == alice.sent_opus[-sent:]

            update = asyncio.ensure_future(client.wait_for("voice_state_update", timeout=5))
            await fake.set_voice_flags(alice, self_mute=True)
            member, before, after = await update
            assert (member.id, before.self_mute, after.self_mute) == (alice.user_id, False, True)

            # A resume (4015) is the bot's to test: the fake answers it as Discord documents
            # (op 9 only), which stock discord.py 2.7.1 waits out until its connect timeout.
            await fake.change_voice_server()
            await fake.wait_bot_in_voice()
            assert (fake.voice.resume_count, fake.voice.identify_count) == (0, 2)

            vc.play(discord.PCMAudio(io.BytesIO(tone(0.6, rate=48000, stereo=True))))
            await fake.bot_audio(min_secs=0.4, silence_secs=0.2, timeout=10)
            assert fake.audio.plain_frame_count >= 20 and fake.audio.dave_frame_count == 0
            await vc.disconnect()
