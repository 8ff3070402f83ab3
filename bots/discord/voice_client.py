"""discord.py's `VoiceClient` with receive: speaking events name each SSRC's member."""

import asyncio
from collections.abc import Callable
from typing import Any

import discord
from discord.gateway import DiscordVoiceWebSocket
from discord.voice_state import VoiceConnectionState

from voxline.bots.discord.receive import ReceiveKeys, VoiceReceiver
from voxline.bots.discord.rtp import SUPPORTED_MODE


class ListeningVoiceClient(discord.VoiceClient):
    """Joins like any voice client; `listen(on_audio)` then delivers each member's speech.

    The voice websocket hook sees op 5 (SPEAKING: user id ↔ SSRC) and op 13 (a member left);
    discord.py itself ignores both. Use as `channel.connect(cls=ListeningVoiceClient)`.
    """

    def __init__(self, client: discord.Client, channel: discord.abc.Connectable):
        super().__init__(client, channel)
        self.receiver: VoiceReceiver | None = None

    def create_connection_state(self) -> VoiceConnectionState:
        return VoiceConnectionState(self, hook=self._on_voice_ws_message)

    def listen(self, on_audio: Callable[[int, bytes], None]) -> VoiceReceiver:
        """Start receiving: `on_audio(user_id, pcm_16k_mono)` is called on the event loop."""
        if self.receiver is None:
            self.receiver = VoiceReceiver(
                keys=self._receive_keys, on_audio=on_audio, loop=asyncio.get_running_loop()
            )
            self._connection.add_socket_listener(self.receiver.on_datagram)
        return self.receiver

    def _receive_keys(self) -> ReceiveKeys | None:
        """Read on the socket thread: the current transport key and DAVE session, if any."""
        state = self._connection
        secret_key = state.secret_key
        if state.mode != SUPPORTED_MODE or not secret_key or secret_key is discord.utils.MISSING:
            return None
        dave = state.dave_session if state.dave_protocol_version else None
        return ReceiveKeys(secret_key=bytes(secret_key), dave_session=dave)

    async def _on_voice_ws_message(self, _ws: DiscordVoiceWebSocket, msg: dict[str, Any]) -> None:
        if self.receiver is None:
            return
        op, data = msg.get("op"), msg.get("d") or {}
        if op == DiscordVoiceWebSocket.SPEAKING and "ssrc" in data and "user_id" in data:
            self.receiver.on_speaking(int(data["user_id"]), int(data["ssrc"]))
        elif op == DiscordVoiceWebSocket.CLIENT_DISCONNECT and "user_id" in data:
            self.receiver.forget_user(int(data["user_id"]))
