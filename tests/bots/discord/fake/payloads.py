"""Discord JSON objects built from the fake's World, with the keys discord.py 2.7.1 reads.

Every id is a string, as on the wire. Keys that discord.py indexes without `.get`
(member `flags`, message `type`/`content`, interaction `attachment_size_limit`, ...)
are always present; leaving one out crashes the client's parser, not the fake.
"""

import datetime
from typing import Any

from .world import CONNECT, EVERYONE_PERMISSIONS, MANAGE_GUILD, World

JOINED_AT = "2024-01-01T00:00:00.000000+00:00"
APP_FLAGS_GATEWAY_MEMBERS_AND_PRESENCE = (1 << 13) | (1 << 15)


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def user(world: World, user_id: int) -> dict[str, Any]:
    person = world.people[user_id]
    return {
        "id": str(user_id), "username": person.name.lower(), "global_name": person.name,
        "discriminator": "0", "avatar": None, "bot": person.bot, "public_flags": 0, "flags": 0,
    }


def permissions(world: World, user_id: int) -> int:
    """A member's permissions in the text channel: @everyone's, plus Manage Server if given."""
    person = world.people.get(user_id)
    return EVERYONE_PERMISSIONS | (MANAGE_GUILD if person and person.manage_guild else 0)


def member(world: World, user_id: int, *, with_permissions: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "user": user(world, user_id), "nick": None, "avatar": None, "roles": [],
        "joined_at": JOINED_AT, "premium_since": None, "deaf": False, "mute": False,
        "flags": 0, "pending": False, "communication_disabled_until": None,
    }
    if with_permissions:
        data["permissions"] = str(permissions(world, user_id))
    return data


def voice_state(world: World, user_id: int) -> dict[str, Any]:
    """VOICE_STATE_UPDATE's data; channel_id None when the user is not in voice."""
    record = world.voice.get(user_id)
    return {
        "guild_id": str(world.guild_id),
        "channel_id": str(record.channel_id) if record else None,
        "user_id": str(user_id),
        "member": member(world, user_id),
        "session_id": record.session_id if record else "",
        "deaf": record.deaf if record else False,
        "mute": record.mute if record else False,
        "self_deaf": record.self_deaf if record else False,
        "self_mute": record.self_mute if record else False,
        "self_video": False, "self_stream": False, "suppress": False,
        "request_to_speak_timestamp": None,
    }


def _channel(world: World, channel_id: int, kind: int, name: str, position: int) -> dict:
    return {
        "id": str(channel_id), "type": kind, "guild_id": str(world.guild_id), "name": name,
        "position": position, "permission_overwrites": [], "nsfw": False, "parent_id": None,
        "rate_limit_per_user": 0, "flags": 0,
    }


def channels(world: World) -> list[dict[str, Any]]:
    text = _channel(world, world.text_channel_id, 0, "general", 0)
    text.update({"topic": None, "last_message_id": None})
    out = [text]
    for position, channel_id in enumerate(world.voice_channel_ids, start=1):
        voice = _channel(world, channel_id, 2, f"Voice {position}", position)
        voice.update({"bitrate": 64000, "user_limit": 0, "rtc_region": None,
                      "video_quality_mode": 1, "last_message_id": None})
        if not world.bot_can_connect:
            # A member overwrite (type 1) that takes CONNECT from the bot alone.
            voice["permission_overwrites"] = [
                {"id": str(world.bot_user_id), "type": 1, "allow": "0", "deny": str(CONNECT)}
            ]
        out.append(voice)
    return out


def guild_create(world: World) -> dict[str, Any]:
    everyone = {
        "id": str(world.guild_id), "name": "@everyone", "color": 0, "hoist": False,
        "icon": None, "unicode_emoji": None, "position": 0,
        "permissions": str(EVERYONE_PERMISSIONS), "managed": False, "mentionable": False,
        "flags": 0,
    }
    members = [member(world, uid) for uid in world.people]
    return {
        "id": str(world.guild_id), "name": "Fake Guild", "icon": None, "splash": None,
        "discovery_splash": None, "owner_id": str(world.owner_id), "afk_channel_id": None,
        "afk_timeout": 300, "verification_level": 0, "default_message_notifications": 0,
        "explicit_content_filter": 0, "roles": [everyone], "emojis": [], "stickers": [],
        "features": [], "mfa_level": 0, "application_id": None,
        "system_channel_id": str(world.text_channel_id), "system_channel_flags": 0,
        "rules_channel_id": None, "premium_tier": 0, "premium_subscription_count": 0,
        "preferred_locale": "en-US", "nsfw_level": 0, "vanity_url_code": None,
        "description": None, "banner": None, "max_members": 1000,
        # member_count == len(members) marks the guild chunked: no op 8 at startup.
        "member_count": len(members), "large": False, "unavailable": False,
        "joined_at": JOINED_AT, "channels": channels(world), "threads": [],
        "members": members, "presences": [],
        "voice_states": [
            {k: v for k, v in voice_state(world, uid).items() if k != "member"}
            for uid in world.voice
        ],
        "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": [],
    }


def ready(world: World, session_id: str, resume_url: str) -> dict[str, Any]:
    return {
        "v": 10, "user": user(world, world.bot_user_id) | {"verified": True, "mfa_enabled": False},
        "guilds": [{"id": str(world.guild_id), "unavailable": True}],
        "session_id": session_id, "resume_gateway_url": resume_url, "session_type": "normal",
        "application": {"id": str(world.app_id), "flags": APP_FLAGS_GATEWAY_MEMBERS_AND_PRESENCE},
        "private_channels": [], "relationships": [], "user_settings": {}, "presences": [],
        "guild_join_requests": [], "geo_ordered_rtc_regions": ["fake"],
    }


def application(world: World) -> dict[str, Any]:
    """GET /oauth2/applications/@me."""
    return {
        "id": str(world.app_id), "name": world.bot_name, "description": "", "icon": None,
        "bot_public": True, "bot_require_code_grant": False, "verify_key": "0" * 64,
        "owner": {"id": str(world.owner_id), "username": "owner", "global_name": "Owner",
                  "discriminator": "0", "avatar": None},
        "team": None, "flags": APP_FLAGS_GATEWAY_MEMBERS_AND_PRESENCE, "summary": "",
        "rpc_origins": [], "tags": [], "redirect_uris": [], "interactions_endpoint_url": None,
    }


def message(world: World, message_id: int, body: dict[str, Any], *, channel_id: int,
            interaction_id: int | None = None, webhook_id: int | None = None) -> dict:
    """A message the bot sent, echoing the fields it posted."""
    data: dict[str, Any] = {
        "id": str(message_id), "channel_id": str(channel_id), "guild_id": str(world.guild_id),
        "author": user(world, world.bot_user_id), "content": body.get("content") or "",
        "timestamp": now_iso(), "edited_timestamp": None, "tts": bool(body.get("tts")),
        "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": [],
        "embeds": body.get("embeds") or [], "components": body.get("components") or [],
        "pinned": False, "type": 20 if interaction_id else 0, "flags": body.get("flags") or 0,
        "application_id": str(world.app_id),
    }
    if webhook_id is not None:
        data["webhook_id"] = str(webhook_id)
    return data
