"""The live sessions of one worker, so an operator can end one from the dashboard."""

from pipecat.pipeline.worker import PipelineWorker


class SessionRegistry:
    """Session id → its running pipeline worker. `run_session` adds and removes itself."""

    def __init__(self):
        self._workers: dict[str, PipelineWorker] = {}
        self.total = 0  # sessions started since the process began

    def add(self, session_id: str, worker: PipelineWorker) -> None:
        """Called by `run_session` when its pipeline starts."""
        self._workers[session_id] = worker
        self.total += 1

    def remove(self, session_id: str) -> None:
        """Called by `run_session` when its pipeline has ended."""
        self._workers.pop(session_id, None)

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._workers

    def __len__(self) -> int:
        return len(self._workers)

    async def end(self, session_id: str, reason: str) -> bool:
        """Cancel a live session; False if there is none with that id."""
        worker = self._workers.get(session_id)
        if worker is None:
            return False
        await worker.cancel(reason=reason)
        return True
