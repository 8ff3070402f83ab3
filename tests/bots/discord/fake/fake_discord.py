"""FakeDiscord: REST, gateway, TLS voice websocket, UDP voice and DAVE, all on 127.0.0.1.

A real `discord.Client` logs in, syncs slash commands, answers interactions and joins
voice against it, fully offline. Fake members join voice with their own DAVE sessions,
speak (Opus, end-to-end and transport encrypted), and hear the bot. Everything this
class starts, `close()` (or leaving `async with`) stops and awaits.
"""

import asyncio
import contextlib
import secrets
import socket
from collections.abc import Iterator
from typing import Any

import aiohttp
import discord
import discord.gateway
import discord.http
import yarl
from aiohttp import web
from loguru import logger

from tests.loopback_tls import LOOPBACK, LoopbackCertificate

from . import payloads
from .audio import BotAudio
from .gateway import GatewayServer
from .interactions import CommandStore, InteractionBroker, InteractionResponse
from .members import FakeMember
from .mls_group import DAVE_MAGIC, MlsCoordinator
from .rest import API_PREFIX, RestApi
from .rtp import RtpPacket
from .sender import MediaSender
from .signals import Changed
from .voice_server_flow import BotVoiceFlow
from .voice_ws import VoiceServer
from .world import Person, VoiceRecord, World


class FakeDiscord:
    """A loopback Discord for one bot and one guild. Use as `async with FakeDiscord() as fake`.

    `dave=False` runs voice without end-to-end encryption (dave_protocol_version 0, no DAVE
    op ever). `bot_can_connect=False` denies the bot CONNECT in the voice channels.
    """

    def __init__(self, *, dave: bool = True, bot_name: str = "Voxline",
                 bot_can_connect: bool = True, reply_timeout_secs: float = 5.0,
                 server_update_first: bool = False) -> None:
        self.dave = dave
        # Discord documents no order between the two updates that answer a join.
        self.server_update_first = server_update_first
        self.world = World(bot_name=bot_name, bot_can_connect=bot_can_connect)
        self.members: dict[int, FakeMember] = {}
        self.bot_speaking_events: list[dict[str, Any]] = []
        self.commands = CommandStore(self.world)
        self._broker = InteractionBroker(self.world, self.commands)
        self.rest = RestApi(self.world, self.commands, self._broker)
        self._changed = Changed()
        self._reply_timeout_secs = reply_timeout_secs
        self._flow = BotVoiceFlow(self)
        self.gateway = GatewayServer(self.world, self._changed, self._flow.on_voice_state)
        self.audio = BotAudio()
        self._cert: LoopbackCertificate | None = None
        self._runner: web.AppRunner | None = None
        self.voice: VoiceServer | None = None
        self.mls: MlsCoordinator | None = None
        self._sender: MediaSender | None = None
        self.http_port = 0

    def __repr__(self) -> str:
        return f"FakeDiscord(http={self.http_port}, dave={self.dave})"

    async def __aenter__(self) -> "FakeDiscord":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        self._cert = LoopbackCertificate()
        self.voice = VoiceServer(self.world, self._cert, self._changed, dave=self.dave,
                                 on_rtp=self._on_bot_rtp,
                                 on_bot_speaking=self.bot_speaking_events.append)
        self._sender = MediaSender(self.voice)
        if self.dave:
            self.mls = MlsCoordinator(self.world, self.members, self.voice, self._changed,
                                      self._sender, reply_timeout_secs=self._reply_timeout_secs)
            self.voice.mls = self.mls
        app = web.Application(middlewares=[self.rest.log_middleware])
        self.rest.add_routes(app)
        self.gateway.add_routes(app)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((LOOPBACK, 0))
        await web.SockSite(self._runner, sock).start()
        self.http_port = sock.getsockname()[1]
        self.gateway.url = f"ws://{LOOPBACK}:{self.http_port}/gateway"
        await self.voice.start()
        logger.info("{}: listening (voice {})", self, self.voice)

    async def close(self) -> None:
        await self.gateway.close()
        if self.voice is not None:
            await self.voice.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._cert is not None:
            self._cert.close()

    # -- pointing discord.py here ----------------------------------------------------------

    @property
    def api_base(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}{API_PREFIX}"

    @contextlib.contextmanager
    def patched(self) -> Iterator[None]:
        """Points discord.py's REST base and gateway URL here; restores them on exit."""
        saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway.url)
        try:
            yield
        finally:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved

    def client_kwargs(self) -> dict[str, Any]:
        """discord.Client kwargs: a connector that trusts the fake's certificate, and a short
        guild_ready_timeout (on_ready then fires 0.1 s after GUILD_CREATE, not 2 s).
        Call inside the running loop: aiohttp's connector needs one."""
        return {"connector": aiohttp.TCPConnector(ssl=self._cert.client_context()),
                "guild_ready_timeout": 0.1}

    # -- ids -----------------------------------------------------------------------------

    @property
    def bot_token(self) -> str:
        return self.world.bot_token

    @property
    def bot_user_id(self) -> int:
        return self.world.bot_user_id

    @property
    def application_id(self) -> int:
        return self.world.app_id

    @property
    def guild_id(self) -> int:
        return self.world.guild_id

    @property
    def text_channel_id(self) -> int:
        return self.world.text_channel_id

    @property
    def voice_channel_id(self) -> int:
        return self.world.voice_channel_id

    @property
    def other_voice_channel_id(self) -> int:
        return self.world.other_voice_channel_id

    # -- members and voice states ---------------------------------------------------------

    def add_member(self, name: str, *, bot: bool = False,
                   manage_guild: bool = False) -> FakeMember:
        """A new guild member (GUILD_MEMBER_ADD if the bot is connected); `manage_guild`:
        the Manage Server permission."""
        user_id = self.world.ids.next()
        self.world.people[user_id] = Person(user_id, name, bot=bot, manage_guild=manage_guild)
        ssrc = 200 + len(self.members)  # the bot's ssrc is >= 65536, so never the same
        member = FakeMember(user_id=user_id, name=name, ssrc=ssrc, bot=bot,
                            sender=self._require_sender())
        self.members[user_id] = member
        self.gateway.post("GUILD_MEMBER_ADD", payloads.member(self.world, user_id)
                          | {"guild_id": str(self.world.guild_id)})
        return member

    def _require_sender(self) -> MediaSender:
        if self._sender is None:
            raise RuntimeError("FakeDiscord is not started; use `async with FakeDiscord()`")
        return self._sender

    async def join_voice(self, member: FakeMember, channel_id: int | None = None, *,
                         self_mute: bool = False, self_deaf: bool = False) -> None:
        """Puts the member in a voice channel (default: voice_channel_id).

        With the bot in that channel and DAVE on, returns once the member is in the MLS group.
        """
        channel_id = channel_id or self.world.voice_channel_id
        previous = self.world.voice.get(member.user_id)
        if previous is not None and previous.channel_id != channel_id and self.mls is not None:
            await self.mls.remove_member(member)  # a move leaves the old channel's group
        self.world.voice[member.user_id] = VoiceRecord(
            channel_id, secrets.token_hex(16), self_mute=self_mute, self_deaf=self_deaf)
        await self.gateway.dispatch("VOICE_STATE_UPDATE",
                                    payloads.voice_state(self.world, member.user_id))
        if self.mls is not None:
            await self.mls.add_member(member)
        self._changed.notify()

    async def leave_voice(self, member: FakeMember) -> None:
        self.world.voice.pop(member.user_id, None)
        await self.gateway.dispatch("VOICE_STATE_UPDATE",
                                    payloads.voice_state(self.world, member.user_id))
        if self.mls is not None:
            await self.mls.remove_member(member)
        self._changed.notify()

    async def join_voice_briefly(self, member: FakeMember) -> None:
        """The member joins the bot's voice channel and leaves again before the DAVE group
        has committed their Add (the voice server revokes the proposal)."""
        if self.mls is None:
            raise RuntimeError("join_voice_briefly needs DAVE (FakeDiscord(dave=True))")
        self.world.voice[member.user_id] = VoiceRecord(self.world.bot_channel_id(),
                                                       secrets.token_hex(16))
        await self.gateway.dispatch("VOICE_STATE_UPDATE",
                                    payloads.voice_state(self.world, member.user_id))
        try:
            await self.mls.add_member_briefly(member)
        finally:
            await self.leave_voice(member)

    async def set_voice_flags(self, member: FakeMember, **flags: bool) -> None:
        """Changes self_mute / self_deaf / mute / deaf and dispatches VOICE_STATE_UPDATE."""
        record = self.world.voice.get(member.user_id)
        if record is None:
            raise RuntimeError(f"{member} is not in voice; join_voice() first")
        for name, value in flags.items():
            if name not in ("self_mute", "self_deaf", "mute", "deaf"):
                raise TypeError(f"unknown voice flag {name!r}; use self_mute, self_deaf, "
                                "mute or deaf")
            setattr(record, name, value)
        await self.gateway.dispatch("VOICE_STATE_UPDATE",
                                    payloads.voice_state(self.world, member.user_id))

    async def set_bot_can_connect(self, can_connect: bool) -> None:
        """Grants or denies the bot CONNECT in the voice channels (CHANNEL_UPDATE)."""
        self.world.bot_can_connect = can_connect
        for channel in payloads.channels(self.world)[1:]:
            await self.gateway.dispatch("CHANNEL_UPDATE", channel)

    # -- waiting -------------------------------------------------------------------------
    # `timeout=` (seconds) is the agreed test API, hence the ASYNC109 waivers below.

    async def wait_until_ready(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """The bot identified and got READY and GUILD_CREATE."""
        await self._changed.wait_for(lambda: self.gateway.is_ready, timeout_secs=timeout,
                                     what="the bot to identify on the gateway")

    @property
    def is_bot_in_voice(self) -> bool:
        """Voice session up (UDP selected, key sent) and, with DAVE, the MLS group settled."""
        if self.voice is None or not self.voice.is_bot_connected:
            return False
        return self.mls is None or not self.voice.session.dave or self.mls.is_settled

    async def wait_bot_in_voice(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        await self._changed.wait_for(lambda: self.is_bot_in_voice, timeout_secs=timeout,
                                     what=f"the bot in voice ({self.voice.session}, {self.mls})")

    async def wait_bot_out_of_voice(
            self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        bot = self.world.bot_user_id
        await self._changed.wait_for(lambda: bot not in self.world.voice, timeout_secs=timeout,
                                     what="the bot to leave voice")

    # -- interactions --------------------------------------------------------------------

    async def slash(self, member: FakeMember, command: str, *,
                    timeout: float = 10.0, **options: Any) -> str:  # noqa: ASYNC109
        """Runs /command as `member` in the text channel; returns the text of the bot's reply."""
        payload, pending = self._broker.create(member.user_id, command, options)
        await self.gateway.dispatch("INTERACTION_CREATE", payload)
        try:
            return await asyncio.wait_for(pending.reply, timeout)
        except TimeoutError:
            state = "deferred, then nothing" if pending.deferred else "no answer"
            raise TimeoutError(f"fake Discord: /{command} by {member.name}: {state} within "
                               f"{timeout:g}s") from None

    @property
    def interaction_responses(self) -> list[InteractionResponse]:
        return self._broker.responses

    # -- the bot's audio -------------------------------------------------------------------

    def _on_bot_rtp(self, packet: RtpPacket) -> None:
        frame = packet.payload
        is_e2ee = self.mls is not None and frame.endswith(DAVE_MAGIC)
        try:
            plain = self.mls.decrypt_from_bot(frame) if self.mls is not None else frame
        except ValueError as e:
            self.audio.undecryptable_count += 1
            logger.warning("{}: could not DAVE-decrypt the bot's frame: {}", self, e)
            return
        self.audio.on_frame(plain, was_encrypted=is_e2ee)

    @property
    def bot_packet_count(self) -> int:
        """RTP packets received from the bot (transport-decrypted)."""
        return self.audio.packet_count

    async def bot_audio(self, *, min_secs: float = 0.5, silence_secs: float = 1.0,
                        timeout: float = 30.0) -> bytes:  # noqa: ASYNC109
        """The bot's speech since the last call, as 48 kHz stereo int16 bytes; returns after
        at least min_secs of voiced audio followed by silence_secs of quiet."""
        return await self.audio.collect(min_secs=min_secs, silence_secs=silence_secs,
                                        timeout_secs=timeout)

    # -- voice server faults -------------------------------------------------------------

    async def drop_voice(self, code: int = 4015) -> None:
        """Closes the bot's voice websocket with `code` (4015: discord.py resumes)."""
        await self._flow.drop_voice(code)

    async def kick_bot(self, *, voice_ws_first: bool = False) -> None:
        """A moderator disconnects the bot from voice (voice close 4014)."""
        await self._flow.kick_bot(voice_ws_first=voice_ws_first)

    async def move_bot(self, channel_id: int) -> None:
        """A moderator moves the bot to another voice channel."""
        await self._flow.move_bot(channel_id)

    async def change_voice_server(self, *, new_endpoint: bool = False) -> None:
        """VOICE_SERVER_UPDATE with a new token (and the other endpoint if new_endpoint)."""
        await self._flow.change_voice_server(new_endpoint=new_endpoint)
