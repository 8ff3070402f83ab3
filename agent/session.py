"""`run_session`: the whole pipeline of one conversation, read top to bottom."""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from loguru import logger
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import TTSSpeakFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker, ProcessorUnusablePolicy
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.audio.audio_buffer_processor import AudioBufferProcessor
from pipecat.transports.base_transport import BaseTransport
from pipecat.turns.user_start import TranscriptionUserTurnStartStrategy
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

from voxline.agent.persona import Persona
from voxline.agent.services import build_llm, build_stt, build_tts
from voxline.bus import EventBus, SessionBus, events
from voxline.config.settings import PrivacySettings, VoxlineSettings
from voxline.config.voice import AgentSettings, VADSettings
from voxline.models import ModelSet
from voxline.pipeline.barge_in import (
    Backchannels,
    BargeInUserTurnStartStrategy,
    BotWordsProcessor,
    RecentBotWords,
)
from voxline.pipeline.circuit_breaker import CircuitBreaker
from voxline.pipeline.context_window import ContextWindowProcessor
from voxline.pipeline.echo_cancellation import EchoCanceller
from voxline.pipeline.llm import interim_prefill
from voxline.pipeline.observer_group import ObserverGroup
from voxline.pipeline.playback_hold import PlaybackHold, StaleReplyFilter
from voxline.pipeline.recording import session_recorder
from voxline.pipeline.session_events import SessionEventsObserver
from voxline.pipeline.turn_end import TranscriptTurnStopStrategy
from voxline.pipeline.turn_metrics import TurnMetricsObserver
from voxline.pipeline.vad import PausingSileroVADAnalyzer, PausingVADProcessor

# A client runs the functions the LLM calls (the Realtime API): it may take a while.
FUNCTION_CALL_TIMEOUT_SECS = 120.0


@dataclass(frozen=True)
class SessionOptions:
    """What the transport knows about this conversation."""

    session_id: str
    transport: Literal["websocket", "webrtc", "discord", "realtime"]
    persona: Persona
    worker_id: str = "worker"
    client: str = ""
    audio_in_sample_rate: int = 16000  # what reaches the pipeline (VAD and Whisper want 16 kHz)
    audio_out_sample_rate: int = 16000
    guild: str = ""  # Discord: where, and whom this session listens to
    channel: str = ""
    speaker: str = ""
    speaker_id: str = ""
    record: bool = False  # the client asked; recorded only if privacy.allow_recording too
    # The client's loudspeaker may leak into its microphone and it does not cancel that itself.
    echo_cancellation: bool = False
    # A client's own turn-taking settings (the Realtime API's turn_detection), over the
    # server's `vad.stop_secs` and `agent.incomplete_grace_secs`.
    vad_stop_secs: float | None = None
    incomplete_grace_secs: float | None = None
    # Functions the LLM may call (pipecat FunctionSchemas), answered by `function_call_handler`
    # (a client that runs them: the Realtime API's function calls).
    tools: tuple = ()
    function_call_handler: Callable | None = None


class Session:
    """One conversation: its pipeline, built around its transport. `run` it once; `end` it
    from anywhere (an operator, a shutdown). `end_reason` says why it ended: the first cause
    wins (an operator's end, then the client's disconnect it causes, is "ended by an operator").

    transport in → [echo cancellation] → VAD (and pauses) → STT (speculative at a pause) →
    [interims prefill the local LLM] → user context (turns; speech over the bot judged) →
    history window → LLM → TTS → transport out (held while judged) → [echo reference] →
    assistant context (only what was actually played), with observers publishing to the bus.
    `llm_breaker` (a remote LLM's circuit breaker) is the worker's, shared by its sessions.
    """

    def __init__(self, transport: BaseTransport, models: ModelSet, settings: VoxlineSettings,
                 bus: EventBus, options: SessionOptions, *,
                 llm_breaker: CircuitBreaker | None = None):
        self.options = options
        self.end_reason: str | None = None
        settings = with_client_turn_taking(settings, options)
        self._bus = SessionBus(bus, session_id=options.session_id, source=options.worker_id)
        vad = _vad_analyzer(models, settings.vad)
        context = LLMContext(tools=list(options.tools)) if options.tools else LLMContext()
        llm = build_llm(models, settings.llm, settings.agent,
                        system_prompt=options.persona.system_prompt, breaker=llm_breaker)
        if options.function_call_handler is not None:
            llm.register_function(None, options.function_call_handler,
                                  timeout_secs=FUNCTION_CALL_TIMEOUT_SECS)
        recorder = _recorder(settings.privacy, options)
        canceller = _echo_canceller(options)
        hold, bot_words = PlaybackHold(), RecentBotWords()
        hold.install(transport.output())
        aggregators = LLMContextAggregatorPair(
            context, user_params=LLMUserAggregatorParams(
                user_turn_strategies=_turn_strategies(settings.agent, hold, bot_words)
            ),
        )
        pipeline = Pipeline([
            transport.input(),
            *([canceller.microphone()] if canceller else []),
            PausingVADProcessor(vad_analyzer=vad, pause_secs=settings.vad.pause_secs),
            build_stt(models, settings.stt, audio_passthrough=bool(recorder)),
            *interim_prefill(llm, context),  # the local LLM reads the user's words early
            aggregators.user(),
            ContextWindowProcessor(max_messages=settings.agent.max_history_messages),
            llm,
            build_tts(models, settings.tts, hold),
            BotWordsProcessor(bot_words=bot_words),  # its echo is not the user's
            StaleReplyFilter(hold=hold),  # an interrupted reply's last audio is not played
            transport.output(),
            *([canceller.loudspeaker()] if canceller else []),
            *recorder,
            aggregators.assistant(),
        ])
        self._worker = PipelineWorker(
            pipeline,
            params=PipelineParams(
                audio_in_sample_rate=options.audio_in_sample_rate,
                audio_out_sample_rate=options.audio_out_sample_rate,
                enable_metrics=True,
            ),
            observers=[ObserverGroup([
                SessionEventsObserver(session_bus=self._bus),
                TurnMetricsObserver(session_bus=self._bus),
            ])],
            enable_rtvi=False,
            # pipecat's own turn tracking feeds its tracing only (off): one observer less, and
            # each observer wakes for every frame every processor handles.
            enable_turn_tracking=False,
            idle_timeout_secs=settings.agent.idle_timeout_secs,
            processor_unusable_policy=ProcessorUnusablePolicy.END,
        )
        transport.add_event_handler("on_client_disconnected", self._on_client_disconnected)
        self._worker.add_event_handler("on_idle_timeout", self._on_idle_timeout)

    async def end(self, reason: str) -> None:
        """End the session now (its `session.ended` says `reason`)."""
        self._ended_because(reason)
        await self._worker.cancel(reason=reason)

    async def run(self) -> str:
        """Run until the client leaves, the session idles out, is ended or fails; bracketed
        by session.started / session.ended events. Returns the end reason."""
        options = self.options
        if options.persona.greeting:
            await self._worker.queue_frame(TTSSpeakFrame(options.persona.greeting))
        started = time.monotonic()
        self._bus.publish(
            events.SessionStarted, transport=options.transport, client=options.client,
            output_sample_rate=options.audio_out_sample_rate, guild=options.guild,
            channel=options.channel, speaker=options.speaker, speaker_id=options.speaker_id,
        )
        runner = WorkerRunner(handle_sigint=False, handle_sigterm=False)
        try:
            await runner.add_workers(self._worker)
            await runner.run()
        except asyncio.CancelledError:
            self._ended_because("server shutdown")
            await self._worker.cancel(reason="session cancelled")
            raise
        finally:
            self._ended_because("ended")
            elapsed = time.monotonic() - started
            self._bus.publish(events.SessionEnded, reason=self.end_reason,
                              duration_secs=elapsed)
            logger.info("Session {} ended ({}) after {:.1f}s", options.session_id,
                        self.end_reason, elapsed)
        return self.end_reason

    def _ended_because(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason

    async def _on_client_disconnected(self, _transport, _client) -> None:
        self._ended_because("client disconnected")
        await self._worker.cancel(reason="client disconnected")

    async def _on_idle_timeout(self, _worker) -> None:
        self._ended_because("idle timeout")


async def run_session(transport: BaseTransport, models: ModelSet, settings: VoxlineSettings,
                      bus: EventBus, options: SessionOptions, *,
                      llm_breaker: CircuitBreaker | None = None) -> str:
    """Build and run one conversation (a worker runs its sessions through its host,
    `transports/host.py`, which also counts them and contains their failures)."""
    with logger.contextualize(session_id=options.session_id):
        return await Session(transport, models, settings, bus, options,
                             llm_breaker=llm_breaker).run()


def with_client_turn_taking(settings: VoxlineSettings,
                             options: SessionOptions) -> VoxlineSettings:
    """`settings` with the client's turn-taking choices in place of the server's."""
    vad, agent = settings.vad, settings.agent
    if options.vad_stop_secs is not None:
        vad = vad.model_copy(update={"stop_secs": options.vad_stop_secs})
    if options.incomplete_grace_secs is not None:
        agent = agent.model_copy(update={"incomplete_grace_secs": options.incomplete_grace_secs})
    return settings.model_copy(update={"vad": vad, "agent": agent})


def _recorder(privacy: PrivacySettings, options: SessionOptions) -> list[AudioBufferProcessor]:
    """The session's WAV recorder, only when both the server and the client want one."""
    if not (options.record and privacy.allow_recording):
        return []
    return [session_recorder(path=privacy.recordings_dir / f"{options.session_id}.wav")]


def _vad_analyzer(models: ModelSet, vad: VADSettings) -> PausingSileroVADAnalyzer:
    return PausingSileroVADAnalyzer(
        session=models.vad,
        params=VADParams(
            confidence=vad.confidence, start_secs=vad.start_secs, stop_secs=vad.stop_secs,
            min_volume=vad.min_volume,
        )
    )


def _echo_canceller(options: SessionOptions) -> EchoCanceller | None:
    """The session's echo canceller, if its client needs one."""
    if not options.echo_cancellation:
        return None
    return EchoCanceller(sample_rate=options.audio_in_sample_rate)


def _turn_strategies(agent: AgentSettings, hold: PlaybackHold,
                     bot_words: RecentBotWords) -> UserTurnStrategies:
    """The user's turn starts on speech, except over the bot's, which interrupts (barge-in,
    when enabled) only if it is not a backchannel; it ends on the final transcript of the
    speech the VAD closed, with a grace period if it sounds unfinished."""
    return UserTurnStrategies(
        start=[
            BargeInUserTurnStartStrategy(
                hold=hold, backchannels=Backchannels(agent.backchannels), bot_words=bot_words,
                hold_after_secs=agent.barge_in_hold_secs,
                max_backchannel_secs=agent.max_backchannel_secs,
                enable_interruptions=agent.enable_interruptions,
            ),
            TranscriptionUserTurnStartStrategy(enable_interruptions=agent.enable_interruptions),
        ],
        stop=[TranscriptTurnStopStrategy(incomplete_grace_secs=agent.incomplete_grace_secs)],
    )
