"""`voxline wyoming`: the Wyoming server for Home Assistant, a worker process of its own that
publishes on the bus like any other (its connections show on the dashboard)."""

import asyncio
import os
import signal
import socket

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST

from voxline.config.settings import VoxlineSettings
from voxline.server import VoxlineServer, load_models_logged, uvicorn_config
from voxline.transports.wyoming import WyomingServer
from voxline.worker import Worker


async def run_wyoming(settings: VoxlineSettings) -> None:
    """Load the models, then serve Wyoming (and /metrics with `wyoming.metrics_port`) until
    SIGTERM or Ctrl-C; connections still open then are ended."""
    models = await load_models_logged(settings, "voxline wyoming")
    try:
        worker = Worker(settings, models, with_dashboard=False,
                        worker_id=f"{socket.gethostname()}:wyoming:{os.getpid()}")
        async with worker:
            server = WyomingServer(worker.host, settings)
            await server.start()

            async def shut_down() -> None:
                await worker.end_sessions()
                await server.close()

            if settings.wyoming.metrics_port is None:
                await _until_signalled()
                await shut_down()
            else:
                config = uvicorn_config(_probe_app(worker), settings)
                config.host, config.port = settings.wyoming.host, settings.wyoming.metrics_port
                await VoxlineServer(config, path="/metrics", on_shutdown=shut_down).serve()
    finally:
        models.close()


def _probe_app(worker: Worker) -> FastAPI:
    """/health and /metrics, for a process that serves no HTTP otherwise."""
    app = FastAPI(title="voxline wyoming", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics():
        return Response(worker.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
