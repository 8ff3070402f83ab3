"""The live sessions of one worker, so an operator or a shutdown can end them."""

from collections.abc import Callable

from pipecat.pipeline.worker import PipelineWorker

OnEnd = Callable[[str], None]


class SessionRegistry:
    """Session id → its running pipeline worker. `run_session` adds and removes itself."""

    def __init__(self):
        self._workers: dict[str, PipelineWorker] = {}
        self._on_end: dict[str, OnEnd] = {}
        self.total = 0  # sessions started since the process began

    def add(self, session_id: str, worker: PipelineWorker, on_end: OnEnd | None = None) -> None:
        """Called by `run_session` when its pipeline starts. `on_end(reason)` is told why,
        when `end` ends it (the reason of its `session.ended`)."""
        self._workers[session_id] = worker
        if on_end is not None:
            self._on_end[session_id] = on_end
        self.total += 1

    def remove(self, session_id: str) -> None:
        """Called by `run_session` when its pipeline has ended."""
        self._workers.pop(session_id, None)
        self._on_end.pop(session_id, None)

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._workers

    def __len__(self) -> int:
        return len(self._workers)

    async def end(self, session_id: str, reason: str) -> bool:
        """Cancel a live session; False if there is none with that id."""
        worker = self._workers.get(session_id)
        if worker is None:
            return False
        if on_end := self._on_end.get(session_id):
            on_end(reason)
        await worker.cancel(reason=reason)
        return True

    async def end_all(self, reason: str) -> int:
        """Cancel every live session (at shutdown); how many there were."""
        session_ids = list(self._workers)
        for session_id in session_ids:
            await self.end(session_id, reason)
        return len(session_ids)
