"""What the protocols that name models call ours (Wyoming's `info`, OpenAI's /v1/models), and
which names a client may use: ours, or OpenAI's (a client written for OpenAI names its models)."""

from dataclasses import dataclass

from voxline.config.settings import VoxlineSettings
from voxline.models import ModelSet, catalog

OPENAI_TRANSCRIPTION_MODELS = frozenset({"whisper-1", "gpt-4o-transcribe",
                                         "gpt-4o-mini-transcribe"})
OPENAI_SPEECH_MODELS = frozenset({"tts-1", "tts-1-hd", "gpt-4o-mini-tts"})
# OpenAI's voices: a client asking for one gets ours.
OPENAI_VOICES = frozenset({"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx",
                           "sage", "shimmer", "verse", "marin", "cedar"})


@dataclass(frozen=True)
class ModelNames:
    """The loaded models' names: `stt`, `tts`, `llm`, and the voices (the loaded one)."""

    stt: str
    tts: str
    llm: str
    voices: tuple[str, ...]

    @classmethod
    def of(cls, models: ModelSet, settings: VoxlineSettings) -> "ModelNames":
        stt = settings.stt.model_path.name if settings.stt.model_path else \
            catalog.WHISPER_TINY_EN.name
        tts = catalog.KOKORO_82M.name if settings.tts.engine == "kokoro" else \
            catalog.PIPER_JOE.name
        llm = settings.llm
        llm_name = llm.remote_model if llm.provider == "openai" else \
            llm.model_path.name if llm.model_path else llm.model
        # The engine's own name ends with its voice: piper:en_US-joe-medium, kokoro-…/jf_alpha.
        voice = models.tts.name.split(":", 1)[-1].split("/")[-1]
        return cls(stt=stt, tts=tts, llm=llm_name, voices=(voice,))

    @property
    def listed(self) -> list[str]:
        return [self.stt, self.tts, self.llm]

    def transcribes_as(self, name: str) -> bool:
        return name == self.stt or name in OPENAI_TRANSCRIPTION_MODELS

    def speaks_as(self, name: str) -> bool:
        return name == self.tts or name in OPENAI_SPEECH_MODELS

    def has_voice(self, name: str) -> bool:
        return name in self.voices or name in OPENAI_VOICES


def is_language_heard(language: str, settings: VoxlineSettings) -> bool:
    """Whether Whisper is set to hear `language` ("en", "en-US" and "en_US" all match "en")."""
    return language.replace("_", "-").split("-")[0].lower() == settings.stt.language.lower()
