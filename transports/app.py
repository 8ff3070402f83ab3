"""The worker's ASGI app, every HTTP route of it: the talk page, WebRTC signalling, `/ws`,
`/health`, `/ready`, `/metrics` and the dashboard (when mounted in this process)."""

import asyncio
import json
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response, WebSocket
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.middleware.trustedhost import TrustedHostMiddleware

from voxline.auth import AccessGuard, Refusal, client_address
from voxline.config.settings import WebRTCSettings
from voxline.dashboard.app import create_dashboard_app
from voxline.dashboard.auth import dashboard_access
from voxline.transports.http_body import BodyTooLarge, read_body
from voxline.transports.openai_audio import mount_openai_audio
from voxline.transports.realtime import realtime_endpoint
from voxline.transports.webrtc import Caller, SignallingError, WebRTCGateway
from voxline.transports.websocket import websocket_endpoint
from voxline.worker import Worker

STATIC = Path(__file__).with_name("static")
MAX_SIGNALLING_BODY_BYTES = 256 * 1024  # an SDP offer, or 64 trickled candidates


def create_app(worker: Worker) -> FastAPI:
    """Build the app around a worker (its models are loaded; loading never happens per
    connection). Sessions run through `worker.host`."""
    host, settings = worker.host, worker.settings
    gateway = WebRTCGateway(host) if settings.webrtc.enabled else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        if gateway:
            await gateway.close()

    app = FastAPI(title="voxline", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    # A page on another site whose name was rebound to this address sends its own Host: refused
    # before any route (the origin rule alone would trust it as same-origin).
    app.add_middleware(TrustedHostMiddleware,
                       allowed_hosts=settings.server.hosts_answered(settings.server.host))

    @app.websocket("/ws")
    async def ws(websocket: WebSocket):
        await websocket_endpoint(websocket, host, worker.access)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        return {
            "status": "ready",
            "models": worker.models.describe(),
            "sessions": host.live,
            "max_sessions": settings.server.max_sessions,
            "tasks": len(asyncio.all_tasks()),
        }

    @app.get("/metrics")
    async def metrics():
        return Response(worker.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    if gateway:
        _mount_webrtc(app, gateway, worker.access)
    if settings.openai.enabled:
        mount_openai_audio(app, worker)

        @app.websocket("/v1/realtime")
        async def realtime(websocket: WebSocket):
            await realtime_endpoint(websocket, host, worker.access)
    if worker.collector:
        app.mount("/dashboard", create_dashboard_app(
            worker.collector, worker.bus, source=worker.worker_id,
            commands_per_minute=settings.dashboard.commands_per_minute,
            access=dashboard_access(settings.dashboard, keys=worker.keys,
                                    allowed_origins=settings.server.allowed_origins,
                                    limits=settings.limits)))
    return app


def _mount_webrtc(app: FastAPI, gateway: WebRTCGateway, access: AccessGuard) -> None:
    """The talk page and its signalling endpoints."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/")
    async def talk_page():
        return FileResponse(STATIC / "index.html")

    @app.get("/api/config")
    async def page_config(request: Request):
        """What the page needs: ICE servers (TURN credentials included, as browsers need them,
        so only for callers the access rule lets in)."""
        grant = await access.admit(request)
        if isinstance(grant, Refusal):
            return grant.response()
        return {"iceServers": [
            {"urls": s.urls, "username": s.username,
             "credential": s.credential.get_secret_value() if s.credential else None}
            for s in gateway.settings.ice_servers
        ]}

    @app.post("/api/offer")
    async def offer(request: Request):
        return await _signalling(request, access, gateway.settings, gateway.offer,
                                 counts_as_session=True)

    @app.patch("/api/offer")
    async def candidates(request: Request):
        return await _signalling(request, access, gateway.settings, gateway.add_candidates,
                                 counts_as_session=False)


async def _signalling(request: Request, access: AccessGuard, webrtc: WebRTCSettings, handle, *,
                      counts_as_session: bool) -> JSONResponse:
    """Run one signalling call: the caller is admitted before its body is read, and an offer
    (a new peer, or a renegotiation) counts against the new-session rate limits. Refusals and
    bad requests get a status, a stable code and a clear message."""
    grant = await access.admit(request)
    if isinstance(grant, Refusal):
        return grant.response()
    if counts_as_session and (refusal := access.take_session(request, grant)):
        return refusal.response()
    caller = Caller(client_address(request), grant.key_id)
    try:
        body = await _read_json(request, max(MAX_SIGNALLING_BODY_BYTES, 2 * webrtc.max_sdp_bytes))
        result = await handle(body, caller)
    except SignallingError as e:
        return _error(e)
    return JSONResponse(result if result is not None else {"status": "ok"})


async def _read_json(request: Request, max_bytes: int) -> object:
    """The JSON body, read no further than `max_bytes` (whatever Content-Length claims)."""
    try:
        body = await read_body(request, max_bytes)
    except BodyTooLarge as e:
        raise SignallingError(413, "body_too_large", str(e)) from None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
        raise SignallingError(400, "bad_json", "the request body must be a JSON object") from None


def _error(e: SignallingError) -> JSONResponse:
    return JSONResponse({"error": e.code, "message": e.message}, status_code=e.status)
