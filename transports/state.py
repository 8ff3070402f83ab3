"""What every request handler of one worker shares."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from voxline.agent import CircuitBreaker, Persona, SessionRegistry
from voxline.auth import AccessGuard, KeyStore
from voxline.bus import EventBus
from voxline.config.settings import VoxlineSettings
from voxline.memory import HeapTrimmer, release_freed_memory
from voxline.models import ModelSet
from voxline.transports.client_events import ClientOutbox


@dataclass
class AppState:
    """The worker's settings, loaded models, bus, access rule, live-session count and, for a
    remote LLM, the circuit breaker all its sessions share. `keys` is the API key store when
    keys are required (None: they are off)."""

    settings: VoxlineSettings
    models: ModelSet
    bus: EventBus
    persona: Persona
    worker_id: str
    active_sessions: int = 0
    sessions: SessionRegistry = field(default_factory=SessionRegistry)
    started_at: float = field(default_factory=time.monotonic)
    llm_breaker: CircuitBreaker | None = None
    # Each live session's outbox, to tell its client before a shutdown ends the session.
    client_outboxes: set[ClientOutbox] = field(default_factory=set)
    access: AccessGuard = field(default_factory=AccessGuard)
    keys: KeyStore | None = None
    heap_trimmer: HeapTrimmer = field(default_factory=HeapTrimmer)

    @asynccontextmanager
    async def live_session(self) -> AsyncIterator[None]:
        """Count one session (what /ready and the session limit see) while it runs; after it,
        give the memory it freed back to the OS (and while it runs, see `HeapTrimmer`)."""
        self.active_sessions += 1
        self.heap_trimmer.start()
        try:
            yield
        finally:
            self.active_sessions -= 1
            if self.active_sessions == 0:
                self.heap_trimmer.stop()
            await asyncio.to_thread(release_freed_memory)
