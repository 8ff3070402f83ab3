"""The end of the user's turn: words first, the voice where the words cannot tell."""

import asyncio
from types import SimpleNamespace

import pytest
from pipecat.frames.frames import (
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.utils.asyncio.task_manager import TaskManager

from voxline.pipeline.frames import NoWordsFrame
from voxline.pipeline.turn_end import TranscriptTurnStopStrategy, VoiceVerdict

GRACE = 0.3


async def _strategy() -> tuple[TranscriptTurnStopStrategy, asyncio.Event]:
    """The strategy, and an event set when it ends the turn."""
    strategy = TranscriptTurnStopStrategy(incomplete_grace_secs=GRACE)
    await strategy.setup(SimpleNamespace(task_manager=TaskManager()))
    stopped = asyncio.Event()

    async def on_stopped(_strategy, _params):
        stopped.set()

    strategy.add_event_handler("on_user_turn_stopped", on_stopped)
    return strategy, stopped


async def _stopped_after(text: str, voice: VoiceVerdict | None) -> float | None:
    """Seconds from the final transcript to the end of the turn (None: not within 2× grace)."""
    strategy, stopped = await _strategy()
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


async def test_words_before_the_stop_end_the_turn_when_no_final_follows(monkeypatch):
    """The last words were transcribed while the VAD still heard speech (a pause within it),
    and what followed had none: no final comes after the stop, and the turn still ends,
    soon, not on pipecat's 5 s fallback."""
    monkeypatch.setattr("voxline.pipeline.turn_end.NO_FINAL_WAIT_SECS", 0.2)
    strategy, stopped = await _strategy()
    try:
        await strategy.process_frame(VADUserStartedSpeakingFrame())
        await strategy.process_frame(TranscriptionFrame("Wait, stop!", "", "", finalized=True))
        assert not stopped.is_set()  # the user is still speaking
        await strategy.process_frame(VADUserStoppedSpeakingFrame(stop_secs=0.3))
        await asyncio.wait_for(stopped.wait(), 0.5)
    finally:
        await strategy.cleanup()


async def test_the_stt_finding_no_words_after_the_stop_ends_the_turn_at_once(monkeypatch):
    monkeypatch.setattr("voxline.pipeline.turn_end.NO_FINAL_WAIT_SECS", 5.0)
    strategy, stopped = await _strategy()
    try:
        await strategy.process_frame(VADUserStartedSpeakingFrame())
        await strategy.process_frame(TranscriptionFrame("Wait, stop!", "", "", finalized=True))
        await strategy.process_frame(VADUserStoppedSpeakingFrame(stop_secs=0.3))
        await strategy.process_frame(NoWordsFrame())
        await asyncio.wait_for(stopped.wait(), 0.1)
    finally:
        await strategy.cleanup()
