"""ObserverGroup: several observers behind one of pipecat's observer queues."""

from pipecat.frames.frames import TextFrame
from pipecat.observers.base_observer import BaseObserver, FrameProcessed, FramePushed
from pipecat.pipeline.pipeline import Pipeline
from pipecat.processors.filters.identity_filter import IdentityFilter
from pipecat.tests.utils import run_test

from voxline.pipeline.observer_group import ObserverGroup


class _Recorder(BaseObserver):
    """Notes each push and each handling of a TextFrame, and whether it was set up."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.pushes: list[bool] = []  # first_push of each push seen
        self.handled = 0
        self.was_set_up = self.was_cleaned_up = False

    async def setup(self, task_manager):
        await super().setup(task_manager)
        self.was_set_up = True

    async def cleanup(self):
        await super().cleanup()
        self.was_cleaned_up = True

    async def on_push_frame(self, data: FramePushed):
        if isinstance(data.frame, TextFrame):
            self.pushes.append(data.first_push)

    async def on_process_frame(self, data: FrameProcessed):
        if isinstance(data.frame, TextFrame):
            self.handled += 1


async def test_each_observer_in_a_group_sees_the_pushes_it_asked_for():
    every, first_only = _Recorder(), _Recorder(observe_every_push=False)
    group = ObserverGroup([every, first_only])
    # The frame is pushed into the pipeline, from one processor to the next, and out.
    await run_test(Pipeline([IdentityFilter(), IdentityFilter()]),
                   frames_to_send=[TextFrame("hello")], expected_down_frames=[TextFrame],
                   observers=[group])
    assert group.observe_every_push
    assert len(every.pushes) >= 2 and every.pushes[0] and not any(every.pushes[1:])
    assert first_only.pushes == [True]
    assert every.handled == first_only.handled >= 2
    assert every.was_set_up and first_only.was_set_up
    assert every.was_cleaned_up and first_only.was_cleaned_up


def test_a_group_of_first_push_observers_asks_only_for_first_pushes():
    group = ObserverGroup([_Recorder(observe_every_push=False)])
    assert not group.observe_every_push
