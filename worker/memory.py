"""Hands freed heap memory back to the OS, so a worker's RSS reflects its live sessions rather
than its busiest moment."""

import asyncio
import ctypes
import ctypes.util
import functools
import time
from collections import deque

import psutil
from loguru import logger


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None (musl, macOS: nothing to do)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> None:
    """Blocking (a few ms): call it in a thread. Each session's native buffers (onnxruntime,
    CTranslate2, audio) are freed into glibc's per-thread arenas, which keep them: RSS grew
    round after round of sessions in the soak (docs/performance.md#soak) until trimmed."""
    trim = _malloc_trim()
    if trim is not None:
        released = trim(0)
        logger.trace("malloc_trim released memory: {}", bool(released))


class HeapTrimmer:
    """Between `start` and `stop` (while sessions are live), trims the heap whenever RSS is
    `slack_bytes` above the lowest it was just after a trim in the last `window_secs`
    (checked every `interval_secs`).

    Why not only after a session: the engines' multi-MB buffers (a Whisper decode, a Piper
    run) are freed into the heap, and glibc hands back only its very top, so RSS climbed by
    hundreds of MB while four conversations ran, and fell back only when a session ended and
    trimmed. A trim takes a few ms in a thread, and the next decode a little longer while its
    pages come back. Making glibc mmap every large buffer instead (a fixed M_MMAP_THRESHOLD)
    kept RSS flat too, but doubled Whisper's decode time (docs/performance.md#memory).

    Against the lowest level rather than the last trim's: a trim while buffers are still in
    use releases little, and they are freed a moment later. The window lets a level that
    stays (more live data) become the new floor, so trims stop rather than repeat.
    """

    def __init__(self, *, interval_secs: float = 1.0, slack_bytes: int = 24 * 2**20,
                 window_secs: float = 30.0):
        self._interval_secs = interval_secs
        self._slack_bytes = slack_bytes
        self._window_secs = window_secs
        self._process = psutil.Process()
        self._task: asyncio.Task | None = None
        self.trims = 0

    def start(self) -> None:
        """Begin checking (the first live session); nothing if already checking."""
        if _malloc_trim() is not None and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._run(), name="voxline-heap-trimmer")

    def stop(self) -> None:
        """Stop checking at once (the last session ended: no task left behind)."""
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        lows = deque([(time.monotonic(), self._rss())])  # (when, RSS) just after a trim
        while True:
            await asyncio.sleep(self._interval_secs)
            now, rss = time.monotonic(), self._rss()
            while len(lows) > 1 and now - lows[0][0] > self._window_secs:
                lows.popleft()
            floor = min(low for _, low in lows)
            if rss < floor:  # a session's end trimmed too
                lows.append((now, rss))
            elif rss - floor >= self._slack_bytes:
                await asyncio.to_thread(release_freed_memory)
                self.trims += 1
                lows.append((time.monotonic(), self._rss()))

    def _rss(self) -> int:
        return self._process.memory_info().rss
