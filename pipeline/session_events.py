"""Turns the frames of one session into bus events (transcripts, bot text, speaking, pauses,
barge-in)."""

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    ErrorFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSTextFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection
from pipecat.transports.base_output import BaseOutputTransport

from voxline.bus import events
from voxline.bus.base import SessionBus
from voxline.pipeline.frames import BotPausedFrame, BotResumedFrame, EchoGuardedFrame
from voxline.pipeline.remote_llm import RemoteLLMError

PROGRESS_EVERY_TOKENS = 8


class SessionEventsObserver(BaseObserver):
    """Watches every frame push of a session and publishes what a person would care about.

    An observer, not a processor: transcripts are consumed by the user aggregator and speaking
    frames start at the output transport, so no single place in the pipeline sees them all.
    Publishing is `publish_nowait`: this never delays a frame.
    """

    def __init__(self, *, session_bus: SessionBus, **kwargs):
        super().__init__(**kwargs)
        self._bus = session_bus
        self._reply: list[str] = []
        self._is_replying = False
        self._is_bot_speaking = False

    async def on_push_frame(self, data: FramePushed):
        """Map one frame push to at most one event."""
        frame, publish = data.frame, self._bus.publish
        if isinstance(frame, ErrorFrame):  # processors push errors upstream
            if data.first_push:
                publish(events.SessionError, code=_error_code(frame), message=frame.error)
            return
        if data.direction != FrameDirection.DOWNSTREAM:
            return
        if isinstance(frame, TTSTextFrame):
            # The output transport passes text on once its audio has been sent.
            if isinstance(data.source, BaseOutputTransport) and frame.text.strip():
                publish(events.BotSpoken, text=frame.text.strip())
            return
        if not data.first_push:
            return
        if isinstance(frame, EchoGuardedFrame):
            publish(events.EchoGuarded, text=frame.text, attempt=frame.attempt)
        elif isinstance(frame, BotPausedFrame):
            publish(events.BotPaused)
        elif isinstance(frame, BotResumedFrame):
            publish(events.BotResumed)
        elif isinstance(frame, InterimTranscriptionFrame):
            publish(events.TranscriptPartial, text=frame.text)
        elif isinstance(frame, TranscriptionFrame):
            publish(events.TranscriptFinal, text=frame.text)
        elif isinstance(frame, LLMFullResponseStartFrame):
            self._reply, self._is_replying = [], True
        elif isinstance(frame, LLMTextFrame) and self._is_replying:
            self._reply.append(frame.text)
            if len(self._reply) % PROGRESS_EVERY_TOKENS == 0:
                publish(events.LLMProgress, tokens=len(self._reply))
        elif isinstance(frame, LLMFullResponseEndFrame) and self._is_replying:
            self._finish_reply(interrupted=False)
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._is_bot_speaking = True
            publish(events.BotStartedSpeaking)
        elif isinstance(frame, BotStoppedSpeakingFrame):
            self._is_bot_speaking = False
            publish(events.BotStoppedSpeaking)
        elif isinstance(frame, InterruptionFrame):
            self._on_interruption()

    def _on_interruption(self):
        """Only a reply that was heard is interrupted. One cancelled before its first audio
        (the user went on after a pause) is dropped silently: no `interrupted`, no reply."""
        if self._is_replying and not self._is_bot_speaking:
            self._reply, self._is_replying = [], False
        elif self._is_replying:
            self._finish_reply(interrupted=True)
        if self._is_bot_speaking:
            self._bus.publish(events.TurnInterrupted)

    def _finish_reply(self, *, interrupted: bool):
        text = "".join(self._reply).strip()
        self._reply, self._is_replying = [], False
        if text:
            self._bus.publish(events.LLMResponseReady, text=text, interrupted=interrupted)


def _error_code(frame: ErrorFrame) -> str:
    """The client's error code: the remote LLM says which failure it was
    (llm_unavailable, llm_timeout, llm_circuit_open); anything else is pipeline_error."""
    if isinstance(frame.exception, RemoteLLMError):
        return frame.exception.code
    return "pipeline_error"
