"""The session host: what every transport (the WebSocket, WebRTC, the Discord bot) calls to run
a conversation on this worker.

It keeps the worker's one count of live sessions (the slots, /ready, telemetry, /metrics), runs
each session with the worker's shared parts, forwards its events to its client, contains its
failure so that the others go on, and ends sessions on request (an operator, a shutdown).
"""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from loguru import logger
from pipecat.transports.base_transport import BaseTransport

from voxline.agent import CircuitBreaker, Persona, SessionOptions
from voxline.agent.session import Session
from voxline.bus import EventBus, SessionBus, events
from voxline.bus.events import Event
from voxline.config.settings import VoxlineSettings
from voxline.models import ModelSet
from voxline.worker.memory import HeapTrimmer, release_freed_memory


class SessionClient(Protocol):
    """A client's event channel, as the host uses it (`transports/client_events.py`)."""

    def deliver(self, event: Event) -> None:
        """Pass one of its session's events on, in the client's protocol (or not at all)."""

    def error(self, code: str, message: str) -> None:
        """Tell the client about an error."""

    async def say_shutting_down(self) -> None:
        """Tell the client the server is going away, and wait until that is sent."""

    async def close(self) -> None:
        """Send what is queued, then stop."""


class NoSlot(Exception):
    """No session slot for this client: `code` is server_busy (every slot is in use) or
    too_many_sessions (its address or API key has its share); `message` says which."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(eq=False)
class Slot:
    """One session slot, held from the moment a transport accepts a client (before its first
    await) until the session ends, so that concurrent clients never take more than there are.
    `address` and `key_id` count against the per-client caps."""

    host: "SessionHost"
    address: str | None = None
    key_id: str | None = None

    def release(self) -> None:
        """Give it back (a client that went away before its session ran). Idempotent."""
        self.host._slots.discard(self)


@dataclass
class _LiveSession:
    session_id: str
    end: Callable[[str], Awaitable[None]]  # end it now, saying why
    client: SessionClient | None


class SessionHost:
    """Runs this worker's sessions. `persona` is the one new sessions get (an operator may
    change it); `llm_breaker`, a remote LLM's circuit breaker, is shared by all of them."""

    def __init__(self, *, settings: VoxlineSettings, models: ModelSet, bus: EventBus,
                 worker_id: str, persona: Persona, llm_breaker: CircuitBreaker | None = None):
        self.settings = settings
        self.models = models
        self.bus = bus
        self.worker_id = worker_id
        self.persona = persona
        self.llm_breaker = llm_breaker
        self.total = 0  # sessions started since the process began
        self._slots: set[Slot] = set()  # taken: sessions running, or clients about to start one
        self._live: dict[str, _LiveSession] = {}
        self._none_live = asyncio.Event()
        self._none_live.set()
        self._heap_trimmer = HeapTrimmer()

    @property
    def live(self) -> int:
        """Sessions running now."""
        return len(self._live)

    @property
    def is_full(self) -> bool:
        """Every session slot (`server.max_sessions`) is taken."""
        return len(self._slots) >= self.settings.server.max_sessions

    def reserve(self, *, address: str | None = None, key_id: str | None = None) -> Slot:
        """Take a slot for a client about to start a session, or raise `NoSlot`: every slot
        is taken, or its address or key already holds `limits.max_sessions_per_ip` /
        `..._per_key`. Synchronous: no other client can take the same slot meanwhile."""
        if self.is_full:
            raise NoSlot("server_busy", f"all {self.settings.server.max_sessions} session "
                                        "slots are in use; retry later")
        limits = self.settings.limits
        per_address = sum(s.address == address for s in self._slots) if address else 0
        per_key = sum(s.key_id == key_id for s in self._slots) if key_id else 0
        for who, held, cap in (("address", per_address, limits.max_sessions_per_ip),
                               ("API key", per_key, limits.max_sessions_per_key)):
            if cap and held >= cap:
                raise NoSlot("too_many_sessions", f"this {who} already has {cap} live "
                                                  "session(s), the most allowed; end one first")
        slot = Slot(self, address, key_id)
        self._slots.add(slot)
        return slot

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._live

    async def run(self, transport: BaseTransport, options: SessionOptions, *,
                  client: SessionClient | None = None, slot: Slot | None = None) -> str | None:
        """Run one session to its end and return why it ended (None: it failed), in `slot`
        (from `reserve`; without one it takes a slot regardless of the caps: the Discord bot
        has its own). `client` (the client's event channel, if it has one) gets the session's
        events, and is closed after it. Never raises but for cancellation."""
        if slot is None:
            slot = Slot(self)
            self._slots.add(slot)
        session_id = options.session_id
        with logger.contextualize(session_id=session_id):
            try:
                session = Session(transport, self.models, self.settings, self.bus, options,
                                  llm_breaker=self.llm_breaker)
                live = _LiveSession(session_id, session.end, client)
                async with (self._running(live, slot),
                            forwarding_session_events(self.bus, session_id, client)):
                    return await session.run()
            except Exception:  # one session's boundary: log once, keep the worker up
                logger.exception("Session {} failed", session_id)
                if client is not None:
                    client.error("internal_error",
                                 "the session failed on the server; please reconnect")
                return None
            finally:
                slot.release()  # also when the session could not be built
                if client is not None:
                    await client.close()

    @asynccontextmanager
    async def serving(self, *, session_id: str, transport: str, client: str, slot: Slot,
                      stop: Callable[[], Awaitable[None]]) -> AsyncIterator["ServedConnection"]:
        """Count a connection that serves speech requests without a conversation (a Wyoming
        client, a /v1/audio request) as one of this worker's sessions while it lasts: it holds
        `slot`, is bracketed by session.started/ended on the bus, and an operator or a shutdown
        ends it through `stop` (which closes the connection)."""
        served = ServedConnection(SessionBus(self.bus, session_id=session_id,
                                             source=self.worker_id), stop)
        started = time.monotonic()
        served.bus.publish(events.SessionStarted, transport=transport, client=client)
        try:
            async with self._running(_LiveSession(session_id, served.end, None), slot):
                yield served
        finally:
            served.ended_because("ended")
            served.bus.publish(events.SessionEnded, reason=served.end_reason,
                               duration_secs=time.monotonic() - started)

    async def wait_idle(self) -> None:
        """Until no session runs."""
        await self._none_live.wait()

    async def end(self, session_id: str, reason: str) -> bool:
        """End a live session; False if there is none with that id."""
        live = self._live.get(session_id)
        if live is None:
            return False
        await live.end(reason)
        return True

    async def end_all(self, reason: str, *, wait_secs: float) -> int:
        """End every live session (a shutdown): clients with an event channel are told first
        (`server_shutdown`); wait up to `wait_secs` for them to finish. How many there were."""
        sessions = list(self._live.values())
        await asyncio.gather(*(live.client.say_shutting_down() for live in sessions
                               if live.client is not None))
        for live in sessions:
            await live.end(reason)
        try:
            async with asyncio.timeout(wait_secs):
                await self.wait_idle()
        except TimeoutError:
            logger.warning("voxline: {} session(s) still ending; closing their connections",
                           self.live)
        return len(sessions)

    async def close(self) -> None:
        """Stop the heap trimmer (the worker is stopping)."""
        self._heap_trimmer.stop()

    @asynccontextmanager
    async def _running(self, live: _LiveSession, slot: Slot) -> AsyncIterator[None]:
        """Count the session while it runs, then free its slot; after it, give the memory it
        freed back to the OS (and while sessions run, see `HeapTrimmer`)."""
        self._live[live.session_id] = live
        self.total += 1
        self._none_live.clear()
        self._heap_trimmer.start()
        try:
            yield
        finally:
            slot.release()
            del self._live[live.session_id]
            if not self._live:
                self._none_live.set()
                self._heap_trimmer.stop()
            await asyncio.to_thread(release_freed_memory)


class ServedConnection:
    """A connection counted as a session by `SessionHost.serving`: publishes on the bus as its
    session; `end_reason` is the first reason it was given to end."""

    def __init__(self, session_bus: SessionBus, stop: Callable[[], Awaitable[None]]):
        self.bus = session_bus
        self.end_reason: str | None = None
        self._stop = stop

    def ended_because(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason

    async def end(self, reason: str) -> None:
        """End it now (an operator, a shutdown)."""
        self.ended_because(reason)
        await self._stop()


@asynccontextmanager
async def forwarding_session_events(bus: EventBus, session_id: str,
                                    client: SessionClient | None):
    """While open, every event of `session_id` on the bus goes to `client` (if there is one)."""
    if client is None:
        yield
        return
    subscription = bus.subscribe(lambda e: e.session_id == session_id)

    async def forward():
        async for event in subscription:
            client.deliver(event)

    task = asyncio.create_task(forward(), name=f"voxline-session-events-{session_id}")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        subscription.close()
