"""A loopback fake Discord for testing a real discord.py bot offline, voice and DAVE included.

See FakeDiscord for the entry point and tests/bots/discord/test_fake_discord.py for use.
"""

from .fake_discord import FakeDiscord
from .interactions import InteractionResponse
from .members import FakeMember

__all__ = ["FakeDiscord", "FakeMember", "InteractionResponse"]
