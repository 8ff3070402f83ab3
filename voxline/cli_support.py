"""What the `voxline` subcommands share: settings from the command line, one-line errors."""

import argparse
import asyncio
import importlib.util

from voxline.config import load_settings


class UserFacingError(Exception):
    """An expected failure whose message is the whole story."""


# Optional parts of the install (pyproject's extras), by the module each needs.
EXTRAS = {"discord": ("discord", "the Discord bot"), "bench": ("jiwer", "the benchmark")}


def require_extra(extra: str) -> None:
    """A clear message, not an ImportError, when an optional part is not installed."""
    module, what = EXTRAS[extra]
    if importlib.util.find_spec(module) is None:
        raise UserFacingError(
            f"{what} is not installed: run `bash scripts/setup.sh --with-{extra}` (or pip "
            f"install 'voxline[{extra}]')")


def require_opus() -> None:
    """Voice needs libopus, which discord.py loads only when a voice connection first decodes
    or encodes: fail at start-up, with the fix, rather than on the first /join."""
    import discord.opus

    try:
        discord.opus.Decoder()
    except discord.opus.OpusNotLoaded:
        raise UserFacingError(
            "libopus is not installed, and the Discord bot needs it for voice: install it "
            "(Debian and Ubuntu: apt install libopus0, as scripts/setup.sh does)") from None


def settings_from(args: argparse.Namespace, **overrides):
    """The settings of `--config`, with the subcommand's flags (section__field=value) on top."""
    sections: dict = {}
    for key, value in overrides.items():
        if value is not None:
            section, field = key.split("__")
            sections.setdefault(section, {})[field] = value
    settings = load_settings(args.config)
    if sections:  # CLI flags win over file and env: re-validate with them merged in
        merged = settings.model_dump()
        for section, fields in sections.items():
            merged[section].update(fields)
        settings = load_settings(args.config, **merged)
    return settings


def run_loop(coro) -> None:
    """uvloop when installed (lower latency), asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)
