"""What the fake Discord knows: ids, the one guild, its channels, members and voice states.

One guild with one text channel and two voice channels is all a voice bot's tests need.
Plain data, no I/O: the gateway, REST and voice servers read and change it.
"""

import itertools
import secrets
import time
from dataclasses import dataclass, field

DISCORD_EPOCH_MS = 1420070400000

# Permission bits (discord.Permissions) the fake grants through @everyone.
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
EMBED_LINKS = 1 << 14
READ_MESSAGE_HISTORY = 1 << 16
CONNECT = 1 << 20
SPEAK = 1 << 21
USE_VOICE_ACTIVATION = 1 << 25
USE_APPLICATION_COMMANDS = 1 << 31
MANAGE_GUILD = 1 << 5
EVERYONE_PERMISSIONS = (VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | READ_MESSAGE_HISTORY
                        | CONNECT | SPEAK | USE_VOICE_ACTIVATION | USE_APPLICATION_COMMANDS)


class Snowflakes:
    """Increasing Discord-style ids (timestamp << 22 | counter), unique within one fake."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def next(self) -> int:
        now_ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return (now_ms << 22) | (next(self._counter) & 0x3FFFFF)


@dataclass
class VoiceRecord:
    """One user's voice state in the guild."""

    channel_id: int
    session_id: str
    self_mute: bool = False
    self_deaf: bool = False
    mute: bool = False
    deaf: bool = False


@dataclass
class Person:
    """A guild member's identity (the bot included)."""

    user_id: int
    name: str
    bot: bool = False
    manage_guild: bool = False  # "Manage Server": may run commands that require it


@dataclass
class World:
    """The fake's state. `bot_can_connect=False` denies the bot CONNECT in both voice channels."""

    bot_name: str = "Voxline"
    bot_can_connect: bool = True
    ids: Snowflakes = field(default_factory=Snowflakes)
    people: dict[int, Person] = field(default_factory=dict)
    voice: dict[int, VoiceRecord] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.app_id = self.ids.next()
        self.bot_user_id = self.app_id  # as on Discord: the bot user shares the application's id
        self.bot_token = f"fake-bot-token.{secrets.token_hex(8)}"
        self.owner_id = self.ids.next()
        self.guild_id = self.ids.next()
        self.text_channel_id = self.ids.next()
        self.voice_channel_id = self.ids.next()
        self.other_voice_channel_id = self.ids.next()
        self.people[self.bot_user_id] = Person(self.bot_user_id, self.bot_name, bot=True)

    @property
    def voice_channel_ids(self) -> tuple[int, int]:
        return (self.voice_channel_id, self.other_voice_channel_id)

    def in_channel(self, channel_id: int | None) -> list[int]:
        """User ids in that voice channel, the bot included, in join order."""
        return [uid for uid, rec in self.voice.items() if rec.channel_id == channel_id]

    def bot_channel_id(self) -> int | None:
        record = self.voice.get(self.bot_user_id)
        return record.channel_id if record else None
