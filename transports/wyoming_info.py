"""What the Wyoming server says it offers (`describe` → `info`): the loaded models, their
languages and voices, from the worker's model set and settings."""

from importlib.metadata import version

from wyoming.info import AsrModel, AsrProgram, Attribution, Info, TtsProgram, TtsVoice

from voxline.config.settings import VoxlineSettings
from voxline.models import ModelSet
from voxline.transports.model_names import ModelNames

WHISPER = Attribution(name="OpenAI Whisper, run by faster-whisper (SYSTRAN)",
                      url="https://github.com/SYSTRAN/faster-whisper")
VOICES = {
    "piper": Attribution(name="Piper (rhasspy)", url="https://github.com/rhasspy/piper"),
    "kokoro": Attribution(name="Kokoro-82M (hexgrad)",
                          url="https://huggingface.co/hexgrad/Kokoro-82M"),
}
# Both engines read English text (Kokoro's Japanese-named voices too: they speak what
# espeak-ng's English phonemizer gives them).
TTS_LANGUAGES = ["en"]


def describe(models: ModelSet, settings: VoxlineSettings) -> Info:
    """The `info` event's content."""
    ours = version("voxline")
    names = ModelNames.of(models, settings)
    stt_model = names.stt
    engine = settings.tts.engine
    asr = AsrProgram(
        name="voxline-stt", attribution=WHISPER, installed=True, version=ours,
        description="voxline speech to text (faster-whisper, partial transcripts as the "
                    "audio streams in)",
        models=[AsrModel(name=stt_model, languages=[settings.stt.language],
                         attribution=WHISPER, installed=True, version=None,
                         description=f"Whisper {stt_model}")],
        supports_transcript_streaming=True,
    )
    tts = TtsProgram(
        name="voxline-tts", attribution=VOICES[engine], installed=True, version=ours,
        description=f"voxline text to speech ({engine}, sentence by sentence as text "
                    "streams in)",
        voices=[TtsVoice(name=name, languages=TTS_LANGUAGES, attribution=VOICES[engine],
                         installed=True, version=None, description=f"{engine} {name}")
                for name in names.voices],
        supports_synthesize_streaming=True,
    )
    return Info(asr=[asr], tts=[tts])
