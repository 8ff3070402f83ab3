"""The end of the user's turn: words first, the voice where the words cannot tell."""

import asyncio
from types import SimpleNamespace

import pytest
from pipecat.frames.frames import TranscriptionFrame, VADUserStoppedSpeakingFrame
from pipecat.utils.asyncio.task_manager import TaskManager

from voxline.pipeline.turn_end import TranscriptTurnStopStrategy, VoiceVerdict

GRACE = 0.3


async def _stopped_after(text: str, voice: VoiceVerdict | None) -> float | None:
    """Seconds from the final transcript to the end of the turn (None: not within 2× grace)."""
    strategy = TranscriptTurnStopStrategy(incomplete_grace_secs=GRACE)
    await strategy.setup(SimpleNamespace(task_manager=TaskManager()))
    stopped = asyncio.Event()

    async def on_stopped(_strategy, _params):
        stopped.set()

    strategy.add_event_handler("on_user_turn_stopped", on_stopped)
    await strategy.process_frame(VADUserStoppedSpeakingFrame(stop_secs=0.3))
    started = asyncio.get_running_loop().time()
    await strategy.process_frame(TranscriptionFrame(text, "", "", finalized=True, result=voice))
    try:
        await asyncio.wait_for(stopped.wait(), 2 * GRACE)
        return asyncio.get_running_loop().time() - started
    except TimeoutError:
        return None
    finally:
        await strategy.cleanup()


@pytest.mark.parametrize(("text", "voice", "waits"), [
    ("What is the capital of France?", None, False),  # the words say finished
    ("I would like to", VoiceVerdict(True, 0.9), True),  # the words say unfinished: they win
    ("Can you tell me about the.", None, True),
    ("I was thinking", VoiceVerdict(True, 0.8), False),  # words can't tell: the voice can
    ("I was thinking", VoiceVerdict(False, 0.2), True),
    ("I was thinking", None, True),  # no verdict (smart-turn off): the safe side
])
async def test_when_the_turn_ends(text, voice, waits):
    after = await _stopped_after(text, voice)
    assert after is not None
    assert (after >= GRACE * 0.9) == waits, after
