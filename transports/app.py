"""The worker's ASGI app: the talk page, WebRTC signalling, `/ws`, `/health`, `/ready`."""

import asyncio
import json
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from voxline.auth import Refusal
from voxline.transports.state import AppState
from voxline.transports.webrtc import SignallingError, WebRTCGateway
from voxline.transports.websocket import websocket_endpoint

STATIC = Path(__file__).with_name("static")
MAX_SIGNALLING_BODY_BYTES = 256 * 1024  # an SDP offer, or 64 trickled candidates


def create_app(state: AppState) -> FastAPI:
    """Build the app around already-loaded models (loading never happens per connection)."""
    gateway = WebRTCGateway(state) if state.settings.webrtc.enabled else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        if gateway:
            await gateway.close()

    app = FastAPI(title="voxline", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.voxline = state

    @app.websocket("/ws")
    async def ws(websocket: WebSocket):
        await websocket_endpoint(websocket, state)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        return {
            "status": "ready",
            "models": state.models.describe(),
            "sessions": state.active_sessions,
            "max_sessions": state.settings.server.max_sessions,
            "tasks": len(asyncio.all_tasks()),
        }

    if gateway:
        _mount_webrtc(app, gateway, state)
    return app


def _mount_webrtc(app: FastAPI, gateway: WebRTCGateway, state: AppState) -> None:
    """The talk page and its signalling endpoints."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/")
    async def talk_page():
        return FileResponse(STATIC / "index.html")

    @app.get("/api/config")
    async def page_config(request: Request):
        """What the page needs: ICE servers (TURN credentials included, as browsers need them,
        so only for callers the access rule lets in)."""
        grant = await state.access.admit(request)
        if isinstance(grant, Refusal):
            return grant.response()
        return {"iceServers": [
            {"urls": s.urls, "username": s.username,
             "credential": s.credential.get_secret_value() if s.credential else None}
            for s in state.settings.webrtc.ice_servers
        ]}

    @app.post("/api/offer")
    async def offer(request: Request):
        return await _signalling(request, state, gateway.offer, is_new_peer=gateway.is_new_peer)

    @app.patch("/api/offer")
    async def candidates(request: Request):
        return await _signalling(request, state, gateway.add_candidates)


async def _signalling(request: Request, state: AppState, handle, *,
                      is_new_peer=None) -> JSONResponse:
    """Run one signalling call: the caller is admitted before its body is read, and an offer
    for a new peer counts as a new session. Refusals and bad requests get a status, a stable
    code and a clear message."""
    grant = await state.access.admit(request)
    if isinstance(grant, Refusal):
        return grant.response()
    try:
        body = await _read_json(request, max(MAX_SIGNALLING_BODY_BYTES,
                                             2 * state.settings.webrtc.max_sdp_bytes))
        pc_id = body.get("pc_id") if isinstance(body, dict) else None
        if is_new_peer and is_new_peer(pc_id if isinstance(pc_id, str) else None) and \
                (refusal := state.access.take_session(request, grant)):
            return refusal.response()
        result = await handle(body)
    except SignallingError as e:
        return _error(e)
    return JSONResponse(result if result is not None else {"status": "ok"})


async def _read_json(request: Request, max_bytes: int) -> object:
    """The JSON body, read no further than `max_bytes` (whatever Content-Length claims)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise SignallingError(413, "body_too_large",
                                  f"the request body is over {max_bytes} bytes")
    try:
        return json.loads(body)
    except ValueError:
        raise SignallingError(400, "bad_json", "the request body must be a JSON object") from None


def _error(e: SignallingError) -> JSONResponse:
    return JSONResponse({"error": e.code, "message": e.message}, status_code=e.status)
