"""discord.py's `VoiceClient` with receive: speaking events name each SSRC's member."""

import asyncio
import struct
from collections.abc import Callable
from typing import Any

import discord
from discord.gateway import DiscordVoiceWebSocket
from discord.voice_state import ConnectionFlowState, VoiceConnectionState
from loguru import logger

from voxline.bots.discord.receive import ReceiveKeys, VoiceReceiver
from voxline.bots.discord.rtp import SUPPORTED_MODE

# The bot speaks, so its encoder is tuned for speech: Opus's VoIP mode at a bitrate where speech
# is transparent (discord.py's default, 128 kbps "audio", is for music).
SPEECH_BITRATE_KBPS = 48

# discord.py sends UDP only while it plays; a NAT forgets an idle mapping (often within 30 s)
# and incoming audio then stops silently. discord.js sends this keepalive: 8 bytes, every 5 s.
KEEPALIVE_SECS = 5.0

# Voice close codes after which Discord says not to reconnect.
CLOSE_DISCONNECTED = 4014  # a moderator disconnected the bot, or the channel was deleted
CLOSE_RATE_LIMITED = 4021
CLOSE_CALL_TERMINATED = 4022
FINAL_CLOSE_REASONS = {
    CLOSE_DISCONNECTED: "disconnected from voice by a moderator (or the channel was deleted)",
    CLOSE_RATE_LIMITED: "Discord rate-limited the voice connection; not reconnecting",
    CLOSE_CALL_TERMINATED: "Discord ended the call; not reconnecting",
}


class EitherOrderConnectionState(VoiceConnectionState):
    """discord.py's voice connection state, taking the two updates that answer op 4 in either
    order when it re-sends op 4 for the channel it is in (its resume path, after close 4015).
    Discord documents no order; discord.py 2.7.1 there counts the state update only after the
    server update, and otherwise waits out its connect timeout."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._resending_op4 = False  # op 4 sent again while connected
        self._state_update_seen = False  # ... and the state update for it came first

    async def _voice_connect(self, **kwargs: Any) -> None:
        self._resending_op4 = self.state is ConnectionFlowState.connected
        self._state_update_seen = False
        await super()._voice_connect(**kwargs)

    async def voice_state_update(self, data: Any) -> None:
        if (self._resending_op4 and self.state is ConnectionFlowState.connected
                and data.get("channel_id") is not None):
            self._state_update_seen = True
        await super().voice_state_update(data)

    async def voice_server_update(self, data: Any) -> None:
        await super().voice_server_update(data)
        if (self._resending_op4 and self._state_update_seen
                and self.state is ConnectionFlowState.got_voice_server_update):
            self.state = ConnectionFlowState.got_both_voice_updates
        if self.state is ConnectionFlowState.got_both_voice_updates:
            self._resending_op4 = False


class ListeningVoiceClient(discord.VoiceClient):
    """Joins like any voice client; `listen(on_audio)` then delivers each member's speech.

    The voice websocket hook sees op 5 (SPEAKING: user id ↔ SSRC) and op 13 (a member left);
    discord.py itself ignores both. Use as `channel.connect(cls=ListeningVoiceClient)`.
    """

    def __init__(self, client: discord.Client, channel: discord.abc.Connectable):
        super().__init__(client, channel)
        self.receiver: VoiceReceiver | None = None
        # Op 5s seen before `listen()`: members already speaking when the bot joined.
        self._speaking_before_listen: dict[int, int] = {}  # ssrc → user id
        self._keepalive_task: asyncio.Task | None = None
        self._dave_recovery_task: asyncio.Task | None = None
        self._last_transition_id = 0  # of the DAVE transitions announced in JSON (ops 21, 22)
        self.ended = False  # discord.py is done with this connection: it will not reconnect

    def play(self, source: discord.AudioSource, **kwargs: Any) -> None:
        kwargs.setdefault("application", "voip")
        kwargs.setdefault("bitrate", SPEECH_BITRATE_KBPS)
        kwargs.setdefault("signal_type", "voice")
        super().play(source, **kwargs)

    def cleanup(self) -> None:
        """discord.py calls this when it gives the connection up for good (a kick, a final
        close code, a failed move, or our own disconnect), never between its retries."""
        self.ended = True
        for task in (self._keepalive_task, self._dave_recovery_task):
            if task is not None:
                task.cancel()
        super().cleanup()

    @property
    def close_code(self) -> int | None:
        """The voice websocket's close code from Discord, once it is closed."""
        socket = getattr(getattr(self._connection, "ws", None), "ws", None)
        return getattr(socket, "close_code", None)

    @property
    def is_polling(self) -> bool:
        """discord.py's voice poller is alive: it reads the voice websocket and resumes or
        reconnects by itself. Dead, nothing is heard, whatever `is_connected()` says."""
        runner = self._connection._runner
        return runner is not None and not runner.done()

    def poller_error(self) -> BaseException | None:
        """What killed discord.py's voice poller, if an exception did (taking it marks it
        handled: unretrieved, asyncio would log it whenever the task is collected)."""
        runner = self._connection._runner
        if runner is None or not runner.done() or runner.cancelled():
            return None
        return runner.exception()

    @property
    def end_to_end_privacy_code(self) -> str | None:
        """The DAVE group's privacy code while the call is end-to-end encrypted, else None.
        discord.py's `voice_privacy_code` still shows the old group's code after the call went
        back to transport encryption only (a member without DAVE joined)."""
        return self.voice_privacy_code if self._media_protocol_version else None

    @property
    def _media_protocol_version(self) -> int:
        """The DAVE version the call's media uses now; 0: transport encryption only. discord.py
        counts a call as downgraded from a downgrade's execution until an upgrade executes;
        before that, members send plain frames even though the version says 1."""
        state = self._connection
        return 0 if state.dave_downgraded else state.dave_protocol_version

    def final_close_reason(self) -> str | None:
        """Why Discord said not to come back, if it did: a final close code (4014 only when
        the bot is no longer in a voice channel: a move also closes with 4014)."""
        code = self.close_code
        if code == CLOSE_DISCONNECTED and self.guild.me.voice is not None:
            return None
        return FINAL_CLOSE_REASONS.get(code)

    def create_connection_state(self) -> VoiceConnectionState:
        return EitherOrderConnectionState(self, hook=self._on_voice_ws_message)

    def listen(self, on_audio: Callable[[int, bytes], None]) -> VoiceReceiver:
        """Start receiving: `on_audio(user_id, pcm_16k_mono)` is called on the event loop."""
        if self.receiver is None:
            self.receiver = VoiceReceiver(
                keys=self._receive_keys, on_audio=on_audio, loop=asyncio.get_running_loop(),
                on_undecryptable=self._recover_dave,
            )
            for ssrc, user_id in self._speaking_before_listen.items():
                self.receiver.on_speaking(user_id, ssrc, speaking=False)
            self._connection.add_socket_listener(self.receiver.on_datagram)
            self._keepalive_task = asyncio.create_task(
                self._keepalive_task_handler(), name=f"discord-udp-keepalive-{self.guild.id}")
        return self.receiver

    def _recover_dave(self, user_id: int) -> None:
        """A member's audio stopped decrypting: leave and rejoin the DAVE group (op 31 for the
        last transition, then a new key package), once at a time."""
        if self._dave_recovery_task is not None and not self._dave_recovery_task.done():
            return
        logger.warning("Discord: audio of user {} does not decrypt (DAVE); asking to be added "
                       "to the group again", user_id)
        self._dave_recovery_task = asyncio.create_task(
            self._dave_recovery_task_handler(), name=f"discord-dave-recovery-{self.guild.id}")

    async def _dave_recovery_task_handler(self) -> None:
        try:
            await self._connection._recover_from_invalid_commit(self._last_transition_id)
        except Exception as e:  # a closed websocket, a davey error: the next failures retry
            logger.warning("Discord: DAVE recovery failed: {}", e)

    async def _keepalive_task_handler(self) -> None:
        count = 0
        while True:
            await asyncio.sleep(KEEPALIVE_SECS)
            if not self.is_connected():
                continue
            try:
                self._connection.send_packet(struct.pack("<I", count) + bytes(4))
            except OSError as e:  # a reconnect is replacing the socket: the next one goes
                logger.debug("Discord: UDP keepalive not sent: {}", e)
            count = (count + 1) & 0xFFFFFFFF

    def _receive_keys(self) -> ReceiveKeys | None:
        """Read on the socket thread: the current transport key and DAVE session, if any."""
        state = self._connection
        secret_key = state.secret_key
        if state.mode != SUPPORTED_MODE or not secret_key or secret_key is discord.utils.MISSING:
            return None
        return ReceiveKeys(secret_key=bytes(secret_key), dave_session=state.dave_session,
                           dave_protocol_version=self._media_protocol_version)

    async def _on_voice_ws_message(self, ws: DiscordVoiceWebSocket, msg: dict[str, Any]) -> None:
        op, data = msg.get("op"), msg.get("d") or {}
        if op in (DiscordVoiceWebSocket.DAVE_PREPARE_TRANSITION,
                  DiscordVoiceWebSocket.DAVE_EXECUTE_TRANSITION) and "transition_id" in data:
            self._last_transition_id = int(data["transition_id"])
        if op == DiscordVoiceWebSocket.RESUMED and ws.secret_key is None:
            # A resumed session keeps its key, and Discord sends no new SESSION_DESCRIPTION;
            # discord.py waits for one on every new websocket and would give up the resume.
            ws.secret_key = self._connection.secret_key
            return
        if op == DiscordVoiceWebSocket.SPEAKING and "ssrc" in data and "user_id" in data:
            user_id, ssrc = int(data["user_id"]), int(data["ssrc"])
            if self.receiver is None:
                self._speaking_before_listen[ssrc] = user_id
            else:
                self.receiver.on_speaking(user_id, ssrc, speaking=bool(data.get("speaking", 1)))
        elif op == DiscordVoiceWebSocket.CLIENT_DISCONNECT and "user_id" in data:
            user_id = int(data["user_id"])
            if self.receiver is None:
                self._speaking_before_listen = {
                    s: u for s, u in self._speaking_before_listen.items() if u != user_id}
            else:
                self.receiver.forget_user(user_id)
