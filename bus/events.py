"""Typed bus events: one definition per topic, JSON on the wire, versioned by `v`."""

import time
from typing import ClassVar, Literal

from pydantic import BaseModel, Field

SCHEMA_VERSION = 1
# Ids are shown on dashboards and used as keys: letters, digits and _ . : @ - only.
IDENTIFIER = r"^[A-Za-z0-9_.:@-]*$"


class Event(BaseModel):
    """Fields every event carries."""

    topic: ClassVar[str]
    v: int = SCHEMA_VERSION
    session_id: str = Field(default="", max_length=64, pattern=IDENTIFIER,
                            description="Empty for worker-level events")
    ts: float = Field(default_factory=time.time, description="Unix seconds")
    source: str = Field(default="", max_length=200, pattern=IDENTIFIER,
                        description="Worker that published it")


class SessionStarted(Event):
    topic: ClassVar[str] = "session.started"
    transport: Literal["websocket", "webrtc", "discord", "wyoming", "openai-audio", "realtime"]
    client: str = ""
    output_sample_rate: int = Field(default=16000, description="Hz of the bot audio it is sent")
    guild: str = Field(default="", description="Discord: the server's name")
    channel: str = Field(default="", description="Discord: the voice channel's name")
    speaker: str = Field(default="", description="Discord: the member this session listens to")
    speaker_id: str = Field(default="", description="Discord: that member's user id")


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


class BotPaused(Event):
    """The bot's audio is held while speech over it is judged: a backchannel resumes it
    (`tts.resumed`), a real interruption ends it (`turn.interrupted`)."""

    topic: ClassVar[str] = "tts.paused"


class BotResumed(Event):
    """The speech over the bot was a backchannel or no words: its audio plays on."""

    topic: ClassVar[str] = "tts.resumed"


class EchoGuarded(Event):
    """The echo guard kept back a reply's opening that said the user's words back: the reply
    is written again (attempt 1), or the fallback is spoken (attempt 2)."""

    topic: ClassVar[str] = "llm.echo.guarded"
    text: str = Field(description="The opening that was not spoken")
    attempt: int = Field(description="1: written again with a nudge; 2: fallback spoken")


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
    echo_guard_hits: int = Field(default=0, description="Openings the echo guard kept back")


class SpeechServed(Event):
    """One speech-to-text or text-to-speech request served outside a conversation (Wyoming,
    the OpenAI-compatible /v1/audio endpoints)."""

    topic: ClassVar[str] = "speech.served"
    kind: Literal["stt", "tts"]
    transport: str = Field(default="", max_length=40)
    audio_secs: float = Field(description="stt: of the audio heard; tts: of the audio made")
    processing_secs: float = Field(
        description="stt: end of the audio → transcript; tts: request → first audio")


class SessionError(Event):
    topic: ClassVar[str] = "session.error"
    code: str
    message: str


class LLMProgress(Event):
    """Tokens generated so far in the current reply (every few tokens)."""

    topic: ClassVar[str] = "llm.response.progress"
    tokens: int


class ComponentStatus(BaseModel):
    """One part of a worker as the Services view shows it."""

    name: str  # vad | stt | llm | tts | bus | worker
    health: Literal["ok", "healthy", "degraded", "down", "embedded"]
    model: str = ""
    detail: str = ""


class ServiceStatus(Event):
    """A worker's health and resource use, published every few seconds."""

    topic: ClassVar[str] = "system.service.status"
    kind: Literal["worker", "discord"] = "worker"
    components: list[ComponentStatus]
    cpu_percent: float
    rss_bytes: int
    uptime_secs: float
    sessions_active: int
    url: str = ""
    stopping: bool = False  # its last status: it is shutting down and takes no new sessions


class MetricsUpdate(Event):
    """A worker's counters, published with its status."""

    topic: ClassVar[str] = "metrics.update"
    sessions_active: int
    sessions_total: int
    turns_total: int
    bus_dropped: int
    errors_total: int


class WorkerConfig(Event):
    """A worker's effective settings, secrets masked (at start and every 30 s)."""

    topic: ClassVar[str] = "worker.config"
    config: dict


class LogLine(Event):
    """One log record of a worker (INFO and above), for the live log view."""

    topic: ClassVar[str] = "log"
    level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"]
    message: str = Field(max_length=20_000)
    name: str = ""


class ControlCommand(Event):
    """An operator's command to one worker (`target`), sent by the dashboard."""

    topic: ClassVar[str] = "control.command"
    command_id: str = Field(max_length=64, pattern=IDENTIFIER)
    target: str = Field(max_length=200, pattern=IDENTIFIER)
    action: Literal["end_session", "reload_model", "set_persona"]
    model_kind: Literal["stt", "llm", "tts"] | None = None
    system_prompt: str | None = Field(default=None, max_length=4000)
    issued_by: str = Field(default="", max_length=100,
                           description="The credential: key:<id>, token, or local (no keys)")
    issued_from: str = Field(default="", max_length=100, description="The operator's address")


class ControlAck(Event):
    """A worker's answer to a `ControlCommand`."""

    topic: ClassVar[str] = "control.ack"
    command_id: str
    ok: bool
    message: str


ALL_EVENTS: tuple[type[Event], ...] = (
    SessionStarted, SessionEnded, TranscriptPartial, TranscriptFinal, LLMResponseReady,
    BotSpoken, BotStartedSpeaking, BotStoppedSpeaking, TurnInterrupted, TurnMetrics, SessionError,
    LLMProgress, EchoGuarded, BotPaused, BotResumed, ServiceStatus, MetricsUpdate, WorkerConfig,
    LogLine, ControlCommand, ControlAck, SpeechServed,
)
EVENT_BY_TOPIC: dict[str, type[Event]] = {cls.topic: cls for cls in ALL_EVENTS}
