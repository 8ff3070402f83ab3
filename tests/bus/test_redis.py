"""The Redis bus against a real redis-server on loopback: fan-out across processes, outages,
floods."""

import asyncio
from contextlib import asynccontextmanager

import pytest

from tests.helpers import LoopLagMonitor
from tests.redis_server import RedisServer
from voxline.bus import InProcessBus, create_bus
from voxline.bus.events import TranscriptPartial
from voxline.bus.redis import RedisBus
from voxline.config import ConfigError, load_settings
from voxline.config.settings import BusSettings


async def _until(condition, timeout_secs: float = 10.0) -> None:
    for _ in range(int(timeout_secs / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


def _texts(subscription) -> list[str]:
    out = []
    while not subscription.empty():
        out.append(subscription.get_nowait().text)
    return out


@asynccontextmanager
async def two_processes():
    """A Redis server and two buses on it, as two processes would have, both connected."""
    async with RedisServer() as server:
        a = RedisBus(server.url, queue_size=1000, origin="a")
        b = RedisBus(server.url, queue_size=1000, origin="b")
        await a.start(), await b.start()
        try:
            await _until(lambda: a.health == b.health == "healthy")
            yield server, a, b
        finally:
            await a.close(), await b.close()


async def test_an_event_reaches_the_other_process_once_and_its_own_once():
    async with two_processes() as (_, a, b):
        at_a, at_b = a.subscribe(), b.subscribe()
        a.publish_nowait(TranscriptPartial(session_id="s1", source="a", text="hello"))
        await _until(lambda: not at_b.empty())
        await asyncio.sleep(0.2)  # time for a duplicate to show up, if there were one
        assert _texts(at_b) == ["hello"]
        assert _texts(at_a) == ["hello"]


async def test_redis_outage_degrades_then_recovers_without_losing_or_doubling():
    async with two_processes() as (server, a, b):
        at_a, at_b = a.subscribe(), b.subscribe()
        a.publish_nowait(TranscriptPartial(session_id="s", source="a", text="0"))
        await _until(lambda: not at_b.empty())
        await server.stop()
        await _until(lambda: a.health == "degraded" and b.health == "degraded", 5)
        assert "publishing" in a.health_detail or "subscribing" in a.health_detail
        for i in range(1, 6):  # the conversation goes on: local delivery is immediate
            a.publish_nowait(TranscriptPartial(session_id="s", source="a", text=str(i)))
        assert _texts(at_a) == ["0", "1", "2", "3", "4", "5"]
        await server.start()
        await _until(lambda: a.health == b.health == "healthy", 15)
        a.publish_nowait(TranscriptPartial(session_id="s", source="a", text="6"))
        received = []
        async with asyncio.timeout(10):
            while "6" not in received:
                received.append((await at_b.get()).text)
        received += _texts(at_b)
        assert len(received) == len(set(received)), f"duplicates: {received}"
        assert received[0] == "0" and received[-1] == "6"


async def test_a_flood_never_blocks_the_loop_and_drops_are_counted():
    async with RedisServer() as server:
        bus = RedisBus(server.url, queue_size=500, origin="flood")
        await bus.start()
        try:
            await _until(lambda: bus.health == "healthy")
            async with LoopLagMonitor() as lag:
                for burst in range(10):  # 10 000 events in about a second
                    for i in range(1000):
                        bus.publish_nowait(TranscriptPartial(session_id="s", text=f"{burst}.{i}"))
                    await asyncio.sleep(0.1)
            assert lag.max_lag_secs < 0.05, f"loop blocked {lag.max_lag_secs * 1000:.0f} ms"
            assert bus.dropped > 0
        finally:
            await bus.close()


def test_factory_picks_the_bus_from_settings():
    assert isinstance(create_bus(BusSettings(), origin="x"), InProcessBus)
    assert create_bus(BusSettings(), origin="x").health == "embedded"
    assert isinstance(create_bus(BusSettings(url="redis://127.0.0.1:1/0"), origin="x"), RedisBus)
    with pytest.raises(ConfigError, match="bus.url"):
        load_settings(bus={"url": "http://127.0.0.1:6379"})
