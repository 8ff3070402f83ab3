"""The bot's side of joining voice through the main gateway, and voice-server faults.

Op 4 from the bot → VOICE_STATE_UPDATE (session_id = the gateway session, as on
Discord) and VOICE_SERVER_UPDATE {token, guild_id, endpoint: '127.0.0.1:PORT'}.

Discord documents no order between the two updates: the fake sends them in either
(`FakeDiscord(server_update_first=...)`), for a new join and for op 4 re-sent for the
channel the bot is in (discord.py's 4015 resume path; same token, so RESUME matches).
Stock discord.py 2.7.1 handles only server-first there; the bot's voice client takes both.

A voice-server change closes the old voice websocket with 4014 *before* sending the
VOICE_SERVER_UPDATE. The other order races inside discord.py: its handler awaits
`ws.close(4014)` while the poller, woken by the same close, starts `_potential_reconnect`,
whose `_wait_for_state` creates its waiter task lazily and so can miss the state change
that the handler makes next; the bot then gives up after its timeout and leaves voice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loguru import logger

from . import payloads
from .world import VoiceRecord

CLOSE_DISCONNECTED = 4014

if TYPE_CHECKING:
    from .fake_discord import FakeDiscord


class BotVoiceFlow:
    """Handles op 4 and the fake's voice-server faults for FakeDiscord."""

    def __init__(self, fake: FakeDiscord) -> None:
        self._fake = fake
        self._endpoint_index = 0

    def _server_update(self) -> dict:
        fake = self._fake
        return {"token": fake.voice.token, "guild_id": str(fake.world.guild_id),
                "endpoint": fake.voice.endpoints[self._endpoint_index]}

    async def on_voice_state(self, data: dict) -> None:
        """Gateway op 4 from the bot."""
        fake, world = self._fake, self._fake.world
        bot = world.bot_user_id
        channel_id = int(data["channel_id"]) if data.get("channel_id") else None
        current = world.voice.get(bot)
        if channel_id is None:
            if current is not None:
                del world.voice[bot]
                await fake.gateway.dispatch("VOICE_STATE_UPDATE",
                                            payloads.voice_state(world, bot))
                if fake.mls is not None:
                    fake.mls.on_bot_left()
            fake._changed.notify()
            return
        if channel_id not in world.voice_channel_ids:
            logger.warning("{}: bot asked to join unknown voice channel {}", fake, channel_id)
            return
        if not world.bot_can_connect:
            # Discord refuses silently; the client times out. The bot should check first.
            logger.warning("{}: bot lacks CONNECT; its op 4 to {} is ignored", fake, channel_id)
            return
        same_channel = current is not None and current.channel_id == channel_id
        world.voice[bot] = VoiceRecord(channel_id, fake.gateway.session_id,
                                       self_mute=bool(data.get("self_mute")),
                                       self_deaf=bool(data.get("self_deaf")))
        if not (same_channel and fake.voice.token is not None):
            fake.voice.issue_token()  # the same channel again keeps its token: RESUME matches
        state = ("VOICE_STATE_UPDATE", payloads.voice_state(world, bot))
        server = ("VOICE_SERVER_UPDATE", self._server_update())
        for event, payload in (server, state) if fake.server_update_first else (state, server):
            await fake.gateway.dispatch(event, payload)
        fake._changed.notify()

    async def kick_bot(self, *, voice_ws_first: bool) -> None:
        """A moderator's "Disconnect": the bot's voice state loses its channel and the voice
        server closes with 4014. Discord documents no order between the two."""
        fake, world = self._fake, self._fake.world
        bot = world.bot_user_id
        if bot not in world.voice:
            raise RuntimeError("the bot is not in voice; nothing to kick it from")
        if voice_ws_first and fake.voice.is_bot_connected:
            await fake.voice.close_bot_ws(CLOSE_DISCONNECTED)
        del world.voice[bot]
        await fake.gateway.dispatch("VOICE_STATE_UPDATE", payloads.voice_state(world, bot))
        if fake.mls is not None:
            fake.mls.on_bot_left()
        if not voice_ws_first and fake.voice.is_bot_connected:
            await fake.voice.close_bot_ws(CLOSE_DISCONNECTED)
        fake._changed.notify()

    async def move_bot(self, channel_id: int) -> None:
        """A moderator drags the bot to another channel: its voice state names the new
        channel, the old voice connection closes with 4014, and a new voice server is
        assigned (the order that keeps discord.py 2.7.1 out of its move race, above)."""
        fake, world = self._fake, self._fake.world
        bot = world.bot_user_id
        current = world.voice.get(bot)
        if current is None:
            raise RuntimeError("the bot is not in voice; nothing to move")
        world.voice[bot] = VoiceRecord(channel_id, current.session_id,
                                       self_mute=current.self_mute, self_deaf=current.self_deaf)
        await fake.gateway.dispatch("VOICE_STATE_UPDATE", payloads.voice_state(world, bot))
        fake.voice.issue_token()
        if fake.voice.is_bot_connected:
            await fake.voice.close_bot_ws(CLOSE_DISCONNECTED)
        await fake.gateway.dispatch("VOICE_SERVER_UPDATE", self._server_update())
        fake._changed.notify()

    async def drop_voice(self, code: int) -> None:
        await self._fake.voice.close_bot_ws(code)
        self._fake._changed.notify()

    async def change_voice_server(self, *, new_endpoint: bool) -> None:
        fake = self._fake
        if fake.world.bot_user_id not in fake.world.voice:
            raise RuntimeError("the bot is not in voice; nothing to move")
        if new_endpoint:
            self._endpoint_index ^= 1
        fake.voice.issue_token()
        if fake.voice.is_bot_connected:
            await fake.voice.close_bot_ws(CLOSE_DISCONNECTED)
        await fake.gateway.dispatch("VOICE_SERVER_UPDATE", self._server_update())
        fake._changed.notify()
