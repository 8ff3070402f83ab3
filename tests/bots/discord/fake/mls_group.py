"""Keeps the fake members and the bot in one DAVE MLS group, as Discord's voice server does.

Two ways in, both from the DAVE whitepaper:
- The bot joins a channel where fake members already talk: it sends its key package
  (op 26); the server signs an Add; one fake member commits; the others process the
  commit; the bot gets the Welcome (op 30).
- A member joins while the bot is in the group: the server sends everyone the signed
  Add (op 27); each answers with a commit, the bot's with the welcome (op 28); the server
  picks one (the bot's, unless `members_win_commits`), announces it (op 29) and hands the
  Welcome to the new member. Leaving uses a Remove; a member who leaves before the commit
  has their Add revoked (op 27, revoke). The bot left alone is told to start a group of its
  own (op 24 epoch 1, op 21 transition 0).
Transitions use non-zero ids: the bot confirms with op 23, the other members take a moment
to (`MEMBERS_READY_SECS`), then the server executes with op 22. Members decrypt with a
commit's keys as soon as they process it but send with them only from op 22 (sender.py).
The call can also go back to transport encryption only (a client without DAVE joined: op 21
to version 0) and up again (op 24 epoch 1, a new group).

When the bot re-keys (a resumed or new voice session re-creates its DaveSession) the
fake members' group still holds the bot's old leaf, so they rebuild it first. Every
operation runs under one lock, in order.
"""

import asyncio
import enum
import itertools
import struct
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

import davey
from loguru import logger

from .dave import (
    ExternalSender,
    proposals_payload,
    revoke_payload,
    split_commit_welcome,
)
from .members import FakeMember
from .signals import Changed
from .world import World

APPEND = davey.ProposalsOperationType.append
REVOKE = davey.ProposalsOperationType.revoke
DAVE_VERSION = 1
OP_CLIENTS_CONNECT = 11
OP_CLIENT_DISCONNECT = 13
OP_PREPARE_TRANSITION = 21
OP_EXECUTE_TRANSITION = 22
OP_PREPARE_EPOCH = 24
OP_PROPOSALS = 27
OP_ANNOUNCE_COMMIT = 29
OP_WELCOME = 30
OPTYPE_APPEND, OPTYPE_REVOKE = b"\x00", b"\x01"
DAVE_MAGIC = b"\xfa\xfa"
# How long the other members' clients, over the internet, take to confirm a transition.
MEMBERS_READY_SECS = 0.1


class BotLink(Protocol):
    """The bot's current voice websocket, as the voice server exposes it."""

    async def send_json(self, op: int, data: object) -> None: ...
    async def send_binary(self, op: int, payload: bytes) -> None: ...


class MemberMedia(Protocol):
    """The members' outgoing audio: which keys it is sealed with (sender.MediaSender)."""

    def hold_keys(self, members: Iterable[FakeMember]) -> None: ...
    def switch_keys(self, members: Iterable[FakeMember]) -> None: ...


class BotMls(enum.Enum):
    ABSENT = "absent"  # no DAVE session, or one whose key package has not arrived
    JOINING = "joining"  # welcome sent, waiting for op 23
    ALONE = "alone"  # the bot's own one-member group at epoch 0
    IN_GROUP = "in_group"


class MlsCoordinator:
    """The server side of one channel's DAVE group. Owned by FakeDiscord."""

    def __init__(self, world: World, members: dict[int, FakeMember], link: BotLink,
                 changed: Changed, media: MemberMedia, *,
                 reply_timeout_secs: float = 5.0) -> None:
        self.sender = ExternalSender()
        self.bot = BotMls.ABSENT
        self.channel_id: int | None = None
        self.group: list[FakeMember] = []
        self.epoch = 0
        self.protocol_version = DAVE_VERSION  # 0 once downgraded: members send plain Opus
        self.members_win_commits = False  # a fake member's commit is announced, not the bot's
        self.invalid_commit_count = 0
        self.unexpected_commit_count = 0  # op 28s that answered no proposals
        self.sole_member_reset_count = 0
        self._world, self._members, self._link, self._changed = world, members, link, changed
        self._media = media
        self._timeout_secs = reply_timeout_secs
        self._group_has_bot = False
        self._lock = asyncio.Lock()
        self._transition_ids = itertools.count(1)
        self._commit: asyncio.Future[bytes] | None = None
        self._transitions: dict[int, asyncio.Future[None]] = {}

    def __repr__(self) -> str:
        return (f"MlsCoordinator(bot={self.bot.value}, v{self.protocol_version}, "
                f"epoch={self.epoch}, group={self.group})")

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
        await self._link.send_binary(OP_PROPOSALS, OPTYPE_APPEND + b"\x05not-mls")

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
            self.unexpected_commit_count += 1
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
            self._media.hold_keys(members)  # members talk on in their old group until op 22
            if self._group_has_bot or channel_id != self.channel_id or set(self.group) != set(
                    members):
                self._rebuild(channel_id)
            self._group_has_bot = True
            if not self.group:
                self.protocol_version = DAVE_VERSION
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
            await self._transition(
                transition_id, self._link.send_binary(
                    OP_WELCOME, struct.pack(">H", transition_id) + result.welcome),
                switching=self.group, then=self._encrypting)
            self._set_bot(BotMls.IN_GROUP)

    def _encrypting(self) -> None:
        self.protocol_version = DAVE_VERSION

    async def add_member(self, member: FakeMember) -> None:
        """`member` joined the bot's channel: an Add, committed (op 27 → 28 → 29)."""
        async with self._lock:
            if not self._can_change_members(member, joining=True):
                return
            key_package = self._fresh_key_package(member, self.channel_id)
            await self._link.send_json(OP_CLIENTS_CONNECT, {"user_ids": [str(member.user_id)]})
            proposals = self.sender.add_proposals(self.channel_id, self.epoch, [key_package])
            commit, welcome = await self._commit_round(proposals)
            if welcome is None:
                raise RuntimeError(f"{self}: the commit adding {member} had no welcome")
            self._media.hold_keys(self.group)
            for other in self.group:
                other.session.process_commit(commit)
            member.session.process_welcome(welcome)
            self.group.append(member)
            await self._announce(commit)

    async def add_member_briefly(self, member: FakeMember) -> None:
        """`member` joins the bot's channel and leaves before its Add is committed: the bot's
        commit for it is never announced, and the server revokes the proposal (op 27,
        revoke). The group stays at its epoch."""
        async with self._lock:
            if not self._can_change_members(member, joining=True):
                raise RuntimeError(f"{self}: {member} cannot join the bot's group now")
            key_package = self._fresh_key_package(member, self.channel_id)
            await self._link.send_json(OP_CLIENTS_CONNECT, {"user_ids": [str(member.user_id)]})
            messages = self.sender.add_messages(self.channel_id, self.epoch, [key_package])
            await self._commit_round(proposals_payload(messages))
            await self._link.send_json(OP_CLIENT_DISCONNECT, {"user_id": str(member.user_id)})
            revoke = revoke_payload(messages)
            for other in self.group:
                other.session.process_proposals(REVOKE, revoke)
            await self._link.send_binary(OP_PROPOSALS, OPTYPE_REVOKE + revoke)
            member.session.reset()

    async def remove_member(self, member: FakeMember) -> None:
        """`member` left the bot's channel: a Remove, committed; or, if that leaves the bot
        alone, a group of its own."""
        async with self._lock:
            if member not in self.group:
                return
            if not self._can_change_members(member, joining=False):
                self.group.remove(member)  # stale now; rebuilt when the bot's key package comes
                self._changed.notify()
                return
            leaf = member.session.own_leaf_index
            self.group.remove(member)
            member.session.reset()
            await self._link.send_json(OP_CLIENT_DISCONNECT, {"user_id": str(member.user_id)})
            if not self.group and self.protocol_version:
                await self._reset_sole_member()
                return
            proposals = self.sender.remove_proposals(self.channel_id, self.epoch, [leaf])
            commit, _ = await self._commit_round(proposals)
            self._media.hold_keys(self.group)
            for other in self.group:
                other.session.process_commit(commit)
            await self._announce(commit)

    def _can_change_members(self, member: FakeMember, *, joining: bool) -> bool:
        """The bot is in the group, and `member` can join it (or leave it)."""
        if self.bot not in (BotMls.ALONE, BotMls.IN_GROUP):
            return False
        if not joining:
            return True
        return member not in self.group and member in self._voice_members(self.channel_id)

    async def _reset_sole_member(self) -> None:
        """The bot is the call's last member: Discord has it start a group of its own
        (op 24, epoch 1), a transition executed at once (op 21, id 0); its key package
        follows."""
        self.sole_member_reset_count += 1
        self.epoch, self._group_has_bot = 0, False
        self._set_bot(BotMls.ABSENT)
        version = self.protocol_version
        await self._link.send_json(OP_PREPARE_EPOCH, {"epoch": 1, "protocol_version": version})
        await self._link.send_json(OP_PREPARE_TRANSITION,
                                   {"transition_id": 0, "protocol_version": version})

    async def downgrade(self) -> None:
        """A client without DAVE joined: the call goes back to transport encryption only
        (op 21 to version 0, op 23, op 22). Members send plain Opus from op 22; what they
        sent just before arrives after it."""
        async with self._lock:
            transition_id = next(self._transition_ids)
            self._media.hold_keys(self.group)
            await self._transition(
                transition_id, self._link.send_json(OP_PREPARE_TRANSITION, {
                    "transition_id": transition_id, "protocol_version": 0}),
                switching=self.group, then=self._plain)

    def _plain(self) -> None:
        self.protocol_version = 0

    async def upgrade(self) -> None:
        """Every client has DAVE again: op 24 (epoch 1) has everyone start a new group. The
        bot's key package comes back and it is welcomed into the members' new group; they
        encrypt from that transition's op 22."""
        async with self._lock:
            self._group_has_bot = True  # its old leaf: the members' group is rebuilt
            self._set_bot(BotMls.ABSENT)
            await self._link.send_json(OP_PREPARE_EPOCH,
                                       {"epoch": 1, "protocol_version": DAVE_VERSION})

    async def _commit_round(self, proposals: bytes) -> tuple[bytes, bytes | None]:
        """Op 27 (append) to the bot and the fake members; each makes a commit, and the bot
        sends its own (op 28). The winner's commit and welcome: the bot's, or with
        `members_win_commits` a fake member's (the bot's stays pending, and loses)."""
        self._commit = asyncio.get_running_loop().create_future()
        try:
            await self._link.send_binary(OP_PROPOSALS, OPTYPE_APPEND + proposals)
            theirs = [m.session.process_proposals(APPEND, proposals) for m in self.group]
            data = await asyncio.wait_for(self._commit, self._timeout_secs)
        finally:
            self._commit = None
        if self.members_win_commits and theirs:
            return theirs[0].commit, theirs[0].welcome
        return split_commit_welcome(data)

    async def _announce(self, commit: bytes) -> None:
        """Op 29 for a commit the fake members have taken (and the bot has not)."""
        self.epoch += 1
        transition_id = next(self._transition_ids)
        await self._transition(
            transition_id, self._link.send_binary(
                OP_ANNOUNCE_COMMIT, struct.pack(">H", transition_id) + commit),
            switching=self.group)
        self._set_bot(BotMls.IN_GROUP)

    async def _transition(self, transition_id: int, announce: Awaitable[None], *,
                          switching: list[FakeMember], then: Callable[[], None] | None = None
                          ) -> None:
        """Announces a transition (a commit, a welcome, a protocol change); once the bot has
        confirmed it (op 23) and the members have had time to, executes it (op 22): `then`
        runs and the `switching` members send with their new keys."""
        waiter = asyncio.get_running_loop().create_future()
        self._transitions[transition_id] = waiter
        try:
            await announce
            await asyncio.gather(asyncio.wait_for(waiter, self._timeout_secs),
                                 asyncio.sleep(MEMBERS_READY_SECS))
            await self._link.send_json(OP_EXECUTE_TRANSITION, {"transition_id": transition_id})
        finally:
            del self._transitions[transition_id]
        if then is not None:
            then()
        self._media.switch_keys(switching)
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
