"""`voxline bench --discord-turns`: one turn as each client, through the member transport."""

import pytest

from voxline.bench.discord_turns import (
    CLIENTS,
    TURN_TIMEOUT_SECS,
    discord_turns_table,
    one_turn,
    summarise,
)
from voxline.bench.prompts import prompt_from_wav

pytestmark = pytest.mark.slow


async def test_each_client_is_answered_and_timed_from_the_end_of_speech(models, settings,
                                                                        speech):
    text = "What color is the sky?"
    prompt = prompt_from_wav("sky", text, speech(text))
    timings = {client: await one_turn(models, settings, prompt, client) for client in CLIENTS}
    # Nothing is played before the turn is confirmed, and the client that sends nothing after
    # its speech is answered too (the transport fills the silence it no longer sends).
    assert all(0 < secs < TURN_TIMEOUT_SECS for secs in timings.values()), timings
    report = {"discord_turns": {c: summarise([secs]) for c, secs in timings.items()}
              | {"discord_minus_microphone_p50_secs": timings["discord"] - timings["microphone"]}}
    table = discord_turns_table(report)
    assert "Discord (nothing sent)" in table and "Discord minus microphone" in table
