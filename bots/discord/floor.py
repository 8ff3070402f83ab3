"""One bot voice per channel: the replies of per-speaker sessions take turns on it."""

import asyncio
import time
from collections import OrderedDict
from typing import Protocol

from loguru import logger

from voxline.bots.discord.audio_source import BufferedAudioSource

PLAY_AHEAD_SECS = 0.12  # audio queued in the source; less → underruns, more → slower barge-in
RELEASE_AFTER_SECS = 0.3  # a finished reply gives up the floor once played and quiet this long
CUT_EXPIRES_SECS = 2.0  # a cut reply's interruption arrives within a hop; never mute it for long
UNFINISHED_RELEASE_SECS = 3.0  # a reply that never said it finished (e.g. a greeting) gives up


class Player(Protocol):
    """What the floor needs of a voice connection (a `discord.VoiceClient`)."""

    def play(self, source: BufferedAudioSource) -> None: ...
    def stop(self) -> None: ...
    def is_playing(self) -> bool: ...
    def is_connected(self) -> bool: ...


class FloorOwner(Protocol):
    """A per-speaker output that is told when another member's speech cut its reply."""

    def on_floor_taken(self) -> None: ...


class PlaybackFloor:
    """First come, first served: a reply plays to the end (or to a barge-in) before the next.

    An owner `acquire()`s the floor before its reply's first audio (waiting its turn), then
    `write()`s 48 kHz stereo PCM, which paces it to real time (the player drains 20 ms per
    tick), and says `reply_finished()`. Runs on the event loop.
    """

    def __init__(self, player: Player):
        self._player = player
        self._owner: FloorOwner | None = None
        self._waiting: OrderedDict[FloorOwner, asyncio.Future] = OrderedDict()
        self._source: BufferedAudioSource | None = None
        self._last_write = 0.0
        self._is_reply_finished = False
        self._cut: dict[FloorOwner, float] = {}  # owner → when its reply was cut by another
        self._release_task: asyncio.Task | None = None

    def set_player(self, player: Player) -> None:
        """A new voice connection after a rejoin; what was playing on the old one is lost."""
        self._stop_playing()
        self._player = player

    @property
    def owner(self) -> FloorOwner | None:
        return self._owner

    async def acquire(self, owner: FloorOwner) -> bool:
        """Wait for `owner`'s turn; False if its reply was dropped while waiting, or was cut
        and its interruption has not arrived yet (its queued audio must not take the floor)."""
        cut_at = self._cut.get(owner)
        if cut_at is not None and time.monotonic() - cut_at < CUT_EXPIRES_SECS:
            return False
        if self._owner is owner:
            return True
        if self._owner is None and not self._waiting:
            self._take(owner)
            return True
        waiting = self._waiting.get(owner)
        if waiting is None:
            waiting = self._waiting[owner] = asyncio.get_running_loop().create_future()
        return await waiting

    def reply_finished(self, owner: FloorOwner) -> None:
        """`owner` has handed over its reply's last audio: the next may follow once it played."""
        if self._owner is owner:
            self._is_reply_finished = True

    async def write(self, owner: FloorOwner, pcm: bytes) -> bool:
        """Play `pcm` as part of `owner`'s reply; False if it was dropped (the floor is someone
        else's, e.g. after a barge-in, or the voice connection is down)."""
        if self._owner is not owner or not self._player.is_connected():
            return False
        source = self._ensure_playing()
        source.push(pcm)
        self._last_write = time.monotonic()
        # Pace the writer: the player thread drains 20 ms per tick, so sleeping off what is
        # queued beyond the play-ahead keeps the pipeline in real time (and barge-in prompt).
        excess_secs = source.buffered_secs - PLAY_AHEAD_SECS
        if excess_secs > 0:
            await asyncio.sleep(excess_secs)
        return self._source is source

    def barge_in(self, speaker: FloorOwner) -> None:
        """A member started speaking: cut the reply playing now (it is someone's, maybe theirs)."""
        owner = self._owner
        if owner is None:
            return
        logger.debug("Discord: barge-in cuts the reply playing")
        self._stop_playing()
        self._grant_next()
        if owner is not speaker:
            self._cut[owner] = time.monotonic()
            owner.on_floor_taken()

    def drop(self, owner: FloorOwner) -> None:
        """`owner`'s reply was interrupted or its session ended: forget its audio and its place."""
        self._cut.pop(owner, None)
        waiting = self._waiting.pop(owner, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(False)
        if self._owner is owner:
            self._stop_playing()
            self._grant_next()

    async def close(self) -> None:
        """Stop playing and wake every waiting writer."""
        for owner in list(self._waiting):
            self.drop(owner)
        self._stop_playing()
        if self._release_task:
            self._release_task.cancel()
            await asyncio.gather(self._release_task, return_exceptions=True)

    def _take(self, owner: FloorOwner) -> None:
        self._owner = owner
        self._is_reply_finished = False
        self._last_write = time.monotonic()
        if self._release_task is None or self._release_task.done():
            self._release_task = asyncio.create_task(
                self._release_task_handler(), name="discord-floor-release"
            )

    def _grant_next(self) -> None:
        self._owner = None
        while self._waiting:
            owner, waiting = self._waiting.popitem(last=False)
            if not waiting.done():
                self._take(owner)
                waiting.set_result(True)
                return
        if self._source is not None:
            self._source.finish()  # nobody is next: end playback once the last words are out

    def _ensure_playing(self) -> BufferedAudioSource:
        source = self._source
        if source is None or source.is_finished or not self._player.is_playing():
            if self._player.is_playing():
                self._player.stop()
            source = self._source = BufferedAudioSource()
            self._player.play(source)
        return source

    def _stop_playing(self) -> None:
        if self._source is not None:
            self._source.clear()
            self._source = None
        if self._player.is_playing():
            self._player.stop()

    async def _release_task_handler(self) -> None:
        """Hand the floor on once the owner's reply has been played and has gone quiet."""
        while self._owner is not None:
            await asyncio.sleep(0.05)
            source = self._source
            is_drained = source is None or source.buffered_secs == 0
            quiet_secs = time.monotonic() - self._last_write
            limit = RELEASE_AFTER_SECS if self._is_reply_finished else UNFINISHED_RELEASE_SECS
            if is_drained and quiet_secs > limit:
                self._grant_next()
