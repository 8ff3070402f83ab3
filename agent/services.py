"""Builds the per-session STT, LLM and TTS processors around the shared models."""

from pipecat.services.llm_service import LLMService

from voxline.config.voice import AgentSettings, LLMSettings, STTSettings, TTSSettings
from voxline.models import ModelSet
from voxline.pipeline.circuit_breaker import CircuitBreaker
from voxline.pipeline.llm import LlamaCppLLMService
from voxline.pipeline.playback_hold import PlaybackHold
from voxline.pipeline.remote_llm import RemoteLLMService
from voxline.pipeline.reply_writer import ReplyStyle
from voxline.pipeline.stt import StreamingWhisperSTTService
from voxline.pipeline.tts import LocalTTSService


def build_stt(models: ModelSet, stt: STTSettings, *,
              audio_passthrough: bool) -> StreamingWhisperSTTService:
    """Streaming Whisper with interim results on the shared engine. The microphone's audio
    goes on downstream only if something there wants it (a recorder): nothing else after the
    STT reads it, and each frame would cost every processor and observer a hop."""
    return StreamingWhisperSTTService(
        engine=models.stt, language=stt.language, interim_interval_secs=stt.interim_interval_secs,
        turn_model=models.turn, audio_passthrough=audio_passthrough,
    )


def llm_breaker(llm: LLMSettings) -> CircuitBreaker | None:
    """The process-wide circuit breaker of a remote LLM (None for the in-process one)."""
    if llm.provider != "openai":
        return None
    return CircuitBreaker(failure_threshold=llm.breaker_failure_threshold,
                          reset_secs=llm.breaker_reset_secs)


def reply_style(llm: LLMSettings, agent: AgentSettings) -> ReplyStyle:
    """How the local LLM writes replies: sampling from `llm.*`, the echo guard from `agent.*`."""
    return ReplyStyle(
        max_tokens=llm.max_tokens, temperature=llm.temperature,
        repeat_penalty=llm.repeat_penalty, presence_penalty=llm.presence_penalty,
        echo_guard=agent.echo_guard, echo_fallback=agent.echo_fallback,
    )


def build_llm(
    models: ModelSet, llm: LLMSettings, agent: AgentSettings, *, system_prompt: str,
    breaker: CircuitBreaker | None = None,
) -> LLMService:
    """llama.cpp in-process, or pipecat's OpenAI service for any OpenAI-compatible server,
    behind `breaker` (the worker's, shared by its sessions; a new one when None). Both see the
    persona's example exchanges ahead of the conversation."""
    if llm.provider == "openai":
        service = RemoteLLMService(
            breaker=breaker or llm_breaker(llm),
            first_token_timeout_secs=llm.first_token_timeout_secs,
            apology=llm.apology_text,
            examples=agent.examples(),
            echo_guard=agent.echo_guard,
            echo_fallback=agent.echo_fallback,
            api_key=llm.api_key.get_secret_value(),
            base_url=llm.base_url,
            settings=RemoteLLMService.Settings(
                model=llm.remote_model, system_instruction=system_prompt,
                max_completion_tokens=llm.max_tokens, temperature=llm.temperature,
                # Sent only when set: some servers reject a null.
                **({"presence_penalty": llm.presence_penalty} if llm.presence_penalty else {}),
            ),
        )
        # llama-server and others reject the "developer" role with HTTP 500.
        service.supports_developer_role = False
        return service
    assert models.llm is not None, "provider 'local' always loads a model"
    return LlamaCppLLMService(
        engine=models.llm, system_instruction=system_prompt, style=reply_style(llm, agent),
        examples=agent.examples(), playback_lead_secs=llm.playback_lead_secs,
    )


def build_tts(models: ModelSet, tts: TTSSettings,
              hold: PlaybackHold | None = None) -> LocalTTSService:
    """Sentence-by-sentence synthesis on the shared engine (waiting while `hold` holds the
    bot's audio)."""
    return LocalTTSService(engine=models.tts, executor=models.tts_executor,
                           first_executor=models.tts_first_executor,
                           max_text_chars=tts.max_text_chars, hold=hold)
