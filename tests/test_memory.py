"""After a session, the memory it freed goes back to the OS (glibc keeps it otherwise)."""

import threading

import psutil
import pytest

from voxline.memory import _malloc_trim, release_freed_memory

pytestmark = pytest.mark.skipif(_malloc_trim() is None, reason="needs glibc's malloc_trim")


def _fragment_a_thread_arena() -> None:
    """What a session leaves: many native buffers freed on a worker thread, a few kept."""
    kept = []

    def work():
        buffers = [bytearray(8192) for _ in range(25_000)]  # ~200 MB, via malloc
        kept.extend(buffers[::500])  # survivors pin the arena: no trim at its top
        buffers.clear()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return kept


def test_freed_session_memory_is_released():
    process = psutil.Process()
    kept = _fragment_a_thread_arena()
    before = process.memory_info().rss
    release_freed_memory()
    after = process.memory_info().rss
    assert kept
    assert before - after > 100 * 2**20, (before >> 20, after >> 20)
