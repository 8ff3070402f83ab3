"""The bot's voice as discord.py pulls it: 20 ms at a time from its player thread."""

import threading

import discord

FRAME_BYTES = 3840  # 20 ms of 48 kHz stereo s16, what discord.py's player reads per call
BYTES_PER_SEC = 48000 * 2 * 2
SILENCE = bytes(FRAME_BYTES)


class BufferedAudioSource(discord.AudioSource):
    """A buffer the pipeline fills and the player thread drains.

    `read()` never blocks: it returns silence when the buffer runs dry mid-reply (an underrun,
    counted) and b"" once `finish()` was called and everything was played, which ends playback
    (and the bot's speaking indicator).
    """

    def __init__(self):
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self._is_finished = False
        self.silent_reads = 0  # reads that found the buffer dry mid-reply

    def push(self, pcm: bytes) -> None:
        """Queue 48 kHz stereo s16 audio."""
        with self._lock:
            self._buffer += pcm

    def finish(self) -> None:
        """Nothing more will come: end playback once the buffer is played."""
        with self._lock:
            self._is_finished = True

    def clear(self) -> None:
        """Drop everything not yet played (barge-in)."""
        with self._lock:
            self._buffer.clear()

    @property
    def is_finished(self) -> bool:
        return self._is_finished

    @property
    def buffered_secs(self) -> float:
        return len(self._buffer) / BYTES_PER_SEC

    def read(self) -> bytes:
        with self._lock:
            if len(self._buffer) >= FRAME_BYTES:
                frame = bytes(self._buffer[:FRAME_BYTES])
                del self._buffer[:FRAME_BYTES]
                return frame
            if self._is_finished:
                frame = bytes(self._buffer).ljust(FRAME_BYTES, b"\0") if self._buffer else b""
                self._buffer.clear()
                return frame
            self.silent_reads += 1
            return SILENCE

    def is_opus(self) -> bool:
        return False
