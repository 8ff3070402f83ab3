"""The worker: one voxline process's long-lived parts, started and stopped together."""

import os
import socket
import time
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack

from loguru import logger

from voxline.agent import Persona, llm_breaker
from voxline.auth import AccessGuard, KeyStore, keys_required
from voxline.bus import create_bus
from voxline.bus.events import ComponentStatus
from voxline.config.settings import VoxlineSettings
from voxline.dashboard.collector import Collector
from voxline.models import ModelSet
from voxline.worker.control import WorkerControl
from voxline.worker.host import SessionHost
from voxline.worker.metrics import WorkerMetrics
from voxline.worker.telemetry import WorkerTelemetry

SESSION_END_TIMEOUT_SECS = 1.5


class Worker:
    """Around already-loaded models: the bus, the dashboard's collector (when the dashboard
    is mounted in this process), Prometheus metrics, status publishing (telemetry) and operator
    commands (control), plus the session host. `async with worker:` starts them in that order
    and stops them in the reverse one; the transports (`transports/app.py`, the Discord bot)
    run sessions through `worker.host`.

    `with_dashboard`: collect for a dashboard mounted in this process (`voxline serve`, by
    default; the Discord bot has none). `extra_components`: more status for the dashboard
    (e.g. the Discord gateway connection).
    """

    def __init__(self, settings: VoxlineSettings, models: ModelSet, *,
                 worker_id: str | None = None, with_dashboard: bool | None = None,
                 extra_components: Callable[[], list[ComponentStatus]] = list):
        self.settings = settings
        self.models = models
        self.worker_id = worker_id or _worker_id(settings)
        self.started_at = time.monotonic()
        self.bus = create_bus(settings.bus, origin=f"{self.worker_id}:{os.getpid()}")
        self.keys = key_store(settings, settings.server.host)
        self.access = AccessGuard(keys=self.keys, allowed_origins=settings.server.allowed_origins,
                                  limits=settings.limits)
        self.host = SessionHost(
            settings=settings, models=models, bus=self.bus, worker_id=self.worker_id,
            persona=Persona(settings.agent.system_prompt, settings.agent.greeting),
            llm_breaker=llm_breaker(settings.llm))
        if with_dashboard is None:
            with_dashboard = settings.dashboard.mount_in_serve
        self.collector = Collector(
            self.bus, history_turns=settings.dashboard.history_turns,
            transcript_retention=settings.privacy.transcript_retention,
        ) if with_dashboard else None
        self.metrics = WorkerMetrics(self.host)
        self.telemetry = WorkerTelemetry(self.host, self.metrics, started_at=self.started_at,
                                         extra_components=extra_components)
        self.control = WorkerControl(self.host)
        self._running = AsyncExitStack()

    async def __aenter__(self) -> "Worker":
        """Connect the bus and start publishing (before any client is accepted)."""
        async with AsyncExitStack() as starting:  # a part failing to start stops the others
            starting.push_async_callback(self.host.close)
            for part in (self.bus, self.collector, self.metrics, self.telemetry, self.control):
                if part is not None:
                    await part.start()
                    starting.push_async_callback(part.close)
            self._running = starting.pop_all()
        return self

    async def __aexit__(self, *_exc) -> None:
        """Stop everything, in reverse order."""
        await self._running.aclose()

    async def end_sessions(self) -> None:
        """At shutdown, before the server drops the connections: end every session (each client
        with an event channel gets error `server_shutdown` first; `session.ended` says
        `server shutdown`), and wait a little for them to finish."""
        self.telemetry.publish_stopping()
        count = await self.host.end_all("server shutdown", wait_secs=SESSION_END_TIMEOUT_SECS)
        if count:
            logger.info("voxline: shutting down; ended {} session(s)", count)


def key_store(settings: VoxlineSettings, bind_host: str) -> KeyStore | None:
    """The API key store if keys are required for a server bound to `bind_host`, else None;
    logs which rule applies (and warns when keys are required but none exists yet)."""
    required, why = keys_required(settings.auth, bind_host)
    if not required:
        logger.info("voxline: API keys off ({})", why)
        return None
    keys = KeyStore(settings.auth.keys_file)
    count = keys.active_count()
    logger.info("voxline: API keys required ({}); {} active in {}", why, count, keys.path)
    if not count:
        logger.warning("voxline: no API key exists yet, so every session is refused; create one "
                       "with `voxline keys create` (no restart needed)")
    return keys


def _worker_id(settings: VoxlineSettings) -> str:
    port = settings.server.port
    return f"{socket.gethostname()}:{port if port else uuid.uuid4().hex[:6]}"
