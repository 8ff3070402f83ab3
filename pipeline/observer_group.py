"""Several observers behind one of pipecat's observer queues."""

from pipecat.observers.base_observer import (
    BaseObserver,
    FrameProcessed,
    FramePushed,
    ProcessorSetUp,
)
from pipecat.utils.asyncio.task_manager import BaseTaskManager


class ObserverGroup(BaseObserver):
    """Observers that share one queue and one task in pipecat's worker.

    The worker gives each observer a queue and a task of its own, woken for every frame any
    processor handles and every push: with four sessions, thousands of wake-ups a second on
    the event loop, which takes a core from the engines' threads. Ours look at a frame and
    publish without waiting, so one wake-up serves them all. Each still sees only the pushes it
    asked for (`observe_every_push`).
    """

    def __init__(self, observers: list[BaseObserver]):
        super().__init__(observe_every_push=any(o.observe_every_push for o in observers))
        self._observers = observers

    async def setup(self, task_manager: BaseTaskManager):
        await super().setup(task_manager)
        for observer in self._observers:
            await observer.setup(task_manager)

    async def cleanup(self):
        await super().cleanup()
        for observer in self._observers:
            await observer.cleanup()

    async def on_pipeline_started(self):
        for observer in self._observers:
            await observer.on_pipeline_started()

    async def on_processor_setup(self, data: ProcessorSetUp):
        for observer in self._observers:
            await observer.on_processor_setup(data)

    async def on_process_frame(self, data: FrameProcessed):
        for observer in self._observers:
            await observer.on_process_frame(data)

    async def on_push_frame(self, data: FramePushed):
        for observer in self._observers:
            if data.first_push or observer.observe_every_push:
                await observer.on_push_frame(data)
