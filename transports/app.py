"""The worker's ASGI app: `/ws` for voice, `/health` and `/ready` for operators."""

from fastapi import FastAPI, WebSocket
from fastapi.responses import JSONResponse

from voxline.transports.state import AppState
from voxline.transports.websocket import websocket_endpoint


def create_app(state: AppState) -> FastAPI:
    """Build the app around already-loaded models (loading never happens per connection)."""
    app = FastAPI(title="voxline", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.voxline = state

    @app.websocket("/ws")
    async def ws(websocket: WebSocket):
        await websocket_endpoint(websocket, state)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        return JSONResponse({
            "status": "ready",
            "models": state.models.describe(),
            "sessions": state.active_sessions,
            "max_sessions": state.settings.server.max_sessions,
        })

    @app.get("/")
    async def index():
        return {
            "name": "voxline",
            "websocket": "/ws",
            "protocol": "see docs/protocol.md",
        }

    return app
