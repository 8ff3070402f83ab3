"""A Realtime connection's session settings: what `session.update` may change, checked, and
the session object `session.created`/`session.updated` send back, in GA or beta shape."""

import re
from dataclasses import dataclass, field, replace

from pipecat.adapters.llm.schemas.function_schema import FunctionSchema

# GA's format types ↔ the beta's names (and ours).
GA_FORMATS = {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw"}
BETA_FORMATS = {v: k for k, v in GA_FORMATS.items()}
FORMAT_RATES = {"pcm16": 24000, "g711_ulaw": 8000, "g711_alaw": 8000}
TURN_DETECTION_TYPES = ("server_vad", "semantic_vad")
MIN_SILENCE_MS, MAX_SILENCE_MS = 100, 3000
# semantic_vad's eagerness → how long unfinished words wait ("auto", "medium": the server's).
EAGERNESS_GRACE_SECS = {"low": 3.0, "high": 0.75}
MAX_INSTRUCTIONS_CHARS = 4000
MAX_TOOLS = 64
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class SessionUpdateError(ValueError):
    """A `session.update` that cannot be applied: `param` names the field."""

    def __init__(self, code: str, message: str, param: str):
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


@dataclass(frozen=True)
class RealtimeSession:
    """The settings a client sees and may update."""

    id: str
    model: str
    voice: str
    instructions: str = ""
    input_format: str = "pcm16"
    output_format: str = "pcm16"
    # None: push-to-talk (the client commits each turn); else server_vad or semantic_vad.
    turn_detection: dict | None = field(default_factory=lambda: {"type": "server_vad"})
    tools: tuple[dict, ...] = ()  # function tools, as the client gave them

    @property
    def vad_stop_secs(self) -> float | None:
        """server_vad's `silence_duration_ms`, as the VAD's stop time (None: the server's)."""
        detection = self.turn_detection or {}
        silence_ms = detection.get("silence_duration_ms")
        if detection.get("type") != "server_vad" or silence_ms is None:
            return None
        return min(MAX_SILENCE_MS, max(MIN_SILENCE_MS, silence_ms)) / 1000

    @property
    def incomplete_grace_secs(self) -> float | None:
        """semantic_vad's `eagerness`, as the wait after unfinished words (None: the
        server's)."""
        detection = self.turn_detection or {}
        if detection.get("type") != "semantic_vad":
            return None
        return EAGERNESS_GRACE_SECS.get(detection.get("eagerness"))

    def updated(self, update: dict, *, voices: frozenset[str], started: bool) -> "RealtimeSession":
        """This session with a `session.update`'s `session` applied (GA or beta shape)."""
        if not isinstance(update, dict):
            raise SessionUpdateError("invalid_value", "session must be an object", "session")
        changes: dict = {}
        if (instructions := update.get("instructions")) is not None:
            if not isinstance(instructions, str) or len(instructions) > MAX_INSTRUCTIONS_CHARS:
                raise SessionUpdateError("invalid_value", "instructions must be text of at most "
                                         f"{MAX_INSTRUCTIONS_CHARS} characters",
                                         "session.instructions")
            if started and instructions != self.instructions:
                raise SessionUpdateError(
                    "instructions_locked", "instructions can change only before the "
                    "conversation starts (before the first audio, item or response)",
                    "session.instructions")
            changes["instructions"] = instructions
        audio = update.get("audio") if isinstance(update.get("audio"), dict) else {}
        given_input, given_output = audio.get("input") or {}, audio.get("output") or {}
        voice = update.get("voice", given_output.get("voice"))
        if voice is not None:
            if not isinstance(voice, str) or voice not in voices:
                raise SessionUpdateError("unknown_voice", f"no voice {voice!r}; voices: "
                                         f"{', '.join(sorted(voices))}", "session.voice")
            changes["voice"] = voice
        for name, beta_key, ga in (("input_format", "input_audio_format", given_input),
                                   ("output_format", "output_audio_format", given_output)):
            if (fmt := _format(update.get(beta_key), ga.get("format"), name)) is not None:
                if started and fmt != getattr(self, name):
                    raise SessionUpdateError("format_locked", "audio formats can change only "
                                             "before the conversation starts", f"session.{name}")
                changes[name] = fmt
        detection_given = "turn_detection" in update or "turn_detection" in given_input
        if detection_given:
            detection = update.get("turn_detection", given_input.get("turn_detection"))
            _check_turn_detection(detection)
            if started and detection != self.turn_detection:
                raise SessionUpdateError("turn_detection_locked", "turn_detection can change "
                                         "only before the conversation starts",
                                         "session.turn_detection")
            changes["turn_detection"] = detection
        if "tools" in update:
            tools = _checked_tools(update["tools"])
            if started and tools != self.tools:
                raise SessionUpdateError("tools_locked", "tools can change only before the "
                                         "conversation starts", "session.tools")
            changes["tools"] = tools
        return replace(self, **changes)

    def function_schemas(self) -> tuple[FunctionSchema, ...]:
        """The tools as pipecat passes them to the LLM."""
        return tuple(FunctionSchema(
            name=tool["name"], description=tool.get("description", ""),
            properties=tool.get("parameters", {}).get("properties", {}),
            required=tool.get("parameters", {}).get("required", [])) for tool in self.tools)

    def shape(self, *, beta: bool) -> dict:
        """The session object in the client's generation."""
        common = {"id": self.id, "object": "realtime.session", "model": self.model,
                  "instructions": self.instructions, "tools": list(self.tools),
                  "tool_choice": "auto"}
        if beta:
            return {**common, "modalities": ["audio", "text"], "voice": self.voice,
                    "input_audio_format": self.input_format,
                    "output_audio_format": self.output_format,
                    "input_audio_transcription": {"model": "whisper-1"},
                    "turn_detection": self.turn_detection}
        return {**common, "type": "realtime", "output_modalities": ["audio"], "audio": {
            "input": {"format": _ga_format(self.input_format),
                      "transcription": {"model": "whisper-1"},
                      "turn_detection": self.turn_detection},
            "output": {"format": _ga_format(self.output_format), "voice": self.voice}}}


def _checked_tools(tools) -> tuple[dict, ...]:
    """Function tools ({"type": "function", "name", "description", "parameters"}), checked."""
    if not isinstance(tools, list) or len(tools) > MAX_TOOLS:
        raise SessionUpdateError("invalid_value", f"tools is a list of at most {MAX_TOOLS} "
                                 "function tools", "session.tools")
    for i, tool in enumerate(tools):
        parameters = tool.get("parameters", {}) if isinstance(tool, dict) else None
        if not (isinstance(tool, dict) and tool.get("type") == "function"
                and isinstance(tool.get("name"), str) and TOOL_NAME.fullmatch(tool["name"])
                and isinstance(tool.get("description", ""), str)
                and isinstance(parameters, dict)
                and isinstance(parameters.get("properties", {}), dict)
                and isinstance(parameters.get("required", []), list)):
            raise SessionUpdateError(
                "invalid_value", "each tool is {\"type\": \"function\", \"name\" (letters, "
                "digits, _ and -, up to 64), \"description\", \"parameters\" (a JSON schema "
                "object)}", f"session.tools[{i}]")
    return tuple(tools)


def _check_turn_detection(detection) -> None:
    if detection is None:
        return
    if not isinstance(detection, dict) or detection.get("type") not in TURN_DETECTION_TYPES:
        raise SessionUpdateError("invalid_value", "turn_detection is null (push-to-talk), or "
                                 "has type server_vad or semantic_vad", "session.turn_detection")
    silence_ms = detection.get("silence_duration_ms")
    if silence_ms is not None and (isinstance(silence_ms, bool)
                                   or not isinstance(silence_ms, int | float)):
        raise SessionUpdateError("invalid_value", "silence_duration_ms must be a number",
                                 "session.turn_detection.silence_duration_ms")
    eagerness = detection.get("eagerness")
    if eagerness is not None and eagerness not in ("low", "medium", "high", "auto"):
        raise SessionUpdateError("invalid_value", "eagerness is low, medium, high or auto",
                                 "session.turn_detection.eagerness")


def _format(beta_name, ga_format, name: str) -> str | None:
    if beta_name is not None:
        if beta_name not in FORMAT_RATES:
            raise SessionUpdateError("unsupported_value", f"{name} {beta_name!r} is not one of "
                                     "pcm16, g711_ulaw, g711_alaw", f"session.{name}")
        return beta_name
    if ga_format is None:
        return None
    kind = ga_format.get("type") if isinstance(ga_format, dict) else None
    if kind not in GA_FORMATS:
        raise SessionUpdateError("unsupported_value", f"format {kind!r} is not one of "
                                 "audio/pcm, audio/pcmu, audio/pcma", f"session.audio.{name}")
    if kind == "audio/pcm" and ga_format.get("rate", 24000) != 24000:
        raise SessionUpdateError("unsupported_value", "audio/pcm is 24000 Hz",
                                 f"session.audio.{name}")
    return GA_FORMATS[kind]


def _ga_format(fmt: str) -> dict:
    ga = {"type": BETA_FORMATS[fmt]}
    if fmt == "pcm16":
        ga["rate"] = 24000
    return ga
