"""Readiness signals and owned background tasks for the fake (no sleeps as signals)."""

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from loguru import logger


class Changed:
    """A pulse that every state change fires; waiters re-check their predicate on each one."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], bool], *, timeout_secs: float,
                       what: str) -> None:
        """Returns once predicate() is true; TimeoutError naming `what` after timeout_secs."""
        async def wait() -> None:
            while not predicate():
                await self._event.wait()

        try:
            await asyncio.wait_for(wait(), timeout_secs)
        except TimeoutError:
            raise TimeoutError(f"fake Discord: timed out after {timeout_secs:g}s waiting for "
                               f"{what}") from None


class TaskSet:
    """Background tasks one component owns; `close()` cancels and awaits them all."""

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self._owner}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.opt(exception=task.exception()).error("{}: task {} failed", self._owner,
                                                         task.get_name())

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
