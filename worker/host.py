"""The session host: what every transport (the WebSocket, WebRTC, the Discord bot) calls to run
a conversation on this worker.

It keeps the worker's one count of live sessions (the slots, /ready, telemetry, /metrics), runs
each session with the worker's shared parts, forwards its events to its client, contains its
failure so that the others go on, and ends sessions on request (an operator, a shutdown).
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from loguru import logger
from pipecat.transports.base_transport import BaseTransport

from voxline.agent import CircuitBreaker, Persona, SessionOptions
from voxline.agent.session import Session
from voxline.bus import EventBus
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


@dataclass
class _LiveSession:
    session: Session
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
        """Every session slot (`server.max_sessions`) is in use."""
        return self.live >= self.settings.server.max_sessions

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._live

    async def run(self, transport: BaseTransport, options: SessionOptions, *,
                  client: SessionClient | None = None) -> str | None:
        """Run one session to its end and return why it ended (None: it failed). It takes its
        slot before the first await, so a caller that saw `is_full` false gets one. `client`
        (the client's event channel, if it has one) gets the session's events, and is closed
        after it. Never raises but for cancellation."""
        session_id = options.session_id
        with logger.contextualize(session_id=session_id):
            try:
                session = Session(transport, self.models, self.settings, self.bus, options,
                                  llm_breaker=self.llm_breaker)
                async with (self._slot(_LiveSession(session, client)),
                            forwarding_session_events(self.bus, session_id, client)):
                    return await session.run()
            except Exception:  # one session's boundary: log once, keep the worker up
                logger.exception("Session {} failed", session_id)
                if client is not None:
                    client.error("internal_error",
                                 "the session failed on the server; please reconnect")
                return None
            finally:
                if client is not None:
                    await client.close()

    async def wait_idle(self) -> None:
        """Until no session runs."""
        await self._none_live.wait()

    async def end(self, session_id: str, reason: str) -> bool:
        """End a live session; False if there is none with that id."""
        live = self._live.get(session_id)
        if live is None:
            return False
        await live.session.end(reason)
        return True

    async def end_all(self, reason: str, *, wait_secs: float) -> int:
        """End every live session (a shutdown): clients with an event channel are told first
        (`server_shutdown`); wait up to `wait_secs` for them to finish. How many there were."""
        sessions = list(self._live.values())
        await asyncio.gather(*(live.client.say_shutting_down() for live in sessions
                               if live.client is not None))
        for live in sessions:
            await live.session.end(reason)
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
    async def _slot(self, live: _LiveSession) -> AsyncIterator[None]:
        """Count the session while it runs; after it, give the memory it freed back to the OS
        (and while sessions run, see `HeapTrimmer`)."""
        self._live[live.session.options.session_id] = live
        self.total += 1
        self._none_live.clear()
        self._heap_trimmer.start()
        try:
            yield
        finally:
            del self._live[live.session.options.session_id]
            if not self._live:
                self._none_live.set()
                self._heap_trimmer.stop()
            await asyncio.to_thread(release_freed_memory)


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
