"""Holding the bot's audio where it leaves the server, while speech over it is judged.

Audio queued in the output transport keeps playing whatever the pipeline does upstream (pipecat
queues a reply's synthesized audio there, seconds ahead). So the hold sits at the last step: the
output transport's `write_audio_frame`, which its media sender awaits for each chunk. A held
write waits; released, the reply resumes exactly where it stopped; dropped (an interruption is
on its way), the held chunk is not played.
"""

import asyncio
import time

from pipecat.frames.frames import OutputAudioRawFrame
from pipecat.transports.base_output import BaseOutputTransport

# Longest a write may wait, whatever happens upstream: the transport gives a peer up after
# `audio_out_write_timeout_secs` (10 s) of a write not returning.
MAX_HOLD_SECS = 2.0
# After a drop, writes are discarded this long: the interruption reaches the output transport
# and empties its queue within milliseconds, but a piece of the old reply synthesized just
# before it can still arrive after. The answer to the interruption comes later: the user is
# still speaking.
DROP_SECS = 0.5


class PlaybackHold:
    """One session's hold on its bot audio. Owned by the session; the judge of barge-ins holds,
    releases and drops, the output transport asks `admit()` before each chunk."""

    def __init__(self):
        self._released = asyncio.Event()
        self._released.set()
        self._dropping_until = 0.0

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

    def drop(self) -> None:
        """An interruption follows: what was held, and what of the old reply still comes,
        is never played."""
        self._dropping_until = time.monotonic() + DROP_SECS
        self._released.set()

    async def admit(self) -> bool:
        """Wait while held; whether the chunk may be played."""
        if not self._released.is_set():
            try:
                await asyncio.wait_for(self._released.wait(), MAX_HOLD_SECS)
            except TimeoutError:
                self._released.set()  # a judge that never decided must not mute the bot
        return time.monotonic() >= self._dropping_until

    def install(self, output: BaseOutputTransport) -> None:
        """Put the hold in front of `output`'s audio writes. pipecat's media sender calls
        `write_audio_frame` for every chunk it plays (contract: tests/pipeline/
        test_playback_hold.py)."""
        write = output.write_audio_frame

        async def write_unless_held(frame: OutputAudioRawFrame) -> bool:
            if not await self.admit():
                return False
            return await write(frame)

        output.write_audio_frame = write_unless_held
