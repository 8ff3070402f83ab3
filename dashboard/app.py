"""The dashboard's ASGI app: the page, and a WebSocket that streams the bus to it."""

import asyncio
import json
import math
import uuid
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from loguru import logger
from pydantic import ValidationError
from starlette.middleware.trustedhost import TrustedHostMiddleware

from voxline.auth import AccessGuard, Refusal, client_address
from voxline.auth.ratelimit import RateLimiter
from voxline.bus import EventBus
from voxline.bus.events import ControlCommand
from voxline.dashboard.collector import Collector

STATIC = Path(__file__).with_name("static")


def create_dashboard_app(collector: Collector, bus: EventBus, *, source: str,
                         access: AccessGuard | None = None,
                         allowed_hosts: list[str] | None = None,
                         commands_per_minute: int = 10) -> FastAPI:
    """The page at `/`, its assets at `/static`, the live feed at `/ws`. Mountable anywhere.
    `access` guards the page and the feed (None: open, for loopback and tests);
    `allowed_hosts`, the Host names it answers (None: any, when mounted in an app that checks).
    Each control command is rate-limited per credential and logged with who sent it.
    """
    access = access or AccessGuard()
    commands = RateLimiter(commands_per_minute)
    app = FastAPI(title="voxline dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    app.mount("/static", StaticFiles(directory=STATIC), name="dashboard-static")

    @app.get("/")
    async def page():
        # The page holds no data (the feed below is guarded): open, so that it can take the
        # credential out of its own URL and keep it in the tab's session storage.
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
            operator = Operator(grant.holder, client_address(websocket))
            while True:
                message = _json_or_none(await websocket.receive_text())
                if wait := commands.retry_after_secs(operator.holder):
                    reply = {"type": "error", "message": f"too many control commands; retry "
                                                         f"in {math.ceil(wait)} s"}
                else:
                    reply = _command(message, bus, source, operator)
                    if reply["type"] == "sent":
                        commands.take(operator.holder)
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


@dataclass(frozen=True)
class Operator:
    """Who sends commands on one feed: the credential (`Grant.holder`) and the address."""

    holder: str
    address: str


def _command(message: object, bus: EventBus, source: str, operator: Operator) -> dict:
    """A control request from the page → a `control.command` on the bus (acked by the worker),
    logged with who sent it."""
    if not isinstance(message, dict) or message.get("type") != "control":
        return {"type": "error", "message": "expected {\"type\": \"control\", ...}"}
    try:
        command = ControlCommand(
            source=source, command_id=uuid.uuid4().hex[:12],
            target=message.get("worker", ""), action=message.get("action"),
            session_id=message.get("session_id") or "",
            model_kind=message.get("model_kind"), system_prompt=message.get("system_prompt"),
            issued_by=operator.holder, issued_from=operator.address,
        )
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        return {"type": "error", "message": f"bad control request: {field}: {first['msg']}"}
    logger.info("Dashboard: {} sent to {} by {} from {}", command.action, command.target,
                operator.holder, operator.address)
    bus.publish_nowait(command)
    return {"type": "sent", "command_id": command.command_id}
