"""Holding the bot's audio where it leaves the server, while speech over it is judged.

Audio queued in the output transport keeps playing whatever the pipeline does upstream (pipecat
queues a reply's synthesized audio there, seconds ahead). So the hold sits at the last step: the
output transport's `write_audio_frame`, which its media sender awaits for each chunk. A held
write waits; released, the reply resumes exactly where it stopped; dropped (an interruption is
on its way), the held chunk is not played, and `StaleReplyFilter` keeps what the dropped reply
still synthesizes from ever reaching the output transport (which would announce it as the bot
speaking again).
"""

import asyncio
import time
from collections import deque

from pipecat.frames.frames import Frame, OutputAudioRawFrame, TTSAudioRawFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.transports.base_output import BaseOutputTransport

# Longest a write may wait, whatever happens upstream: the transport gives a peer up after
# `audio_out_write_timeout_secs` (10 s) of a write not returning.
MAX_HOLD_SECS = 2.0
# After a drop, writes are discarded this long: the interruption reaches the output transport
# and empties its queue within milliseconds, but a piece of the old reply synthesized just
# before it can still arrive after. The answer to the interruption comes later: the user is
# still speaking.
DROP_SECS = 0.5
# Replies remembered as dropped: only the last one or two can still have frames on their way.
DROPPED_REPLIES_KEPT = 4


class PlaybackHold:
    """One session's hold on its bot audio. Owned by the session; the judge of barge-ins holds,
    releases and drops, the output transport asks `admit()` before each chunk."""

    def __init__(self):
        self._released = asyncio.Event()
        self._released.set()
        self._judged = asyncio.Event()  # no speech over the bot is being judged
        self._judged.set()
        self._dropping_until = 0.0
        self._playing_reply: str | None = None  # the TTS context of the audio sent last
        self._dropped_replies: deque[str] = deque(maxlen=DROPPED_REPLIES_KEPT)

    @property
    def is_held(self) -> bool:
        """Audio is held now."""
        return not self._released.is_set()

    def hold(self) -> None:
        """Stop the bot's audio after the chunk being played."""
        self._released.clear()

    def release(self) -> None:
        """Play on from where the hold stopped."""
        self._released.set()

    def judging(self, is_judging: bool) -> None:
        """Speech over the bot is being judged (a hold may follow), or no longer."""
        if is_judging:
            self._judged.clear()
        else:
            self._judged.set()

    def drop(self) -> None:
        """An interruption follows: what was held, and what of the old reply still comes,
        is never played."""
        self._dropping_until = time.monotonic() + DROP_SECS
        if self._playing_reply is not None:
            self._dropped_replies.append(self._playing_reply)
        self._released.set()

    def admits_reply_frame(self, frame: Frame) -> bool:
        """Whether a frame of a reply (its audio, words, start and stop, tagged with the TTS
        context that made them) may go on to the output; notes the reply now playing."""
        reply = getattr(frame, "context_id", None)
        if reply is None:
            return True
        if reply in self._dropped_replies:
            return False
        if isinstance(frame, TTSAudioRawFrame):
            self._playing_reply = reply
        return True

    @property
    def is_deciding(self) -> bool:
        """Speech over the bot is being judged, or its audio held for it."""
        return not (self._released.is_set() and self._judged.is_set())

    async def wait_decided(self, timeout_secs: float) -> None:
        """Wait until nothing is judged or held, or `timeout_secs`."""
        try:
            async with asyncio.timeout(timeout_secs):
                await self._judged.wait()
                await self._released.wait()
        except TimeoutError:
            pass

    async def admit(self) -> bool:
        """Wait while held; whether the chunk may be played."""
        if not self._released.is_set():
            try:
                await asyncio.wait_for(self._released.wait(), MAX_HOLD_SECS)
            except TimeoutError:
                self._released.set()  # a judge that never decided must not mute the bot
        dropping_secs = self._dropping_until - time.monotonic()
        if dropping_secs > 0:
            # Dropped: the media sender waits on this chunk until the interruption has emptied
            # its queue. Let go at once, it would take the queued chunks of the old reply one
            # by one, and report the bot speaking again for one taken after the interruption.
            await asyncio.sleep(dropping_secs)
            return False
        return True

    def install(self, output: BaseOutputTransport) -> None:
        """Put the hold in front of `output`'s audio writes. pipecat's media sender calls
        `write_audio_frame` for every chunk it plays (contract: tests/test_private_surface.py)."""
        write = output.write_audio_frame

        async def write_unless_held(frame: OutputAudioRawFrame) -> bool:
            if not await self.admit():
                return False
            return await write(frame)

        output.write_audio_frame = write_unless_held


class StaleReplyFilter(FrameProcessor):
    """Sits just before the output transport: a dropped reply's frames that arrive after the
    interruption (synthesis in flight when it came) are discarded here. Let through, pipecat's
    media sender would report the bot speaking again for audio the hold then silences, and the
    answer to the interruption would start without its own `BotStartedSpeakingFrame`."""

    def __init__(self, *, hold: PlaybackHold, **kwargs):
        super().__init__(**kwargs)
        self._hold = hold

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM and not self._hold.admits_reply_frame(frame):
            return
        await self.push_frame(frame, direction)
