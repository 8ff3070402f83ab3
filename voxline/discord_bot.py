"""`voxline discord`: the Discord bot process, publishing on the bus like any worker."""

import os
import socket

import discord

from voxline.bots.discord.bot import VoxlineDiscordBot
from voxline.config.settings import VoxlineSettings
from voxline.server import load_models_logged
from voxline.worker import Worker


class DiscordBotError(Exception):
    """A failure the operator fixes (no token, a token Discord refuses); one line."""


async def run_discord(settings: VoxlineSettings, **client_kwargs) -> None:
    """Load the models, connect to Discord and serve until interrupted.

    `client_kwargs` reach `discord.Client` (the tests pass a connector for a local fake).
    """
    if settings.discord.token is None:
        raise DiscordBotError("no Discord bot token: set DISCORD_TOKEN")
    models = await load_models_logged(settings, "voxline discord")
    bot: VoxlineDiscordBot | None = None
    worker = Worker(settings, models, worker_id=f"{socket.gethostname()}:discord:{os.getpid()}",
                    with_dashboard=False,
                    extra_components=lambda: [bot.component_status()] if bot else [])
    bot = VoxlineDiscordBot(host=worker.host, settings=settings.discord, **client_kwargs)
    try:
        async with worker, bot:
            await bot.start(settings.discord.token.get_secret_value())
    except discord.LoginFailure:
        raise DiscordBotError(
            "Discord refused the bot token: copy it again from the Developer Portal (Bot → "
            "Reset Token) into DISCORD_TOKEN"
        ) from None
    except discord.PrivilegedIntentsRequired:
        raise DiscordBotError("Discord refused the bot's intents") from None
    finally:
        models.close()
