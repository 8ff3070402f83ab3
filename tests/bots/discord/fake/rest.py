"""The fake REST API under /api/v10: login, command sync, interaction answers, messages.

Every JSON answer carries `Content-Type: application/json` exactly: discord.py's
`json_or_text` compares the header with `==`, and aiohttp's `json_response` would add
`; charset=utf-8`, turning every body into a str that crashes the client. Unknown
routes answer a Discord-style 404 and are logged and listed in `unknown_routes`, so a
route the bot needs and the fake lacks shows up in the test.
"""

import json
from typing import Any

from aiohttp import web
from loguru import logger

from . import payloads
from .interactions import CommandStore, InteractionBroker
from .world import World

API_PREFIX = "/api/v10"


def json_answer(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(data).encode(),
                        headers={"Content-Type": "application/json"})


def not_found(what: str) -> web.Response:
    return json_answer({"message": f"Unknown {what}", "code": 10000}, status=404)


async def read_body(request: web.Request) -> dict[str, Any]:
    """A JSON body, or the `payload_json` part of a multipart one (messages with files)."""
    if request.content_type.startswith("multipart/"):
        form = await request.post()
        return json.loads(form.get("payload_json") or "{}")
    text = await request.text()
    return json.loads(text) if text else {}


class RestApi:
    """The routes discord.py calls in login, sync and interaction flows."""

    def __init__(self, world: World, commands: CommandStore, broker: InteractionBroker) -> None:
        self._world, self._commands, self._broker = world, commands, broker
        self.requests: list[tuple[str, str]] = []  # (method, path) of every call
        self.unknown_routes: list[tuple[str, str]] = []
        self.channel_messages: list[dict[str, Any]] = []  # POST /channels/{id}/messages

    def add_routes(self, app: web.Application) -> None:
        p = API_PREFIX
        r = app.router
        r.add_get(p + "/users/@me", self._me)
        r.add_get(p + "/oauth2/applications/@me", self._application)
        r.add_get(p + "/applications/@me", self._application)
        r.add_put(p + "/applications/{app}/commands", self._put_commands)
        r.add_get(p + "/applications/{app}/commands", self._get_commands)
        r.add_put(p + "/applications/{app}/guilds/{guild}/commands", self._put_commands)
        r.add_get(p + "/applications/{app}/guilds/{guild}/commands", self._get_commands)
        r.add_post(p + "/interactions/{id}/{token}/callback", self._callback)
        r.add_post(p + "/webhooks/{app}/{token}", self._followup)
        r.add_get(p + "/webhooks/{app}/{token}/messages/@original", self._get_original)
        r.add_patch(p + "/webhooks/{app}/{token}/messages/@original", self._edit_original)
        r.add_delete(p + "/webhooks/{app}/{token}/messages/@original", self._delete_original)
        r.add_post(p + "/channels/{channel}/messages", self._channel_message)
        r.add_route("*", p + "/{tail:.*}", self._unknown)

    @web.middleware
    async def log_middleware(self, request: web.Request, handler) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        logger.trace("fake Discord REST: {} {}", request.method, request.path)
        return await handler(request)

    async def _me(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bot {self._world.bot_token}":
            return json_answer({"message": "401: Unauthorized", "code": 0}, status=401)
        return json_answer(payloads.user(self._world, self._world.bot_user_id)
                           | {"verified": True, "mfa_enabled": False})

    async def _application(self, request: web.Request) -> web.Response:
        return json_answer(payloads.application(self._world))

    def _scope(self, request: web.Request) -> int | None:
        guild = request.match_info.get("guild")
        return int(guild) if guild else None

    async def _put_commands(self, request: web.Request) -> web.Response:
        commands = await request.json()
        stored = self._commands.replace(self._scope(request), commands)
        logger.debug("fake Discord: synced {} to {}", [c["name"] for c in stored],
                     self._scope(request) or "global")
        return json_answer(stored)

    async def _get_commands(self, request: web.Request) -> web.Response:
        return json_answer(list(self._commands.scopes.get(self._scope(request), {}).values()))

    async def _callback(self, request: web.Request) -> web.Response:
        body = await read_body(request)
        answer = self._broker.on_callback(int(request.match_info["id"]),
                                          request.match_info["token"], body)
        if answer is None:
            return not_found("Interaction")
        if request.query.get("with_response") in ("1", "true", "True"):
            return json_answer(answer)
        return web.Response(status=204)

    async def _followup(self, request: web.Request) -> web.Response:
        message = self._broker.on_followup(request.match_info["token"], await read_body(request))
        return json_answer(message) if message is not None else not_found("Webhook")

    async def _get_original(self, request: web.Request) -> web.Response:
        message = self._broker.get_original(request.match_info["token"])
        return json_answer(message) if message is not None else not_found("Message")

    async def _edit_original(self, request: web.Request) -> web.Response:
        message = self._broker.on_edit_original(request.match_info["token"],
                                                await read_body(request))
        return json_answer(message) if message is not None else not_found("Webhook")

    async def _delete_original(self, request: web.Request) -> web.Response:
        if not self._broker.on_delete_original(request.match_info["token"]):
            return not_found("Webhook")
        return web.Response(status=204)

    async def _channel_message(self, request: web.Request) -> web.Response:
        body = await read_body(request)
        channel_id = int(request.match_info["channel"])
        self.channel_messages.append({"channel_id": channel_id, **body})
        return json_answer(payloads.message(self._world, self._world.ids.next(), body,
                                            channel_id=channel_id))

    async def _unknown(self, request: web.Request) -> web.Response:
        self.unknown_routes.append((request.method, request.path))
        logger.warning("fake Discord REST: no route for {} {}; answering 404", request.method,
                       request.path)
        return json_answer({"message": "404: Not Found", "code": 0}, status=404)
