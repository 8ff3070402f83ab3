"""Load every model a worker needs, once, and hand the shared set to each session."""

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import onnxruntime
from loguru import logger

from voxline.config.settings import VoxlineSettings, mask_url_credentials
from voxline.models import catalog
from voxline.models.compute import ComputeArbiter
from voxline.models.llama import LlamaEngine
from voxline.models.prompt import prompt_messages
from voxline.models.registry import ModelFileError, ModelRegistry, ModelStatus
from voxline.models.silero import load_silero
from voxline.models.smart_turn import SmartTurnModel
from voxline.models.whisper import WhisperEngine


class SpeechSynthesizer(Protocol):
    """What the TTS processor needs from an engine (Piper or Kokoro)."""

    name: str
    sample_rate: int

    def synthesize(self, text: str, speed: float = 1.0) -> "object":
        """Iterator[bytes] of 16-bit mono PCM, at `speed` times the configured speed."""

    def warm_up(self) -> None: ...


@dataclass
class ModelSet:
    """The shared, already-loaded models of one process. Sessions only borrow them."""

    vad: onnxruntime.InferenceSession  # Silero; each session keeps its own recurrent state
    stt: WhisperEngine
    tts: SpeechSynthesizer
    llm: LlamaEngine | None  # None when the LLM is a remote OpenAI-compatible server
    # Whisper, the TTS engine and the in-process LLM take turns on the CPU, most urgent first.
    compute: ComputeArbiter = field(default_factory=ComputeArbiter)
    tts_executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=2, thread_name_prefix="voxline-tts")
    )
    # Replies' first pieces only: they never queue behind other sessions' later sentences.
    tts_first_executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1,
                                                   thread_name_prefix="voxline-tts-first")
    )
    load_secs: dict[str, float] = field(default_factory=dict)
    turn: SmartTurnModel | None = None  # None when agent.smart_turn is off

    def describe(self) -> dict[str, str]:
        """Engine names, for status events and logs."""
        return {
            "vad": "silero-vad",
            "stt": self.stt.name,
            "llm": self.llm.name if self.llm else "remote",
            "tts": self.tts.name,
        }

    def close(self) -> None:
        """Stop the worker threads (at process exit)."""
        self.stt.close()
        if self.llm:
            self.llm.close()
        self.tts_executor.shutdown(wait=False, cancel_futures=True)
        self.tts_first_executor.shutdown(wait=False, cancel_futures=True)


Progress = Callable[[str, float], None]


def load_models(settings: VoxlineSettings, progress: Progress | None = None) -> ModelSet:
    """Locate, verify, load and warm up every model. Blocking; raises `ModelFileError` early."""
    registry = ModelRegistry(settings.models.cache_dir)
    report = progress or (lambda line, secs: logger.info("{} ({:.2f}s)", line, secs))
    timings: dict[str, float] = {}

    def timed(label: str, fn):
        started = time.perf_counter()
        result = fn()
        timings[label] = time.perf_counter() - started
        report(label, timings[label])
        return result

    vad = timed("VAD  silero-vad", lambda: load_silero(registry.path_of(catalog.SILERO_VAD)))
    turn = (timed("TURN smart-turn-v3.2", lambda: _load_smart_turn(registry))
            if settings.agent.smart_turn else None)
    compute = ComputeArbiter()
    stt = timed("STT  " + _stt_label(settings), lambda: _load_stt(settings, registry, compute))
    llm = timed("LLM  " + _llm_label(settings), lambda: _load_llm(settings, registry, compute))
    tts = timed("TTS  " + settings.tts.engine, lambda: _load_tts(settings, registry, compute))
    return ModelSet(vad=vad, stt=stt, tts=tts, llm=llm, compute=compute, load_secs=timings,
                    turn=turn)


def _load_smart_turn(registry: ModelRegistry) -> SmartTurnModel:
    model = SmartTurnModel(registry.path_of(catalog.SMART_TURN))
    model.warm_up()
    return model


def _stt_label(settings: VoxlineSettings) -> str:
    return str(settings.stt.model_path or catalog.WHISPER_TINY_EN.name)


def _llm_label(settings: VoxlineSettings) -> str:
    llm = settings.llm
    if llm.provider == "openai":
        return f"remote {llm.remote_model} at {mask_url_credentials(llm.base_url)}"
    return str(llm.model_path or llm.model)


def _load_stt(settings: VoxlineSettings, registry: ModelRegistry,
              compute: ComputeArbiter) -> WhisperEngine:
    stt = settings.stt
    model_dir = stt.model_path or registry.path_of(catalog.WHISPER_TINY_EN).parent
    engine = WhisperEngine(
        model_dir=model_dir, cpu_threads=stt.cpu_threads, beam_size=stt.beam_size,
        language=stt.language, min_window_secs=stt.min_window_secs, compute=compute,
    )
    engine.warm_up()
    return engine


def _load_llm(settings: VoxlineSettings, registry: ModelRegistry,
              compute: ComputeArbiter) -> LlamaEngine | None:
    llm = settings.llm
    if llm.provider == "openai":
        return None
    spec = catalog.LLM_MODELS[llm.model]
    engine = LlamaEngine(
        model_path=llm.model_path or registry.path_of(spec), n_ctx=llm.n_ctx,
        n_threads=llm.n_threads, slots=llm.slots, compute=compute,
        chat_template=None if llm.model_path else spec.chat_template,
    )
    engine.warm_up(prompt_messages(settings.agent.system_prompt,
                                   settings.agent.examples(), history=[]))
    return engine


def _load_tts(settings: VoxlineSettings, registry: ModelRegistry,
              compute: ComputeArbiter) -> SpeechSynthesizer:
    tts = settings.tts
    if tts.engine == "kokoro":
        from voxline.models.kokoro import KokoroSynthesizer

        model = registry.path_of(catalog.KOKORO_82M)
        voices = registry.path_of(catalog.KOKORO_FRONTEND)
        vocab = voices.with_name("vocab.json")  # verified with it by path_of
        try:
            engine: SpeechSynthesizer = KokoroSynthesizer(
                model_path=model, voices_path=voices, vocab_path=vocab,
                voice=tts.voice or "jf_alpha", speed=tts.speed, num_threads=tts.num_threads,
                compute=compute,
            )
        except ValueError as e:  # an unknown voice: the message lists the packaged ones
            raise ModelFileError(f"tts.voice: {e}") from None
    else:
        from voxline.models.piper import PiperSynthesizer

        if tts.voice not in (None, "en_US-joe-medium"):
            raise ModelFileError(
                f"tts.voice '{tts.voice}' is not packaged; the packaged Piper voice is "
                "'en_US-joe-medium' (leave tts.voice unset)"
            )
        onnx = registry.path_of(catalog.PIPER_JOE)
        engine = PiperSynthesizer(
            model_path=onnx, config_path=onnx.with_name(onnx.name + ".json"), speed=tts.speed,
            num_threads=tts.num_threads, compute=compute,
        )
    engine.warm_up()
    return engine


def model_statuses(settings: VoxlineSettings) -> list[ModelStatus]:
    """Every model this configuration can use, with its source, size and checksum state."""
    registry = ModelRegistry(settings.models.cache_dir)
    statuses = [registry.status(spec) for spec in catalog.ALL_MODELS]
    if settings.stt.model_path:
        statuses.append(registry.local_file_status("stt (custom)", "stt", settings.stt.model_path))
    if settings.llm.model_path:
        statuses.append(registry.local_file_status("llm (custom)", "llm", settings.llm.model_path))
    return statuses


def reload_engine(models: ModelSet, settings: VoxlineSettings, kind: str) -> str:
    """Load a fresh engine of `kind` (stt, llm or tts) and use it for new sessions. Blocking.

    Running sessions keep the engine they started with until they end.
    """
    registry = ModelRegistry(settings.models.cache_dir)
    if kind == "stt":
        models.stt = _load_stt(settings, registry, models.compute)
        return models.stt.name
    if kind == "llm":
        if settings.llm.provider == "openai":
            return "remote LLM: nothing to reload"
        models.llm = _load_llm(settings, registry, models.compute)
        return models.llm.name if models.llm else "remote"
    if kind == "tts":
        models.tts = _load_tts(settings, registry, models.compute)
        return models.tts.name
    raise ValueError(f"unknown model kind '{kind}'; use stt, llm or tts")
