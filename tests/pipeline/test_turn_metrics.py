"""Per-turn latency events: one per answered turn, timed from the end of the user's speech."""

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    InterimTranscriptionFrame,
    LLMContextFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import FramePushed
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from voxline.bus import InProcessBus, SessionBus
from voxline.bus.events import TurnMetrics
from voxline.pipeline.frames import NoWordsFrame
from voxline.pipeline.turn_metrics import TurnMetricsObserver

MS = 1_000_000  # ns


async def _observe(timed_frames) -> list[TurnMetrics]:
    bus = InProcessBus()
    got = bus.subscribe()
    observer = TurnMetricsObserver(session_bus=SessionBus(bus, session_id="s", source="w"))
    processor = FrameProcessor()
    for at_ms, frame in timed_frames:
        await observer.on_push_frame(FramePushed(
            source=processor, destination=processor, frame=frame,
            direction=FrameDirection.DOWNSTREAM, timestamp=at_ms * MS))
    published = []
    while not got.empty():
        published.append(got.get_nowait())
    got.close()
    return published


def _answer(from_ms: int):
    return [(from_ms, LLMContextFrame(LLMContext())), (from_ms + 100, LLMTextFrame("Hi")),
            (from_ms + 200, TTSAudioRawFrame(b"\0\0" * 160, 16000, 1)),
            (from_ms + 210, BotStartedSpeakingFrame())]


async def test_a_turn_is_timed_from_the_end_of_speech_to_its_first_audio():
    [turn] = await _observe([
        (0, VADUserStartedSpeakingFrame()), (1000, VADUserStoppedSpeakingFrame(stop_secs=0.2)),
        (1050, TranscriptionFrame("Hello there.", "", "")), *_answer(1060)])
    assert turn.turn == 1
    assert round(turn.stt_secs, 3) == 0.05 and round(turn.llm_secs, 3) == 0.1
    assert round(turn.total_secs, 3) == 0.47  # 0.2 s silence window + 0.27 s


async def test_a_turn_whose_last_piece_had_no_words_is_still_timed():
    """"Wait," transcribed at its pause, then a "stop." the STT could not make out: the turn
    is answered from the first piece's words, and that answer counts."""
    [turn] = await _observe([
        (0, VADUserStartedSpeakingFrame()), (400, VADUserStoppedSpeakingFrame(stop_secs=0.2)),
        (600, VADUserStartedSpeakingFrame()), (650, TranscriptionFrame("wait", "", "")),
        (900, VADUserStoppedSpeakingFrame(stop_secs=0.2)), (960, NoWordsFrame()),
        *_answer(970)])
    assert round(turn.stt_secs, 3) == 0.06 and round(turn.total_secs, 3) == 0.48


async def test_speech_without_any_words_is_no_turn():
    assert await _observe([
        (0, VADUserStartedSpeakingFrame()), (300, InterimTranscriptionFrame("", "", "")),
        (400, VADUserStoppedSpeakingFrame(stop_secs=0.2)), (450, NoWordsFrame()),
        *_answer(500)]) == []
