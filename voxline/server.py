"""`voxline serve`: load models once, then run the ASGI app on uvicorn (uvloop when available)."""

import asyncio
import contextlib
import gc
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable

import uvicorn
from loguru import logger

from voxline.bus import create_bus
from voxline.config.settings import VoxlineSettings
from voxline.dashboard.app import create_dashboard_app
from voxline.dashboard.auth import DashboardConfigError, dashboard_access
from voxline.dashboard.collector import Collector
from voxline.models import ModelSet, load_models
from voxline.transports.app import create_app
from voxline.worker import Worker, key_store


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
        # Uvicorn believes X-Forwarded-For from loopback by default: a local client could then
        # claim any address past the per-address limits.
        proxy_headers=bool(server.forwarded_allow_ips),
        forwarded_allow_ips=server.forwarded_allow_ips or None,
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
    try:
        async with Worker(settings, models) as worker:
            server = VoxlineServer(uvicorn_config(create_app(worker), settings),
                                   on_shutdown=worker.end_sessions)
            await server.serve(sockets=[listener])
    finally:
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
                              allowed_origins=settings.server.allowed_origins,
                              limits=settings.limits)
    bus = create_bus(settings.bus, origin=f"dashboard:{socket.gethostname()}:{os.getpid()}")
    await bus.start()
    collector = Collector(bus, history_turns=settings.dashboard.history_turns,
                          transcript_retention=settings.privacy.transcript_retention)
    await collector.start()
    app = create_dashboard_app(
        collector, bus, source="dashboard", access=access,
        commands_per_minute=settings.dashboard.commands_per_minute,
        allowed_hosts=settings.server.hosts_answered(settings.dashboard.host))
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
