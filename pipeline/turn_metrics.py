"""Per-turn latency: end of user speech → STT final → LLM first token → TTS audio → sent."""

from dataclasses import dataclass

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    InterruptionFrame,
    LLMContextFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection

from voxline.bus import events
from voxline.bus.base import SessionBus
from voxline.pipeline.frames import EchoGuardedFrame, NoWordsFrame

NS = 1e-9


@dataclass
class _Marks:
    """Pipeline-clock times (ns) of one turn's milestones."""

    vad_stop: int = 0
    stop_secs: float = 0.0
    stt_final: int = 0
    llm_request: int = 0
    llm_first_token: int = 0
    tts_first_audio: int = 0
    echo_guard_hits: int = 0
    # Words came in an earlier piece of this turn: when its last piece has none ("Wait," then
    # a "stop." the STT could not make out), the STT is done when it says so.
    has_words: bool = False


class TurnMetricsObserver(BaseObserver):
    """Times each turn from frame pushes and publishes one `TurnMetrics` event per answered turn.

    The user stopped speaking `stop_secs` before the VAD said so (the silence window), so the
    turn's clock starts there: `total_secs` is what the user waits, end of speech to first audio.
    """

    def __init__(self, *, session_bus: SessionBus, **kwargs):
        super().__init__(observe_every_push=False, **kwargs)  # a milestone is a frame's first push
        self._bus = session_bus
        self._marks = _Marks()
        self._turn = 0

    async def on_push_frame(self, data: FramePushed):
        """Record the milestone this push marks, if any."""
        if not data.first_push or data.direction != FrameDirection.DOWNSTREAM:
            return
        frame, now, marks = data.frame, data.timestamp, self._marks
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._marks = _Marks(has_words=marks.has_words and not marks.llm_request)
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._marks = _Marks(vad_stop=now, stop_secs=frame.stop_secs,
                                 has_words=marks.has_words)
        elif isinstance(frame, TranscriptionFrame):
            marks.has_words = True
            if marks.vad_stop:
                marks.stt_final = now
        elif (isinstance(frame, NoWordsFrame) and marks.vad_stop and marks.has_words
              and not marks.stt_final):
            marks.stt_final = now
        elif isinstance(frame, LLMContextFrame) and marks.stt_final and not marks.llm_request:
            marks.llm_request = now
        elif isinstance(frame, EchoGuardedFrame):
            marks.echo_guard_hits += 1
        elif isinstance(frame, LLMTextFrame) and marks.llm_request and not marks.llm_first_token:
            marks.llm_first_token = now
        elif isinstance(frame, TTSAudioRawFrame) and marks.llm_first_token:
            marks.tts_first_audio = marks.tts_first_audio or now
        elif isinstance(frame, BotStartedSpeakingFrame) and marks.tts_first_audio:
            self._publish(marks, sent=now)
            self._marks = _Marks()
        elif isinstance(frame, InterruptionFrame) and marks.llm_request:
            self._marks = _Marks()

    def _publish(self, m: _Marks, *, sent: int):
        self._turn += 1
        self._bus.publish(
            events.TurnMetrics,
            turn=self._turn,
            vad_secs=m.stop_secs,
            stt_secs=(m.stt_final - m.vad_stop) * NS,
            turn_secs=(m.llm_request - m.stt_final) * NS,
            llm_secs=(m.llm_first_token - m.llm_request) * NS,
            tts_secs=(m.tts_first_audio - m.llm_first_token) * NS,
            transport_secs=(sent - m.tts_first_audio) * NS,
            total_secs=m.stop_secs + (sent - m.vad_stop) * NS,
            echo_guard_hits=m.echo_guard_hits,
        )
