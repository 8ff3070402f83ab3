"""The bot in one voice channel: its connection, its voice and one conversation per member."""

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import discord
from loguru import logger

from voxline.agent import Persona, SessionOptions
from voxline.bots.discord.floor import PlaybackFloor
from voxline.bots.discord.receive import ReceiveStats
from voxline.bots.discord.transport import (
    DISCORD_SAMPLE_RATE,
    SpeakerTransport,
    silence_fill_secs,
)
from voxline.bots.discord.voice_client import ListeningVoiceClient
from voxline.worker import SessionHost

DISCORD_PROMPT = (
    "\nYou are speaking in a Discord voice channel. You are talking with {name}; address them "
    "by name when it helps."
)
WATCHDOG_PERIOD_SECS = 1.0
REJOIN_AFTER_SECS = 10.0  # discord.py retries a dropped voice connection itself first
# Discord announced a member speaking this long ago and not one of their packets came.
UNHEARD_AFTER_SECS = 2.0


@dataclass
class _Speaker:
    transport: SpeakerTransport
    task: asyncio.Task


class VoiceChannelSession:
    """Joined by `/join`, closed by `/leave`, an empty channel or the bot's shutdown.

    Each member who speaks (not bots, not muted members) gets their own `run_session`: their own
    VAD, turn state and LLM context with their display name in it. Replies share one voice and
    take turns (`PlaybackFloor`). If the voice connection is lost and discord.py stops retrying,
    the watchdog joins again and the members' sessions go on; if Discord ended it (a kick, a
    do-not-reconnect close code), the bot leaves and ends them.
    """

    def __init__(
        self, *, voice: ListeningVoiceClient, host: SessionHost, persona: Persona,
        max_speakers: int, idle_leave_secs: float,
        on_closed: Callable[["VoiceChannelSession"], None] = lambda _session: None,
    ):
        self.voice = voice
        self.persona = persona
        self._host = host
        self._max_speakers = max_speakers
        self._idle_leave_secs = idle_leave_secs
        self._on_closed = on_closed
        self._speakers: dict[int, _Speaker] = {}
        self._floor = PlaybackFloor(voice)
        self._closing = asyncio.Event()
        self._watchdog_task: asyncio.Task | None = None
        self._close_task: asyncio.Task | None = None
        self._rejoin_failed = False  # the old connection was ours to end, the new one failed
        self._turned_away: set[int] = set()  # members not listened to: max_speakers reached

    @property
    def channel(self) -> discord.VoiceChannel:
        return self.voice.channel  # follows moves

    @property
    def guild(self) -> discord.Guild:
        return self.voice.guild

    @property
    def speakers(self) -> list[int]:
        return list(self._speakers)

    @property
    def receive_stats(self) -> ReceiveStats:
        return self.voice.receiver.stats if self.voice.receiver else ReceiveStats()

    def start(self) -> None:
        """Begin listening (call once the voice connection is up)."""
        self.voice.listen(self._on_audio)
        self._watchdog_task = asyncio.create_task(
            self._watchdog_task_handler(), name=f"discord-voice-watchdog-{self.guild.id}"
        )

    async def close(self, reason: str) -> None:
        """End every member's session and leave the channel."""
        if self._closing.is_set():
            return
        self._closing.set()
        logger.info("Discord: leaving #{} in {} ({})", self.channel.name, self.guild.name, reason)
        if self._watchdog_task and self._watchdog_task is not asyncio.current_task():
            self._watchdog_task.cancel()
            await asyncio.gather(self._watchdog_task, return_exceptions=True)
        await asyncio.gather(*(self.end_speaker(uid, reason) for uid in list(self._speakers)))
        await self._floor.close()
        await self._leave_voice()
        self._on_closed(self)

    async def set_persona(self, persona: Persona) -> None:
        """New instructions apply at once: each member's next words start a fresh session."""
        self.persona = persona
        await asyncio.gather(*(self.end_speaker(uid, "persona changed")
                               for uid in list(self._speakers)))

    async def end_speaker(self, user_id: int, reason: str) -> None:
        """End one member's session (they left, went mute or the bot leaves)."""
        speaker = self._speakers.get(user_id)
        if speaker is None:
            return
        await speaker.transport.disconnect(reason)
        await asyncio.gather(speaker.task, return_exceptions=True)

    async def end_speakers_outside(self, channel: discord.abc.Connectable) -> None:
        """The bot was moved to `channel`: members it can no longer hear are done."""
        gone = [uid for uid in self._speakers
                if (member := self.guild.get_member(uid)) is None or member.voice is None
                or member.voice.channel != channel]
        await asyncio.gather(*(self.end_speaker(uid, f"the bot moved to #{channel.name}")
                               for uid in gone))

    def receive_problem(self) -> str | None:
        """Why receive looks broken, or None: members Discord says are speaking whose audio
        does not arrive (a firewall or NAT dropping the voice server's UDP)."""
        receiver = self.voice.receiver
        unheard = receiver.unheard_speakers(UNHEARD_AFTER_SECS) if receiver else []
        if not unheard:
            return None
        names = ", ".join(self._name(uid) for uid in unheard)
        return (f"receive degraded: Discord says {names} started speaking, but no audio "
                "arrived (is UDP from the voice server blocked?)")

    def members_heard(self) -> str:
        """Packets decoded per member, for /status."""
        counts = self.receive_stats.decoded_by_member
        return ", ".join(f"{self._name(uid)} {n}" for uid, n in counts.most_common()) or "nobody"

    def _name(self, user_id: int) -> str:
        member = self.guild.get_member(user_id)
        return member.display_name if member else str(user_id)

    async def _leave_voice(self) -> None:
        # An ended connection is left already: discord.py would wait for a confirmation that
        # never comes.
        if not self.voice.ended:
            await self.voice.disconnect(force=True)

    def humans_present(self) -> list[discord.Member]:
        """Members in the channel other than bots."""
        return [m for m in self.channel.members if not m.bot]

    def _on_audio(self, user_id: int, pcm: bytes) -> None:
        """A packet's worth of one member's speech (on the loop, from the receiver)."""
        if self._closing.is_set():
            return
        member = self.guild.get_member(user_id)
        if not self._should_listen_to(member):
            return
        speaker = self._speakers.get(user_id)
        if speaker is None:
            if len(self._speakers) >= self._max_speakers:
                if user_id not in self._turned_away:  # once per member, not per packet
                    self._turned_away.add(user_id)
                    logger.warning("Discord: {} speakers already (discord.max_speakers); not "
                                   "listening to {}", self._max_speakers, member.display_name)
                return
            speaker = self._start_speaker(member)
        speaker.transport.feed(pcm)

    def _should_listen_to(self, member: discord.Member | None) -> bool:
        if member is None or member.bot:
            return False
        voice = member.voice
        return (voice is not None and voice.channel == self.channel
                and not (voice.self_mute or voice.mute))

    def _start_speaker(self, member: discord.Member) -> _Speaker:
        name = member.display_name
        settings = self._host.settings
        transport = SpeakerTransport(floor=self._floor, name=f"discord-{member.id}",
                                     silence_fill=silence_fill_secs(settings.vad, settings.agent))
        transport.output().configure(enable_barge_in=settings.agent.enable_interruptions)
        options = SessionOptions(
            session_id=f"discord-{uuid.uuid4().hex[:12]}", transport="discord",
            persona=Persona(self.persona.system_prompt + DISCORD_PROMPT.format(name=name)),
            worker_id=self._host.worker_id,
            client=f"{name} in #{self.channel.name} ({self.guild.name})",
            audio_in_sample_rate=16000, audio_out_sample_rate=DISCORD_SAMPLE_RATE,
            guild=self.guild.name, channel=self.channel.name, speaker=name,
            speaker_id=str(member.id),
        )
        logger.info("Discord: {} started talking in #{}", name, self.channel.name)
        task = asyncio.create_task(self._host.run(transport, options),
                                   name=f"discord-session-{member.id}")
        speaker = self._speakers[member.id] = _Speaker(transport, task)
        task.add_done_callback(lambda _t, uid=member.id, s=speaker: self._forget(uid, s))
        return speaker

    def _forget(self, user_id: int, speaker: _Speaker) -> None:
        if self._speakers.get(user_id) is speaker:
            del self._speakers[user_id]
            self._turned_away.clear()  # a place is free: whoever speaks next gets it

    async def _watchdog_task_handler(self) -> None:
        """Leave an empty channel after the idle time; leave when Discord ended the connection
        (a kick, close codes 4014/4021/4022); join again if it is lost otherwise and
        discord.py no longer retries."""
        empty_since: float | None = None
        disconnected_since: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(WATCHDOG_PERIOD_SECS)
            now = loop.time()
            empty_since = (empty_since or now) if not self.humans_present() else None
            if empty_since is not None and now - empty_since >= self._idle_leave_secs:
                await self.close("channel empty")
                return
            # Before the connection check: discord.py still counts as connected while it
            # waits to learn whether a 4022 was a move.
            reason = self.voice.final_close_reason()
            if reason is not None or (self.voice.ended and not self._rejoin_failed):
                await self.close(reason or "discord.py gave up the voice connection")
                return
            if self.voice.is_connected():
                disconnected_since = None
                if not self.voice.is_polling:
                    # discord.py's voice poller died of an exception (one in its DAVE proposal
                    # handling, say) while it still reports connected: nothing would be heard.
                    logger.warning("Discord: the voice connection to #{} stopped working "
                                   "({!r}); joining again", self.channel.name,
                                   self.voice.poller_error())
                    await self._rejoin()
                continue
            disconnected_since = disconnected_since or now
            # Only once discord.py has stopped trying: a second join beside its own reconnect
            # would fight it for the voice state.
            if now - disconnected_since >= REJOIN_AFTER_SECS and not self.voice.is_polling:
                await self._rejoin()
                disconnected_since = None

    async def _rejoin(self) -> None:
        """The voice connection is lost for good: connect again; sessions keep running."""
        channel = self.channel
        logger.warning("Discord: voice connection to #{} lost; joining again", channel.name)
        try:
            await self._leave_voice()
            self.voice = await channel.connect(cls=ListeningVoiceClient, reconnect=True)
        except (discord.DiscordException, TimeoutError, OSError) as e:
            logger.warning("Discord: joining #{} again failed: {}", channel.name, e)
            self._rejoin_failed = True
            return
        self._rejoin_failed = False
        self._floor.set_player(self.voice)
        self.voice.listen(self._on_audio)
