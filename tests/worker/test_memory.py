"""After a session, the memory it freed goes back to the OS (glibc keeps it otherwise)."""

import asyncio
import threading

import psutil
import pytest

from voxline.worker.memory import HeapTrimmer, _malloc_trim, release_freed_memory

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


async def test_heap_is_trimmed_while_sessions_run():
    """Freed buffers go back within a check or two while a session is live, not only when it
    ends."""
    process = psutil.Process()
    trimmer = HeapTrimmer(interval_secs=0.05, slack_bytes=32 * 2**20)
    trimmer.start()
    try:
        release_freed_memory()  # earlier tests' freed memory would be reused, not grown into
        before = process.memory_info().rss
        kept = await asyncio.to_thread(_fragment_a_thread_arena)  # ~200 MB freed, unless trimmed
        for _ in range(100):
            await asyncio.sleep(0.05)
            if process.memory_info().rss - before < 50 * 2**20:
                break
        assert kept
        assert trimmer.trims >= 1
        # A trim may come while the buffers are still in use (~200 MB grown); the next one
        # after they are freed must still happen.
        assert process.memory_info().rss - before < 50 * 2**20
    finally:
        trimmer.stop()


async def test_heap_is_left_alone_when_it_has_not_grown():
    trimmer = HeapTrimmer(interval_secs=0.02, slack_bytes=512 * 2**20)
    trimmer.start()
    await asyncio.sleep(0.2)
    trimmer.stop()
    await asyncio.sleep(0)
    assert trimmer.trims == 0
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "voxline-heap-trimmer"
                and not t.done()], "no sessions: the checks stop at once"
