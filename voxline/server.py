"""`voxline serve`: load models once, then run the ASGI app on uvicorn (uvloop when available)."""

import asyncio
import contextlib
import gc
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable

import uvicorn
from fastapi import Response
from loguru import logger
from prometheus_client import CONTENT_TYPE_LATEST

from voxline.agent import Persona, llm_breaker
from voxline.auth import AccessGuard, KeyStore, keys_required
from voxline.bus import create_bus
from voxline.config.settings import VoxlineSettings
from voxline.control import WorkerControl
from voxline.dashboard.app import create_dashboard_app
from voxline.dashboard.auth import DashboardConfigError, dashboard_access
from voxline.dashboard.collector import Collector
from voxline.metrics import WorkerMetrics
from voxline.models import ModelSet, load_models
from voxline.telemetry import WorkerTelemetry
from voxline.transports.app import create_app
from voxline.transports.state import AppState

SESSION_END_TIMEOUT_SECS = 1.5


def build_state(
    settings: VoxlineSettings, models: ModelSet, *, worker_id: str | None = None
) -> AppState:
    """Everything the app shares, around already-loaded models."""
    port = settings.server.port
    worker_id = worker_id or f"{socket.gethostname()}:{port if port else uuid.uuid4().hex[:6]}"
    keys = key_store(settings, settings.server.host)
    return AppState(
        settings=settings,
        models=models,
        bus=create_bus(settings.bus, origin=f"{worker_id}:{os.getpid()}"),
        persona=Persona(settings.agent.system_prompt, settings.agent.greeting),
        worker_id=worker_id,
        llm_breaker=llm_breaker(settings.llm),
        access=AccessGuard(keys=keys, allowed_origins=settings.server.allowed_origins,
                           limits=settings.limits),
        keys=keys,
    )


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


class Worker:
    """One `voxline serve` process around its app: the bus connection, status publishing,
    operator commands and (when enabled) the dashboard mounted at /dashboard."""

    def __init__(self, state: AppState):
        self.state = state
        settings = state.settings
        self.app = create_app(state)
        self.collector: Collector | None = None
        if settings.dashboard.mount_in_serve:
            self.collector = Collector(
                state.bus, history_turns=settings.dashboard.history_turns,
                transcript_retention=settings.privacy.transcript_retention)
            self.app.mount("/dashboard", create_dashboard_app(
                self.collector, state.bus, source=state.worker_id,
                access=dashboard_access(settings.dashboard, keys=state.keys,
                                        allowed_origins=settings.server.allowed_origins)))
        self._telemetry = WorkerTelemetry(state)
        self._control = WorkerControl(state)
        self.metrics = WorkerMetrics(state)

        @self.app.get("/metrics")
        async def metrics():
            return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def start(self) -> None:
        """Connect the bus and start publishing (before the server accepts clients)."""
        await self.state.bus.start()
        if self.collector:
            await self.collector.start()
        await self._telemetry.start()
        await self._control.start()
        await self.metrics.start()

    async def end_sessions(self) -> None:
        """At shutdown, before uvicorn drops the connections: end every session (each WebSocket
        client gets error `server_shutdown`, then the close; `session.ended` says `server
        shutdown`), and wait a little for them to finish."""
        state = self.state
        await asyncio.gather(*(outbox.say_shutting_down() for outbox in state.client_outboxes))
        count = await state.sessions.end_all("server shutdown")
        if count:
            logger.info("voxline: shutting down; ended {} session(s)", count)
        try:
            async with asyncio.timeout(SESSION_END_TIMEOUT_SECS):
                # The slot count has no event to wait on; shutdown is rare, so it is polled.
                while state.active_sessions:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        except TimeoutError:
            logger.warning("voxline: {} session(s) still ending; closing their connections",
                           state.active_sessions)

    async def close(self) -> None:
        """Stop everything `start` began."""
        await self.metrics.close()
        await self._control.close()
        await self._telemetry.close()
        if self.collector:
            await self.collector.close()
        await self.state.bus.close()


def uvicorn_config(app, settings: VoxlineSettings) -> uvicorn.Config:
    """Uvicorn settings shared by `serve` and the tests."""
    server = settings.server
    return uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        loop="uvloop" if _has_uvloop() else "asyncio",
        ws="websockets-sansio",
        # Frames over our own limit get a clear error from the serializer; only far larger ones
        # are cut off by uvicorn itself (close code 1009).
        ws_max_size=max(server.max_frame_bytes, server.max_text_bytes) * 16,
        ssl_certfile=str(server.ssl_certfile) if server.ssl_certfile else None,
        ssl_keyfile=str(server.ssl_keyfile) if server.ssl_keyfile else None,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=2,  # plus SESSION_END_TIMEOUT_SECS: exit well within 5 s
    )


async def load_models_logged(settings: VoxlineSettings, process: str) -> ModelSet:
    """Load every model off the loop, logging a progress line per model (`voxline serve` and
    `voxline discord` start the same way)."""
    logger.info("{}: loading models", process)
    started = time.perf_counter()
    models = await asyncio.to_thread(
        load_models, settings, lambda line, secs: logger.info("  {:<44} {:6.2f}s", line, secs)
    )
    logger.info("{}: models ready in {:.1f}s", process, time.perf_counter() - started)
    # The loaded models and libraries are millions of long-lived objects; a full collection
    # walking them paused the event loop ~100 ms (audible). Frozen, the GC skips them.
    gc.freeze()
    return models


async def serve(settings: VoxlineSettings) -> None:
    """Load the models (a progress line each), then serve until interrupted."""
    # Take the port first: a port in use should fail in a second, not after loading models.
    listener = socket.create_server(
        (settings.server.host, settings.server.port),
        family=socket.AF_INET6 if ":" in settings.server.host else socket.AF_INET,
    )
    models = await load_models_logged(settings, "voxline")
    worker = Worker(build_state(settings, models))
    await worker.start()
    server = VoxlineServer(uvicorn_config(worker.app, settings), on_shutdown=worker.end_sessions)
    try:
        await server.serve(sockets=[listener])
    finally:
        await worker.close()
        models.close()


async def serve_dashboard(settings: VoxlineSettings) -> None:
    """`voxline dashboard`: watch every worker on the Redis bus, from its own process."""
    if not settings.bus.url:
        raise DashboardConfigError(
            "a separate dashboard sees workers only through Redis: set bus.url "
            "(VOXLINE_BUS__URL=redis://...) here and on every worker, or open /dashboard "
            "on a single `voxline serve`"
        )
    access = dashboard_access(settings.dashboard,
                              keys=key_store(settings, settings.dashboard.host),
                              allowed_origins=settings.server.allowed_origins)
    bus = create_bus(settings.bus, origin=f"dashboard:{socket.gethostname()}:{os.getpid()}")
    await bus.start()
    collector = Collector(bus, history_turns=settings.dashboard.history_turns,
                          transcript_retention=settings.privacy.transcript_retention)
    await collector.start()
    app = create_dashboard_app(collector, bus, source="dashboard", access=access)
    config = uvicorn_config(app, settings)
    config.host, config.port = settings.dashboard.host, settings.dashboard.port
    try:
        await VoxlineServer(config, path="/").serve()
    finally:
        await collector.close()
        await bus.close()


class VoxlineServer(uvicorn.Server):
    """Uvicorn that says where it listens, signals `ready` once its sockets are bound, runs
    `on_shutdown` before it drops connections, and exits 0 after a SIGTERM."""

    def __init__(self, config: uvicorn.Config, path: str = "/",
                 on_shutdown: Callable[[], Awaitable[None]] | None = None):
        super().__init__(config)
        self.ready = asyncio.Event()
        self.port = 0
        self._path = path
        self._on_shutdown = on_shutdown

    async def shutdown(self, sockets=None) -> None:
        """Our shutdown first (end sessions cleanly), then uvicorn's (close 1012 for the rest)."""
        if self._on_shutdown is not None:
            await self._on_shutdown()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self):
        """uvicorn re-raises a caught SIGTERM once it has shut down, so the default handler
        killed the process (status -15) after a clean shutdown. SIGTERM is the ordinary way to
        stop a service, so it ends in status 0; SIGINT is still re-raised (status 130)."""
        with super().capture_signals():
            yield
            self._captured_signals = [
                s for s in self._captured_signals if s != signal.SIGTERM
            ]

    async def startup(self, sockets=None) -> None:
        """Bind, then announce the URL (port 0 means a free port was picked)."""
        await super().startup(sockets)
        if self.should_exit:
            return
        for listener in self.servers:
            for sock in listener.sockets:
                host, self.port = sock.getsockname()[:2]
                scheme = "https" if self.config.is_ssl else "http"
                logger.info("voxline: listening on {}://{}:{}{}", scheme, host, self.port,
                            self._path)
        self.ready.set()


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True
