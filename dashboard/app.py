"""The dashboard's ASGI app: the page, and a WebSocket that streams the bus to it."""

import asyncio
import json
import uuid
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from loguru import logger
from pydantic import ValidationError
from starlette.middleware.trustedhost import TrustedHostMiddleware

from voxline.auth import AccessGuard, Refusal
from voxline.bus import EventBus
from voxline.bus.events import ControlCommand
from voxline.dashboard.collector import Collector

STATIC = Path(__file__).with_name("static")


def create_dashboard_app(collector: Collector, bus: EventBus, *, source: str,
                         access: AccessGuard | None = None,
                         allowed_hosts: list[str] | None = None) -> FastAPI:
    """The page at `/`, its assets at `/static`, the live feed at `/ws`. Mountable anywhere.
    `access` guards the page and the feed (None: open, for loopback and tests);
    `allowed_hosts`, the Host names it answers (None: any, when mounted in an app that checks).
    """
    access = access or AccessGuard()
    app = FastAPI(title="voxline dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    app.mount("/static", StaticFiles(directory=STATIC), name="dashboard-static")

    @app.get("/")
    async def page(request: Request):
        grant = await access.admit(request)
        if isinstance(grant, Refusal):
            return grant.response()
        return FileResponse(STATIC / "index.html")

    @app.websocket("/ws")
    async def feed(websocket: WebSocket):
        await websocket.accept()  # then close with a code the page can explain (not a bare 403)
        grant = await access.admit(websocket)
        if isinstance(grant, Refusal):
            await websocket.close(code=grant.close_code, reason=grant.reason)
            return
        viewer = collector.add_viewer()
        sender = asyncio.create_task(_send(websocket, viewer, collector), name="dashboard-send")
        try:
            while True:
                reply = _command(_json_or_none(await websocket.receive_text()), bus, source)
                await websocket.send_json(reply)
        except (WebSocketDisconnect, RuntimeError, ValueError):
            pass
        finally:
            collector.remove_viewer(viewer)
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    return app


async def _send(websocket: WebSocket, viewer, collector: Collector) -> None:
    await websocket.send_json(collector.snapshot())
    while True:
        await websocket.send_json(await viewer.queue.get())


def _json_or_none(text: str) -> object:
    """The decoded message; None for text that is not JSON (or nested past the parser's stack)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _command(message: object, bus: EventBus, source: str) -> dict:
    """A control request from the page → a `control.command` on the bus (acked by the worker)."""
    if not isinstance(message, dict) or message.get("type") != "control":
        return {"type": "error", "message": "expected {\"type\": \"control\", ...}"}
    try:
        command = ControlCommand(
            source=source, command_id=uuid.uuid4().hex[:12],
            target=message.get("worker", ""), action=message.get("action"),
            session_id=message.get("session_id") or "",
            model_kind=message.get("model_kind"), system_prompt=message.get("system_prompt"),
        )
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        return {"type": "error", "message": f"bad control request: {field}: {first['msg']}"}
    logger.info("Dashboard: {} sent to {}", command.action, command.target)
    bus.publish_nowait(command)
    return {"type": "sent", "command_id": command.command_id}
