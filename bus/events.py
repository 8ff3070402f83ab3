"""Typed bus events: one definition per topic, JSON on the wire, versioned by `v`."""

import time
from typing import ClassVar, Literal

from pydantic import BaseModel, Field

SCHEMA_VERSION = 1


class Event(BaseModel):
    """Fields every event carries."""

    topic: ClassVar[str]
    v: int = SCHEMA_VERSION
    session_id: str
    ts: float = Field(default_factory=time.time, description="Unix seconds")
    source: str = Field(default="", description="Worker that published it")


class SessionStarted(Event):
    topic: ClassVar[str] = "session.started"
    transport: Literal["websocket", "webrtc", "discord"]
    client: str = ""
    output_sample_rate: int = Field(default=16000, description="Hz of the bot audio it is sent")


class SessionEnded(Event):
    topic: ClassVar[str] = "session.ended"
    reason: str = Field(
        default="ended",
        description="ended (stop or pipeline end), client disconnected, idle timeout, "
        "server shutdown",
    )
    duration_secs: float = 0.0


class TranscriptPartial(Event):
    topic: ClassVar[str] = "voice.transcription.partial"
    text: str


class TranscriptFinal(Event):
    topic: ClassVar[str] = "voice.transcription.complete"
    text: str


class LLMResponseReady(Event):
    """The whole reply text the LLM produced for one turn (spoken or not)."""

    topic: ClassVar[str] = "llm.response.ready"
    text: str
    interrupted: bool = False


class BotSpoken(Event):
    """Text whose audio has just been sent to the client: what the user actually heard."""

    topic: ClassVar[str] = "tts.spoken"
    text: str


class BotStartedSpeaking(Event):
    topic: ClassVar[str] = "tts.started"


class BotStoppedSpeaking(Event):
    topic: ClassVar[str] = "tts.finished"


class TurnInterrupted(Event):
    """The user spoke over the bot: its audio was cut and the rest of the reply dropped."""

    topic: ClassVar[str] = "turn.interrupted"


class TurnMetrics(Event):
    """Per-stage latency of one turn, in seconds (see docs/events.md for each stage)."""

    topic: ClassVar[str] = "turn.metrics"
    turn: int
    vad_secs: float
    stt_secs: float
    turn_secs: float
    llm_secs: float
    tts_secs: float
    transport_secs: float
    total_secs: float


class SessionError(Event):
    topic: ClassVar[str] = "session.error"
    code: str
    message: str


ALL_EVENTS: tuple[type[Event], ...] = (
    SessionStarted, SessionEnded, TranscriptPartial, TranscriptFinal, LLMResponseReady,
    BotSpoken, BotStartedSpeaking, BotStoppedSpeaking, TurnInterrupted, TurnMetrics, SessionError,
)
EVENT_BY_TOPIC: dict[str, type[Event]] = {cls.topic: cls for cls in ALL_EVENTS}
