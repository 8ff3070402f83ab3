"""Slash commands: the bot's synced commands, INTERACTION_CREATE payloads, and its answers.

A slash command's "reply text" is what a user would finally read: the content of an
immediate reply (callback type 4), or, after a deferral (type 5), of the followup or
the edited original. Embeds count when there is no content (title and description).
"""

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from . import payloads
from .world import EVERYONE_PERMISSIONS, World

CALLBACK_MESSAGE = 4
CALLBACK_DEFERRED_MESSAGE = 5
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
OPTION_STRING = 3
ATTACHMENT_SIZE_LIMIT_BYTES = 8 * 1024 * 1024

FIRST_RESPONSE_DEADLINE_SECS = 3.0


class CommandNotPermitted(Exception):
    """The member lacks the command's `default_member_permissions`."""


def message_text(body: dict[str, Any]) -> str:
    """What a user reads in a posted message body: content, else the embeds' text."""
    if body.get("content"):
        return str(body["content"])
    parts = []
    for embed in body.get("embeds") or []:
        parts += [embed[key] for key in ("title", "description") if embed.get(key)]
    return "\n".join(parts)


@dataclass
class InteractionResponse:
    """One thing the bot posted in answer to an interaction (FakeDiscord.interaction_responses)."""

    interaction_id: int
    command: str
    kind: str  # "callback", "followup", "edit_original" or "delete_original"
    body: dict[str, Any]
    callback_type: int | None = None

    @property
    def message(self) -> dict[str, Any]:
        """The message fields posted: a callback's `data`, or the whole webhook body."""
        return (self.body.get("data") or {}) if self.kind == "callback" else self.body

    @property
    def text(self) -> str:
        return message_text(self.message)

    @property
    def is_ephemeral(self) -> bool:
        return bool((self.message.get("flags") or 0) & FLAG_EPHEMERAL)


@dataclass
class PendingInteraction:
    interaction_id: int
    token: str
    command: str
    message_id: int
    reply: asyncio.Future[str]
    created_at: float = 0.0  # the loop's clock
    deferred: bool = False
    original: dict[str, Any] = field(default_factory=dict)


class CommandStore:
    """Application commands as the bot synced them, global (scope None) or per guild."""

    def __init__(self, world: World) -> None:
        self._world = world
        self.scopes: dict[int | None, dict[str, dict[str, Any]]] = {}

    def replace(self, guild_id: int | None, commands: list[dict[str, Any]]) -> list[dict]:
        """PUT (bulk overwrite): keeps ids of commands that keep their name."""
        old = self.scopes.get(guild_id, {})
        stored: dict[str, dict[str, Any]] = {}
        for command in commands:
            name = command["name"]
            previous_id = old.get(name, {}).get("id")
            stored[name] = {
                "type": 1, "options": [], "default_member_permissions": None, "nsfw": False,
                **command, "id": previous_id or str(self._world.ids.next()),
                "application_id": str(self._world.app_id), "version": str(self._world.ids.next()),
            }
            if guild_id is not None:
                stored[name]["guild_id"] = str(guild_id)
        self.scopes[guild_id] = stored
        return list(stored.values())

    def find(self, name: str) -> dict[str, Any] | None:
        """The guild command first (as Discord shows it), else the global one."""
        return self.scopes.get(self._world.guild_id, {}).get(name) or \
            self.scopes.get(None, {}).get(name)


class InteractionBroker:
    """Builds interactions and matches the bot's REST answers to them by token."""

    def __init__(self, world: World, commands: CommandStore) -> None:
        self._world, self._commands = world, commands
        self.responses: list[InteractionResponse] = []
        self._pending: dict[str, PendingInteraction] = {}

    def create(self, user_id: int, name: str,
               options: dict[str, Any]) -> tuple[dict, PendingInteraction]:
        world = self._world
        command = self._commands.find(name)
        if command is None:
            logger.warning("fake Discord: /{} was never synced; sending it as a global command",
                           name)
        required = int((command or {}).get("default_member_permissions") or 0)
        if required & ~payloads.permissions(world, user_id):
            # Discord's client does not offer the command to this member, nor runs it.
            raise CommandNotPermitted(f"/{name} needs permissions {required:#x}, which "
                                      f"{world.people[user_id].name} does not have")
        option_types = {o["name"]: o.get("type", OPTION_STRING)
                        for o in (command or {}).get("options", [])}
        data: dict[str, Any] = {
            "id": command["id"] if command else str(world.ids.next()), "name": name, "type": 1,
            "options": [{"name": k, "type": option_types.get(k, OPTION_STRING), "value": v}
                        for k, v in options.items()],
        }
        if command and command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        text_channel = next(c for c in payloads.channels(world)
                            if c["id"] == str(world.text_channel_id))
        interaction_id, token = world.ids.next(), f"itoken-{secrets.token_hex(12)}"
        payload = {
            "id": str(interaction_id), "application_id": str(world.app_id), "type": 2,
            "token": token, "version": 1, "data": data, "guild_id": str(world.guild_id),
            "guild": {"id": str(world.guild_id), "locale": "en-US", "features": []},
            "channel_id": str(world.text_channel_id), "channel": text_channel,
            "member": payloads.member(world, user_id, with_permissions=True),
            "app_permissions": str(EVERYONE_PERMISSIONS), "locale": "en-US",
            "guild_locale": "en-US", "entitlements": [], "context": 0,
            "authorizing_integration_owners": {"0": str(world.guild_id)},
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT_BYTES,
        }
        loop = asyncio.get_running_loop()
        pending = PendingInteraction(interaction_id, token, name, world.ids.next(),
                                     loop.create_future(), created_at=loop.time())
        self._pending[token] = pending
        return payload, pending

    def _message(self, pending: PendingInteraction, body: dict, message_id: int) -> dict:
        return payloads.message(self._world, message_id, body,
                                channel_id=self._world.text_channel_id,
                                interaction_id=pending.interaction_id,
                                webhook_id=self._world.app_id)

    def _record(self, pending: PendingInteraction, kind: str, body: dict,
                callback_type: int | None = None) -> InteractionResponse:
        response = InteractionResponse(pending.interaction_id, pending.command, kind, body,
                                       callback_type)
        self.responses.append(response)
        logger.debug("fake Discord: /{} {} {!r}", pending.command, kind, response.text)
        return response

    def _resolve(self, pending: PendingInteraction, text: str) -> None:
        if not pending.reply.done():
            pending.reply.set_result(text)

    def on_callback(self, interaction_id: int, token: str, body: dict) -> dict | None:
        """POST /interactions/{id}/{token}/callback; None for an unknown interaction."""
        pending = self._pending.get(token)
        if pending is None or pending.interaction_id != interaction_id:
            return None
        late = asyncio.get_running_loop().time() - pending.created_at
        if late > FIRST_RESPONSE_DEADLINE_SECS:
            # Discord: the first response is due within 3 s, or the interaction is gone
            # (error 10062 "Unknown interaction"); the user sees "The application did not
            # respond".
            logger.warning("fake Discord: /{} answered after {:.1f}s: unknown interaction",
                           pending.command, late)
            return None
        kind = int(body.get("type", 0))
        response = self._record(pending, "callback", body, kind)
        data = dict(body.get("data") or {})
        flags = int(data.get("flags") or 0)
        if kind == CALLBACK_DEFERRED_MESSAGE:
            pending.deferred = True
            data["flags"] = flags | FLAG_LOADING
        elif kind == CALLBACK_MESSAGE:
            self._resolve(pending, response.text)
        pending.original = self._message(pending, data, pending.message_id)
        answer: dict[str, Any] = {"interaction": {
            "id": str(interaction_id), "type": 2, "response_message_id": str(pending.message_id),
            "response_message_loading": kind == CALLBACK_DEFERRED_MESSAGE,
            "response_message_ephemeral": bool(flags & FLAG_EPHEMERAL)}}
        if kind in (CALLBACK_MESSAGE, CALLBACK_DEFERRED_MESSAGE):
            answer["resource"] = {"type": kind, "message": pending.original}
        return answer

    def on_followup(self, token: str, body: dict) -> dict | None:
        pending = self._pending.get(token)
        if pending is None:
            return None
        response = self._record(pending, "followup", body)
        self._resolve(pending, response.text)
        return self._message(pending, body, self._world.ids.next())

    def on_edit_original(self, token: str, body: dict) -> dict | None:
        pending = self._pending.get(token)
        if pending is None:
            return None
        response = self._record(pending, "edit_original", body)
        self._resolve(pending, response.text)
        pending.original = {**pending.original, **self._message(pending, body, pending.message_id)}
        return pending.original

    def get_original(self, token: str) -> dict | None:
        pending = self._pending.get(token)
        return pending.original if pending is not None and pending.original else None

    def on_delete_original(self, token: str) -> bool:
        pending = self._pending.get(token)
        if pending is None:
            return False
        self._record(pending, "delete_original", {})
        return True
