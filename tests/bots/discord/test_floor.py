"""PlaybackFloor: replies to different members take turns on one voice; barge-in cuts them."""

import asyncio

import pytest

from tests.bots.discord.player import ThreadPlayer
from voxline.bots.discord.audio_source import FRAME_BYTES
from voxline.bots.discord.floor import PlaybackFloor


class Owner:
    def __init__(self, byte: int):
        self.chunk = bytes([byte]) * FRAME_BYTES
        self.cut = 0

    def on_floor_taken(self) -> None:
        self.cut += 1


@pytest.fixture
async def stage():
    """A floor on a thread player, closed after the test."""
    player = ThreadPlayer()
    floor = PlaybackFloor(player)
    yield player, floor
    await floor.close()


async def _reply(floor, owner, frames):
    if not await floor.acquire(owner):
        return
    for _ in range(frames):
        await floor.write(owner, owner.chunk)
    floor.reply_finished(owner)


async def test_replies_take_turns_first_come_first_served(stage):
    player, floor = stage
    alice, bob = Owner(1), Owner(2)
    first = asyncio.create_task(_reply(floor, alice, 10))
    assert await asyncio.to_thread(player.is_audible.wait, 5)  # alice has the floor
    second = asyncio.create_task(_reply(floor, bob, 10))
    await asyncio.wait_for(asyncio.gather(first, second), timeout=5)
    await asyncio.to_thread(player.join, 5)
    assert player.played == [1] * 10 + [2] * 10  # never interleaved
    assert floor.owner is None


async def test_barge_in_by_another_member_cuts_the_reply_and_tells_its_owner(stage):
    player, floor = stage
    alice, bob = Owner(1), Owner(2)
    reply = asyncio.create_task(_reply(floor, alice, 100))
    assert await asyncio.to_thread(player.is_audible.wait, 5)
    floor.barge_in(bob)
    assert not player.is_playing()
    assert alice.cut == 1 and bob.cut == 0
    assert not await floor.acquire(alice)  # her queued audio must not take the floor back
    floor.drop(alice)  # what alice's session does when its interruption arrives
    assert await floor.acquire(alice)  # her next reply may
    reply.cancel()
    await asyncio.gather(reply, return_exceptions=True)
    assert len(player.played) < 20


async def test_a_dropped_waiting_reply_is_not_played(stage):
    player, floor = stage
    alice, bob = Owner(1), Owner(2)
    first = asyncio.create_task(_reply(floor, alice, 10))
    assert await asyncio.to_thread(player.is_audible.wait, 5)  # alice has the floor
    waiting = asyncio.create_task(floor.acquire(bob))
    await asyncio.sleep(0)  # bob's acquire runs up to its wait for the floor
    assert floor.owner is alice and not waiting.done()
    floor.drop(bob)  # bob's session was interrupted before its turn
    assert await asyncio.wait_for(waiting, 1) is False
    await asyncio.wait_for(first, 5)
    assert 2 not in player.played
