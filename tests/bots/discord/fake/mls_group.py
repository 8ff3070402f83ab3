"""Keeps the fake members and the bot in one DAVE MLS group, as Discord's voice server does.

Two ways in, both from the DAVE whitepaper:
- The bot joins a channel where fake members already talk: it sends its key package
  (op 26); the server signs an Add; one fake member commits; the others process the
  commit; the bot gets the Welcome (op 30).
- A member joins while the bot is in the group: the server sends the bot the signed
  Add (op 27); the bot answers commit + welcome (op 28); the server splits it, announces
  the commit (op 29) and hands the Welcome to the new member. Leaving uses a Remove.
Transitions use non-zero ids, so the bot confirms with op 23 and the server executes
with op 22: that confirmation is the fake's proof that the bot took the change.

When the bot re-keys (a resumed or new voice session re-creates its DaveSession) the
fake members' group still holds the bot's old leaf, so they rebuild it first. Every
operation runs under one lock, in order.
"""

import asyncio
import enum
import itertools
import struct
from typing import Protocol

import davey
from loguru import logger

from .dave import ExternalSender, split_commit_welcome
from .members import FakeMember
from .signals import Changed
from .world import World

APPEND = davey.ProposalsOperationType.append
DAVE_VERSION = 1
OP_CLIENTS_CONNECT = 11
OP_CLIENT_DISCONNECT = 13
OP_EXECUTE_TRANSITION = 22
OP_PROPOSALS = 27
OP_ANNOUNCE_COMMIT = 29
OP_WELCOME = 30
DAVE_MAGIC = b"\xfa\xfa"


class BotLink(Protocol):
    """The bot's current voice websocket, as the voice server exposes it."""

    async def send_json(self, op: int, data: object) -> None: ...
    async def send_binary(self, op: int, payload: bytes) -> None: ...


class BotMls(enum.Enum):
    ABSENT = "absent"  # no DAVE session, or one whose key package has not arrived
    JOINING = "joining"  # welcome sent, waiting for op 23
    ALONE = "alone"  # the bot's own one-member group at epoch 0
    IN_GROUP = "in_group"


class MlsCoordinator:
    """The server side of one channel's DAVE group. Owned by FakeDiscord."""

    def __init__(self, world: World, members: dict[int, FakeMember], link: BotLink,
                 changed: Changed, *, reply_timeout_secs: float = 5.0) -> None:
        self.sender = ExternalSender()
        self.bot = BotMls.ABSENT
        self.channel_id: int | None = None
        self.group: list[FakeMember] = []
        self.epoch = 0
        self.invalid_commit_count = 0
        self._world, self._members, self._link, self._changed = world, members, link, changed
        self._timeout_secs = reply_timeout_secs
        self._group_has_bot = False
        self._lock = asyncio.Lock()
        self._transition_ids = itertools.count(1)
        self._commit: asyncio.Future[bytes] | None = None
        self._transitions: dict[int, asyncio.Future[None]] = {}

    def __repr__(self) -> str:
        return f"MlsCoordinator(bot={self.bot.value}, epoch={self.epoch}, group={self.group})"

    @property
    def is_settled(self) -> bool:
        """The bot is in the group with exactly the fake members in its channel."""
        return (not self._lock.locked() and self.bot in (BotMls.ALONE, BotMls.IN_GROUP)
                and set(self.group) == set(self._voice_members(self.channel_id)))

    def _voice_members(self, channel_id: int | None) -> list[FakeMember]:
        return [self._members[uid] for uid in self._world.in_channel(channel_id)
                if uid in self._members]

    def _set_bot(self, state: BotMls) -> None:
        self.bot = state
        self._changed.notify()

    def _fresh_key_package(self, member: FakeMember, channel_id: int) -> bytes:
        if member.session is None:
            member.session = davey.DaveSession(DAVE_VERSION, member.user_id, channel_id)
        else:
            member.session.reinit(DAVE_VERSION, member.user_id, channel_id)
        member.session.set_external_sender(self.sender.package)
        return member.session.get_serialized_key_package()

    def _rebuild(self, channel_id: int | None) -> None:
        """A group of just the fake members in the channel: the first creates, adds the rest."""
        members = self._voice_members(channel_id)
        packages = [self._fresh_key_package(m, channel_id) for m in members]
        self.channel_id, self.group, self.epoch, self._group_has_bot = channel_id, members, 0, False
        if len(members) > 1:
            proposals = self.sender.add_proposals(channel_id, 0, packages[1:])
            result = members[0].session.process_proposals(APPEND, proposals)
            members[0].session.process_commit(result.commit)
            for joiner in members[1:]:
                joiner.session.process_welcome(result.welcome)
            self.epoch = 1
        logger.debug("{}: rebuilt the fake members' group", self)

    async def send_malformed_proposals(self) -> None:
        """Op 27 whose proposals no MLS library can parse (a server bug, a newer format)."""
        await self._link.send_binary(OP_PROPOSALS, b"\x00" + b"\x05not-mls")

    def leave_bot_behind(self) -> None:
        """The members' group moves on through a commit the bot never gets (a lost message):
        their frames stop decrypting for the bot until it asks to be added again (op 31, then
        a new key package)."""
        self._rebuild(self.channel_id)
        self._set_bot(BotMls.ABSENT)

    # -- events from the bot's voice websocket -------------------------------------------

    def on_session_started(self) -> None:
        """SESSION_DESCRIPTION with DAVE: the bot makes a new DaveSession; its kp follows."""
        self._set_bot(BotMls.ABSENT)

    def on_bot_left(self) -> None:
        self._set_bot(BotMls.ABSENT)
        self._fail_waiters(ConnectionError("the bot left voice"))

    def on_commit_welcome(self, data: bytes) -> None:
        if self._commit is None or self._commit.done():
            logger.warning("{}: unexpected op 28 ({} bytes), ignored", self, len(data))
            return
        self._commit.set_result(data)

    def on_transition_ready(self, transition_id: int) -> None:
        waiter = self._transitions.get(transition_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_invalid_commit(self, transition_id: int) -> None:
        """Op 31: the bot failed a commit or welcome; it re-inits and sends a new key package."""
        self.invalid_commit_count += 1
        logger.warning("{}: bot reported invalid commit/welcome for transition {}", self,
                       transition_id)
        waiter = self._transitions.get(transition_id)
        if waiter is not None and not waiter.done():
            waiter.set_exception(RuntimeError(f"bot sent op 31 for transition {transition_id}"))

    def _fail_waiters(self, error: Exception) -> None:
        for waiter in [self._commit, *self._transitions.values()]:
            if waiter is not None and not waiter.done():
                waiter.set_exception(error)

    # -- operations, one at a time ---------------------------------------------------------

    async def add_bot(self, key_package: bytes) -> None:
        """Op 26 arrived: put the bot into the group of the fake members in its channel."""
        async with self._lock:
            channel_id = self._world.bot_channel_id()
            members = self._voice_members(channel_id)
            if self._group_has_bot or channel_id != self.channel_id or set(self.group) != set(
                    members):
                self._rebuild(channel_id)
            self._group_has_bot = True
            if not self.group:
                self._set_bot(BotMls.ALONE)
                return
            self._set_bot(BotMls.JOINING)
            proposals = self.sender.add_proposals(channel_id, self.epoch, [key_package])
            committer, *others = self.group
            result = committer.session.process_proposals(APPEND, proposals)
            for other in others:
                other.session.process_proposals(APPEND, proposals)  # caches them for the commit
            for member in self.group:
                member.session.process_commit(result.commit)
            self.epoch += 1
            transition_id = next(self._transition_ids)
            await self._transition(transition_id, OP_WELCOME, result.welcome)

    async def add_member(self, member: FakeMember) -> None:
        """`member` joined the bot's channel: the bot commits its Add (op 27 → 28 → 29)."""
        async with self._lock:
            in_bot_channel = member in self._voice_members(self.channel_id)
            if self.bot not in (BotMls.ALONE, BotMls.IN_GROUP) or member in self.group \
                    or not in_bot_channel:
                return
            key_package = self._fresh_key_package(member, self.channel_id)
            await self._link.send_json(OP_CLIENTS_CONNECT, {"user_ids": [str(member.user_id)]})
            proposals = self.sender.add_proposals(self.channel_id, self.epoch, [key_package])
            commit, welcome = await self._bot_commit(proposals)
            if welcome is None:
                raise RuntimeError(f"{self}: the bot's commit adding {member} had no welcome")
            transition_id = next(self._transition_ids)
            for other in self.group:
                other.session.process_commit(commit)
            member.session.process_welcome(welcome)
            self.group.append(member)
            self.epoch += 1
            await self._transition(transition_id, OP_ANNOUNCE_COMMIT, commit)

    async def remove_member(self, member: FakeMember) -> None:
        """`member` left the bot's channel: the bot commits its Remove."""
        async with self._lock:
            if member not in self.group:
                return
            if self.bot not in (BotMls.ALONE, BotMls.IN_GROUP):
                self.group.remove(member)  # stale now; rebuilt when the bot's key package comes
                self._changed.notify()
                return
            await self._link.send_json(OP_CLIENT_DISCONNECT, {"user_id": str(member.user_id)})
            leaf = member.session.own_leaf_index
            self.group.remove(member)
            proposals = self.sender.remove_proposals(self.channel_id, self.epoch, [leaf])
            commit, _ = await self._bot_commit(proposals)
            for other in self.group:
                other.session.process_commit(commit)
            member.session.reset()
            self.epoch += 1
            await self._transition(next(self._transition_ids), OP_ANNOUNCE_COMMIT, commit)

    async def _bot_commit(self, proposals: bytes) -> tuple[bytes, bytes | None]:
        """Sends op 27 (append) to the bot and its fellow fake members; returns its op 28."""
        self._commit = asyncio.get_running_loop().create_future()
        try:
            await self._link.send_binary(OP_PROPOSALS, b"\x00" + proposals)
            for other in self.group:
                other.session.process_proposals(APPEND, proposals)  # caches them for the commit
            data = await asyncio.wait_for(self._commit, self._timeout_secs)
        finally:
            self._commit = None
        return split_commit_welcome(data)

    async def _transition(self, transition_id: int, op: int, message: bytes) -> None:
        """Sends op 29/30 with a non-zero transition id; waits op 23, then executes (op 22)."""
        waiter = asyncio.get_running_loop().create_future()
        self._transitions[transition_id] = waiter
        try:
            await self._link.send_binary(op, struct.pack(">H", transition_id) + message)
            await asyncio.wait_for(waiter, self._timeout_secs)
            await self._link.send_json(OP_EXECUTE_TRANSITION, {"transition_id": transition_id})
        finally:
            del self._transitions[transition_id]
        self._set_bot(BotMls.IN_GROUP)
        logger.debug("{}: transition {} executed", self, transition_id)

    # -- media ---------------------------------------------------------------------------

    def decrypt_from_bot(self, frame: bytes) -> bytes:
        """The bot's frame as a fake member's session decrypts it; plain frames pass as is.

        DAVE frames end with the magic marker FA FA; the bot sends plain Opus until its
        session is ready (alone, or before the welcome).
        """
        if not self.group or not frame.endswith(DAVE_MAGIC):
            return frame
        return self.group[0].session.decrypt(self._world.bot_user_id, davey.MediaType.audio,
                                             frame)
