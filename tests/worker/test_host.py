"""The session host: one count of live sessions, events to the client, ends on request, and a
failing session contained (real models; the Discord member transport, which needs no network)."""

import asyncio
import dataclasses

import pytest

from tests.bots.discord.player import ThreadPlayer
from tests.conftest import make_settings
from voxline.agent import Persona, SessionOptions
from voxline.bots.discord.floor import PlaybackFloor
from voxline.bots.discord.transport import SpeakerTransport
from voxline.bus import events
from voxline.bus.inprocess import InProcessBus
from voxline.transports.client_events import ClientOutbox
from voxline.worker import NoSlot, SessionHost


class Client:
    """A client's event channel: the real outbox, sending into a list."""

    def __init__(self):
        self.messages: list[dict] = []

        async def send(message: dict) -> None:
            self.messages.append(message)

        self.outbox = ClientOutbox(send)

    def types(self) -> list[str]:
        return [m["type"] for m in self.messages]


@pytest.fixture
async def floor():
    floor = PlaybackFloor(ThreadPlayer())
    yield floor
    await floor.close()


def _host(models, bus, **server) -> SessionHost:
    return SessionHost(settings=make_settings(server=server), models=models, bus=bus,
                       worker_id="test-host", persona=Persona("Be brief."))


def _options(session_id: str) -> SessionOptions:
    """The session greets its client: the greeting's bot.* events show it runs."""
    return SessionOptions(session_id=session_id, transport="discord",
                          persona=Persona("Be brief.", greeting="Hello."),
                          worker_id="test-host", audio_out_sample_rate=48000)


async def _until(condition, timeout_secs: float = 10) -> None:
    async with asyncio.timeout(timeout_secs):
        while not condition():  # noqa: ASYNC110 (the host has no event for "running")
            await asyncio.sleep(0.01)


async def test_a_session_is_counted_while_it_runs_and_its_events_reach_its_client(models, floor):
    bus = InProcessBus()
    host, client = _host(models, bus, max_sessions=1), Client()
    run = asyncio.create_task(host.run(SpeakerTransport(floor=floor, name="a"), _options("a"),
                                       client=client.outbox))
    await asyncio.sleep(0)  # the slot is taken before the host's first await
    assert host.live == 1 and host.is_full and "a" in host and host.total == 1
    await _until(lambda: "bot.started_speaking" in client.types())
    assert await host.end("a", "ended by an operator")
    assert await asyncio.wait_for(run, 10) == "ended by an operator"
    assert host.live == 0 and not host.is_full and "a" not in host and host.total == 1
    assert not await host.end("a", "again")  # no such live session


async def test_a_session_failing_to_start_is_contained_and_its_client_told(models, floor):
    bus = InProcessBus()
    subscription = bus.subscribe(lambda e: isinstance(e, events.SessionStarted))
    host, client = _host(models, bus), Client()
    host.models = dataclasses.replace(models, stt=None)  # the STT service cannot be built
    assert await host.run(SpeakerTransport(floor=floor, name="b"), _options("b"),
                          client=client.outbox) is None
    assert client.messages[-1]["type"] == "error"
    assert client.messages[-1]["code"] == "internal_error"
    assert host.live == 0 and subscription.empty()
    # The next session on the same host runs.
    host.models = models
    run = asyncio.create_task(host.run(SpeakerTransport(floor=floor, name="c"), _options("c")))
    await asyncio.wait_for(subscription.get(), 10)
    assert await host.end("c", "test over")
    assert await asyncio.wait_for(run, 10) == "test over"
    subscription.close()


async def test_ending_every_session_tells_clients_first_and_waits_for_them(models, floor):
    bus = InProcessBus()
    ended = bus.subscribe(lambda e: isinstance(e, events.SessionEnded))
    host = _host(models, bus)
    clients = {name: Client() for name in ("d", "e")}
    runs = [asyncio.create_task(host.run(SpeakerTransport(floor=floor, name=name),
                                         _options(name), client=client.outbox))
            for name, client in clients.items()]
    await _until(lambda: all("bot.started_speaking" in c.types() for c in clients.values()))
    assert await host.end_all("server shutdown", wait_secs=10) == 2
    assert host.live == 0
    for client in clients.values():
        assert {"type": "error", "code": "server_shutdown"}.items() <= \
            next(m for m in client.messages if m["type"] == "error").items()
    reasons = {(await ended.get()).reason for _ in runs}
    assert reasons == {"server shutdown"}
    await asyncio.gather(*runs)
    ended.close()


def test_slots_are_reserved_synchronously_within_the_caps(models):
    """Reserving is what makes concurrent clients safe: no await between check and take."""
    host = SessionHost(settings=make_settings(server={"max_sessions": 3},
                                              limits={"max_sessions_per_ip": 2,
                                                      "max_sessions_per_key": 1}),
                       models=models, bus=InProcessBus(), worker_id="test-host",
                       persona=Persona("Be brief."))
    a1 = host.reserve(address="10.0.0.1", key_id="k1")
    with pytest.raises(NoSlot) as refused:
        host.reserve(address="10.0.0.2", key_id="k1")
    assert refused.value.code == "too_many_sessions" and "API key" in refused.value.message
    a2 = host.reserve(address="10.0.0.1", key_id="k2")
    with pytest.raises(NoSlot) as refused:
        host.reserve(address="10.0.0.1", key_id="k3")
    assert refused.value.code == "too_many_sessions" and "address" in refused.value.message
    host.reserve(address="10.0.0.3")
    assert host.is_full and host.live == 0  # reserved, not yet running
    with pytest.raises(NoSlot) as refused:
        host.reserve(address="10.0.0.4")
    assert refused.value.code == "server_busy"
    a1.release()
    a1.release()  # idempotent
    assert not host.is_full
    host.reserve(address="10.0.0.4", key_id="k1")  # k1's slot was given back
    a2.release()
