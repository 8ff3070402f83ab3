"""Hands freed heap memory back to the OS after a session, so a long-running worker's RSS
reflects its live sessions rather than its busiest hour."""

import ctypes
import ctypes.util
import functools

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
    round after round of sessions in the soak (docs/operations.md) until trimmed."""
    trim = _malloc_trim()
    if trim is not None:
        released = trim(0)
        logger.trace("malloc_trim released memory: {}", bool(released))
