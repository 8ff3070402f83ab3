"""The WebSocket wire protocol (docs/protocol.md): client messages in, events and errors out."""

import json
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from voxline.agent.persona import MAX_SYSTEM_PROMPT_CHARS
from voxline.bus import events
from voxline.config.settings import SUPPORTED_SAMPLE_RATES

# Close codes (RFC 6455 plus the 4000–4999 range for the application).
CLOSE_NORMAL = 1000
CLOSE_POLICY_VIOLATION = 1008  # audio faster than allowed, or too many unusable messages
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_BAD_START = 4400
CLOSE_START_TIMEOUT = 4408

# C0 controls and DEL, except tab, newline and carriage return: meaningless in text that is
# spoken or prompted, and a NUL makes Piper's espeak phonemizer fail ("embedded null character").
_CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ProtocolError(Exception):
    """A client message we cannot use. `code` is stable; `message` says what and how to fix."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class StartMessage(BaseModel):
    """The first message of every connection."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["start"]
    # Strict: "16000" or 16000.0 is refused, and `true` is not read as a rate of 1 Hz.
    sample_rate: int = Field(strict=True, description="Rate of the PCM the client will send, Hz")
    output_sample_rate: int | None = Field(default=None, strict=True,
                                           description="Default: sample_rate")
    system_prompt: str | None = Field(default=None, max_length=MAX_SYSTEM_PROMPT_CHARS)
    greeting: str | None = Field(default=None, max_length=500)
    record: bool = Field(default=False, strict=True,
                         description="Record this session (only where privacy.allow_recording)")
    echo_cancellation: bool | None = Field(
        default=None, strict=True,
        description="Cancel the bot's voice leaking into the microphone (default: the "
                    "server's audio.echo_cancellation); false where the client cancels it")

    @field_validator("sample_rate", "output_sample_rate")
    @classmethod
    def _supported_rate(cls, rate: int | None) -> int | None:
        if rate is not None and rate not in SUPPORTED_SAMPLE_RATES:
            raise ValueError(
                f"unsupported sample rate {rate}; use one of "
                f"{', '.join(map(str, SUPPORTED_SAMPLE_RATES))}"
            )
        return rate

    @field_validator("system_prompt", "greeting")
    @classmethod
    def _plain_text(cls, text: str | None) -> str | None:
        if text is not None and (found := _CONTROL_CHARACTER.search(text)):
            raise ValueError(
                f"control character U+{ord(found.group()):04X} at position {found.start()}; "
                "send plain text (tabs and newlines are fine)"
            )
        return text

    @property
    def out_rate(self) -> int:
        """The rate bot audio is sent at."""
        return self.output_sample_rate or self.sample_rate


def parse_text(raw: str, *, max_bytes: int) -> dict:
    """Decode one JSON text message, or raise `ProtocolError`."""
    if len(raw.encode("utf-8", "surrogatepass")) > max_bytes:
        raise ProtocolError(
            "message_too_large", f"text message over {max_bytes} bytes; send less at once"
        )
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
        raise ProtocolError(
            "bad_json", "text messages must be JSON objects, e.g. {\"type\": \"start\", ...}"
        ) from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("bad_message", "a JSON message must be an object with a string 'type'")
    return message


def parse_start(message: dict) -> StartMessage:
    """Validate a `start` message, or raise `ProtocolError` naming the bad field."""
    try:
        return StartMessage.model_validate(message)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "message"
        reason = first["msg"].removeprefix("Value error, ")
        if "sample_rate" not in field:
            raise ProtocolError("bad_start", f"start message: {field}: {reason}") from None
        if "use one of" not in reason:  # e.g. missing, or a string: name the accepted values
            reason += f"; use an integer, one of {', '.join(map(str, SUPPORTED_SAMPLE_RATES))}"
        raise ProtocolError("bad_sample_rate", f"start message: {field}: {reason}") from None


def error_message(code: str, message: str) -> dict:
    """The JSON a client receives for any error."""
    return {"type": "error", "code": code, "message": message}


def client_message(event: events.Event) -> dict | None:
    """The client-facing form of a bus event of this session, or None if clients don't get it."""
    match event:
        case events.TranscriptPartial(text=text):
            return {"type": "transcript.partial", "text": text}
        case events.TranscriptFinal(text=text):
            return {"type": "transcript.final", "text": text}
        case events.BotSpoken(text=text):
            return {"type": "bot.text", "text": text}
        case events.LLMResponseReady(text=text, interrupted=interrupted):
            return {"type": "bot.reply", "text": text, "interrupted": interrupted}
        case events.BotStartedSpeaking():
            return {"type": "bot.started_speaking"}
        case events.BotStoppedSpeaking():
            return {"type": "bot.stopped_speaking"}
        case events.BotPaused():
            return {"type": "bot.paused"}
        case events.BotResumed():
            return {"type": "bot.resumed"}
        case events.TurnInterrupted():
            return {"type": "interrupted"}
        case events.TurnMetrics():
            stages = event.model_dump(exclude={"v", "session_id", "ts", "source", "turn",
                                               "echo_guard_hits"})
            return {"type": "turn.metrics", "turn": event.turn, "stages": stages,
                    "echo_guard_hits": event.echo_guard_hits}
        case events.SessionError(code=code, message=message):
            return error_message(code, message)
    return None
