"""`voxline serve`: load models once, then run the ASGI app on uvicorn (uvloop when available)."""

import asyncio
import socket
import time

import uvicorn
from loguru import logger

from voxline.agent.persona import Persona
from voxline.bus import InProcessBus
from voxline.config.settings import VoxlineSettings
from voxline.models import ModelSet, load_models
from voxline.transports.app import create_app
from voxline.transports.state import AppState


def build_state(settings: VoxlineSettings, models: ModelSet) -> AppState:
    """Everything the app shares, around already-loaded models."""
    return AppState(
        settings=settings,
        models=models,
        bus=InProcessBus(queue_size=settings.bus.queue_size),
        persona=Persona(settings.agent.system_prompt, settings.agent.greeting),
        worker_id=f"{socket.gethostname()}:{settings.server.port}",
    )


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
        timeout_graceful_shutdown=3,
    )


async def serve(settings: VoxlineSettings) -> None:
    """Load the models (a progress line each), then serve until interrupted."""
    logger.info("voxline: loading models")
    started = time.perf_counter()
    models = await asyncio.to_thread(
        load_models, settings, lambda line, secs: logger.info("  {:<44} {:6.2f}s", line, secs)
    )
    logger.info("voxline: models ready in {:.1f}s", time.perf_counter() - started)
    server = VoxlineServer(uvicorn_config(create_app(build_state(settings, models)), settings))
    try:
        await server.serve()
    finally:
        models.close()


class VoxlineServer(uvicorn.Server):
    """Uvicorn that says where it listens and signals `ready` once its sockets are bound."""

    def __init__(self, config: uvicorn.Config):
        super().__init__(config)
        self.ready = asyncio.Event()
        self.port = 0

    async def startup(self, sockets=None) -> None:
        """Bind, then announce the URL (port 0 means a free port was picked)."""
        await super().startup(sockets)
        if self.should_exit:
            return
        for listener in self.servers:
            for sock in listener.sockets:
                host, self.port = sock.getsockname()[:2]
                scheme = "https" if self.config.is_ssl else "http"
                logger.info("voxline: talk page {}://{}:{}/  (WebSocket /ws)", scheme, host,
                            self.port)
        self.ready.set()


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True
