"""The Discord client: slash commands, voice-state bookkeeping and one channel per guild."""

import asyncio

import discord
from discord import app_commands
from loguru import logger

from voxline.agent import Persona
from voxline.agent.persona import MAX_SYSTEM_PROMPT_CHARS
from voxline.bots.discord.channel import VoiceChannelSession
from voxline.bots.discord.voice_client import ListeningVoiceClient
from voxline.bus import events
from voxline.config.settings import DiscordSettings
from voxline.worker import SessionHost

JOIN_TIMEOUT_SECS = 20.0


class VoxlineDiscordBot(discord.Client):
    """`/join`, `/leave`, `/persona`, `/status`; at most one voice channel per guild.

    Needs no privileged intent: members come with interactions and voice-state events.
    """

    def __init__(self, *, host: SessionHost, settings: DiscordSettings, **client_kwargs):
        intents = discord.Intents.none()
        intents.guilds = True
        intents.voice_states = True
        super().__init__(intents=intents, **client_kwargs)
        self.host = host
        self.settings = settings
        self.channels: dict[int, VoiceChannelSession] = {}  # guild id → where the bot is
        self._personas: dict[int, Persona] = {}  # guild id → set with /persona
        self.tree = app_commands.CommandTree(self)
        self._add_commands()

    async def setup_hook(self) -> None:
        """Register the slash commands: per guild at once, or globally (Discord may take a while
        to show global ones)."""
        if self.settings.guild_ids:
            for guild_id in self.settings.guild_ids:
                guild = discord.Object(id=guild_id)
                self.tree.copy_global_to(guild=guild)
                await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()

    async def close(self) -> None:
        """Leave every voice channel (ending its sessions), then log out."""
        await asyncio.gather(*(s.close("bot shutting down") for s in list(self.channels.values())))
        await super().close()

    async def on_ready(self) -> None:
        logger.info("Discord: logged in as {} in {} guild(s)", self.user, len(self.guilds))

    def component_status(self) -> events.ComponentStatus:
        """The bot as the dashboard's Services view shows it."""
        ready = self.is_ready() and not self.is_closed()
        voice = ", ".join(f"#{s.channel.name} ({s.guild.name})" for s in self.channels.values())
        problems = [p for s in self.channels.values() if (p := s.receive_problem())]
        detail = f"voice: {voice}" if voice else ("ready" if ready else "connecting")
        return events.ComponentStatus(
            name="discord", health="down" if not ready else "degraded" if problems else "ok",
            detail="; ".join([detail, *problems]),
        )

    async def on_voice_state_update(
        self, member: discord.Member, before: discord.VoiceState, after: discord.VoiceState
    ) -> None:
        session = self.channels.get(member.guild.id)
        if session is None:
            return
        if member.id == self.user.id:
            # Reconnects are discord.py's (and the watchdog's); a move leaves members behind.
            if after.channel is not None and after.channel != before.channel:
                await session.end_speakers_outside(after.channel)
            return
        if before.channel == session.channel and after.channel != session.channel:
            await session.end_speaker(member.id, "left the channel")
        elif after.self_mute or after.mute:
            await session.end_speaker(member.id, "muted")

    def _add_commands(self) -> None:
        @self.tree.command(name="join", description="Join your voice channel and talk")
        @app_commands.guild_only()
        async def join(interaction: discord.Interaction) -> None:
            await self._join(interaction)

        @self.tree.command(name="leave", description="Leave the voice channel")
        @app_commands.guild_only()
        async def leave(interaction: discord.Interaction) -> None:
            session = self.channels.get(interaction.guild_id)
            if session is None:
                await _reply(interaction, "I'm not in a voice channel on this server.")
                return
            name = session.channel.name
            await interaction.response.defer(thinking=True)
            await session.close(f"/leave by {interaction.user.display_name}")
            await interaction.followup.send(f"Left #{name}.")

        @self.tree.command(name="persona", description="Set who I am in this server")
        @app_commands.describe(text="Instructions, e.g. 'You are a pirate. Be brief.'")
        @app_commands.guild_only()
        # It changes the bot for everyone on the server: only members who may manage the
        # server see and run it (an admin can grant it to roles in Integrations).
        @app_commands.default_permissions(manage_guild=True)
        async def persona(interaction: discord.Interaction, text: str) -> None:
            await self._set_persona(interaction, text)

        @self.tree.command(name="status", description="Where I am and how I'm doing")
        @app_commands.guild_only()
        async def status(interaction: discord.Interaction) -> None:
            await _reply(interaction, self._status_text(interaction.guild_id))

    async def _join(self, interaction: discord.Interaction) -> None:
        member, guild = interaction.user, interaction.guild
        voice = getattr(member, "voice", None)
        if voice is None or voice.channel is None:
            await _reply(interaction, "Join a voice channel first, then use /join.")
            return
        channel = voice.channel
        current = self.channels.get(guild.id)
        if current is not None:
            where = "here" if current.channel == channel else f"in #{current.channel.name}"
            await _reply(interaction, f"I'm already {where} on this server; use /leave first.")
            return
        permissions = channel.permissions_for(guild.me)
        if not (permissions.connect and permissions.speak):
            await _reply(interaction, f"I can't join #{channel.name}: I need the Connect and "
                         "Speak permissions there. Ask a server admin to grant them.")
            return
        await interaction.response.defer(thinking=True)
        try:
            vc = await channel.connect(cls=ListeningVoiceClient, timeout=JOIN_TIMEOUT_SECS,
                                       reconnect=True)
        except (discord.DiscordException, TimeoutError, OSError) as e:
            logger.warning("Discord: could not join #{}: {!r}", channel.name, e)
            await interaction.followup.send(f"I couldn't join #{channel.name} ({type(e).__name__})"
                                            "; please try again.")
            return
        session = VoiceChannelSession(
            voice=vc, host=self.host, persona=self._persona(guild.id),
            max_speakers=self.settings.max_speakers,
            idle_leave_secs=self.settings.idle_leave_secs,
            on_closed=lambda s: self.channels.pop(s.guild.id, None),
        )
        self.channels[guild.id] = session
        session.start()
        logger.info("Discord: joined #{} in {}", channel.name, guild.name)
        await interaction.followup.send(f"Joined #{channel.name}. Talk to me!")

    async def _set_persona(self, interaction: discord.Interaction, text: str) -> None:
        text = text.strip()
        if not text or len(text) > MAX_SYSTEM_PROMPT_CHARS:
            await _reply(interaction, f"A persona is 1 to {MAX_SYSTEM_PROMPT_CHARS} characters.")
            return
        # Ending the members' sessions can take longer than the 3 s Discord allows for the
        # first response: acknowledge first.
        await interaction.response.defer(thinking=True)
        persona = self._personas[interaction.guild_id] = Persona(text)
        session = self.channels.get(interaction.guild_id)
        if session is not None:
            await session.set_persona(persona)
        await interaction.followup.send("Persona set; it applies from your next words.")

    def _persona(self, guild_id: int) -> Persona:
        return self._personas.get(guild_id) or self.host.persona

    def _status_text(self, guild_id: int) -> str:
        session = self.channels.get(guild_id)
        if session is None:
            return "Not in a voice channel here. Use /join from a voice channel."
        stats = session.receive_stats
        dave = session.voice.end_to_end_privacy_code
        return (
            f"In #{session.channel.name}; listening to {len(session.speakers)} member(s). "
            f"Voice: {'end-to-end encrypted (DAVE), privacy code ' + dave if dave else 'no DAVE'}"
            f", latency {session.voice.average_latency * 1000:.0f} ms. Received "
            f"{stats.decoded} packets ({session.members_heard()}), dropped {stats.dropped}. "
            + (f"{problem}. " if (problem := session.receive_problem()) else "")
            + "Models: " + ", ".join(f"{k} {v}" for k, v in self.host.models.describe().items())
        )


async def _reply(interaction: discord.Interaction, text: str, *, ephemeral: bool = True) -> None:
    await interaction.response.send_message(text, ephemeral=ephemeral)
