"""The fake main gateway (v10, plain-text JSON): HELLO, IDENTIFY → READY + GUILD_CREATE.

discord.py asks for `compress=zlib-stream` but parses text frames as they are, so the
fake never compresses. Op 4 (voice state) goes to FakeDiscord, which answers with
VOICE_STATE_UPDATE and VOICE_SERVER_UPDATE as Discord does.
"""

import asyncio
import collections
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web
from loguru import logger

from . import payloads
from .signals import Changed, TaskSet
from .world import World

OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_PRESENCE, OP_VOICE_STATE = 0, 1, 2, 3, 4
OP_RESUME, OP_REQUEST_MEMBERS, OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = 6, 8, 9, 10, 11
CLOSE_AUTHENTICATION_FAILED = 4004
HEARTBEAT_INTERVAL_MS = 41250


class GatewayServer:
    """Serves `/gateway` on the fake's HTTP app; one bot connection at a time."""

    def __init__(self, world: World, changed: Changed,
                 on_voice_state: Callable[[dict], Awaitable[None]]) -> None:
        self._world, self._changed, self._on_voice_state = world, changed, on_voice_state
        self._ws: web.WebSocketResponse | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._seq = 0
        self.session_id = secrets.token_hex(16)
        self.url = ""  # set once the HTTP server listens
        self.is_ready = False  # READY and GUILD_CREATE sent on the live connection
        self.identify_count = 0
        # Every dispatch goes through one FIFO, so a sync post() (GUILD_MEMBER_ADD from
        # add_member) can never be overtaken by a later awaited dispatch.
        self._outbox: collections.deque[tuple[str, Any]] = collections.deque()
        self._send_lock = asyncio.Lock()
        self._tasks = TaskSet("fake-gateway")

    def __repr__(self) -> str:
        return f"GatewayServer({self.url})"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/gateway", self._handle)

    async def close(self) -> None:
        await self._tasks.close()
        for ws in list(self._sockets):
            await ws.close()

    def post(self, event: str, data: Any) -> None:
        """Queues a dispatch from sync code; sent in order with every other dispatch."""
        self._outbox.append((event, data))
        self._tasks.spawn(self._flush(), f"dispatch-{event}")

    async def dispatch(self, event: str, data: Any) -> None:
        """Sends one dispatch (op 0) after any queued ones; dropped while no bot is connected."""
        self._outbox.append((event, data))
        await self._flush()

    async def _flush(self) -> None:
        async with self._send_lock:
            while self._outbox:
                await self._send(*self._outbox.popleft())

    async def _send(self, event: str, data: Any) -> None:
        if self._ws is None or self._ws.closed or not self.is_ready:
            logger.debug("{}: {} not sent, the bot is not connected", self, event)
            return
        self._seq += 1
        logger.trace("{}: dispatch {} s={}", self, event, self._seq)
        await self._ws.send_str(json.dumps({"op": OP_DISPATCH, "t": event, "s": self._seq,
                                            "d": data}))

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            await ws.send_str(json.dumps(
                {"op": OP_HELLO, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}}))
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_message(ws, json.loads(msg.data))
        finally:
            self._sockets.discard(ws)
            if ws is self._ws:
                self._ws, self.is_ready = None, False
                self._changed.notify()
        return ws

    async def _on_message(self, ws: web.WebSocketResponse, msg: dict) -> None:
        op, data = msg.get("op"), msg.get("d")
        if op == OP_HEARTBEAT:
            await ws.send_str(json.dumps({"op": OP_HEARTBEAT_ACK}))
        elif op == OP_IDENTIFY:
            await self._identify(ws, data)
        elif op == OP_RESUME:
            await self._resume(ws, data)
        elif op == OP_VOICE_STATE and ws is self._ws:
            await self._on_voice_state(data)
        elif op == OP_REQUEST_MEMBERS and ws is self._ws:
            members = [payloads.member(self._world, uid) for uid in self._world.people]
            await self.dispatch("GUILD_MEMBERS_CHUNK", {
                "guild_id": str(self._world.guild_id), "members": members, "chunk_index": 0,
                "chunk_count": 1, "nonce": data.get("nonce")})
        elif op == OP_PRESENCE:
            pass
        else:
            logger.debug("{}: ignored gateway op {}: {}", self, op, data)

    async def _identify(self, ws: web.WebSocketResponse, data: dict) -> None:
        if data.get("token") != self._world.bot_token:
            logger.warning("{}: IDENTIFY with a wrong token", self)
            await ws.close(code=CLOSE_AUTHENTICATION_FAILED, message=b"Authentication failed.")
            return
        async with self._send_lock:
            self._outbox.clear()  # GUILD_CREATE carries the state they would have changed
            self._ws, self._seq, self.is_ready = ws, 0, True
            self.session_id = secrets.token_hex(16)
            self.identify_count += 1
            await self._send("READY", payloads.ready(self._world, self.session_id, self.url))
            await self._send("GUILD_CREATE", payloads.guild_create(self._world))
        self._changed.notify()

    async def _resume(self, ws: web.WebSocketResponse, data: dict) -> None:
        if data.get("token") != self._world.bot_token or data.get("session_id") != \
                self.session_id:
            await ws.send_str(json.dumps({"op": OP_INVALID_SESSION, "d": False}))
            return
        self._ws, self.is_ready = ws, True
        self._seq = int(data.get("seq") or self._seq)
        await self.dispatch("RESUMED", {})
        self._changed.notify()
