"""Prometheus metrics of one worker (`/metrics`), fed from the bus like the dashboard."""

import asyncio

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from voxline.bus import events
from voxline.models.compute import ComputeArbiter
from voxline.worker.host import SessionHost

STAGE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
STAGES = ("vad", "stt", "turn", "llm", "tts", "transport", "total")


class WorkerMetrics:
    """`voxline_*` metrics in their own registry, updated from this worker's bus events."""

    def __init__(self, host: SessionHost):
        self._host = host
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions_active = Gauge("voxline_sessions_active", "Live sessions", registry=r)
        self.turns = Counter("voxline_turns_total", "Answered turns", registry=r)
        self.turn_latency = Histogram(
            "voxline_turn_latency_seconds", "Per-turn latency by stage", ["stage"],
            buckets=STAGE_BUCKETS, registry=r)
        self.stt = Histogram("voxline_stt_seconds", "End of speech (VAD) → final transcript",
                             buckets=STAGE_BUCKETS, registry=r)
        self.tts_first_audio = Histogram(
            "voxline_tts_first_audio_seconds", "First LLM token → first TTS audio",
            buckets=STAGE_BUCKETS, registry=r)
        self.llm_first_token = Histogram(
            "voxline_llm_first_token_seconds", "LLM request → first token",
            buckets=STAGE_BUCKETS, registry=r)
        # A counter (exposed as voxline_bus_dropped_total): the bus counts, this follows it.
        self.bus_dropped = Counter("voxline_bus_dropped", "Bus events dropped", registry=r)
        self._bus_dropped_seen = 0
        self.bus_rejected = Counter(
            "voxline_bus_rejected", "Messages from Redis refused (unsigned, forged, stale, "
            "replayed)", registry=r)
        self._bus_rejected_seen = 0
        self.errors = Counter("voxline_errors_total", "Errors", ["kind"], registry=r)
        self.echo_guarded = Counter(
            "voxline_llm_echo_guard_total",
            "Reply openings kept back for saying the user's words back, by what followed",
            ["outcome"], registry=r)
        self.llm_circuit_open = Gauge(
            "voxline_llm_circuit_open", "1 while the remote LLM's circuit is open or half-open",
            registry=r)
        self.sessions_started = Counter(
            "voxline_sessions_started", "Sessions started, by transport", ["transport"],
            registry=r)
        self.speech_requests = Counter(
            "voxline_speech_requests", "Speech-to-text and text-to-speech requests served "
            "outside a conversation (Wyoming, /v1/audio)", ["transport", "kind"], registry=r)
        self.speech_processing = Histogram(
            "voxline_speech_processing_seconds",
            "stt: end of the audio → transcript; tts: request → first audio", ["kind"],
            buckets=STAGE_BUCKETS, registry=r)
        r.register(ComputeUsageCollector(host.models.compute))
        # The same counts as plain numbers, for the dashboard's telemetry.
        self.turns_total = 0
        self.errors_total = 0
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Follow this worker's events (call from the running loop)."""
        worker_id = self._host.worker_id
        subscription = self._host.bus.subscribe(
            lambda e: e.source == worker_id
            and isinstance(e, events.TurnMetrics | events.SessionError | events.EchoGuarded
                           | events.SessionStarted | events.SpeechServed)
        )
        self._task = asyncio.create_task(self._follow(subscription), name="voxline-metrics")

    async def close(self) -> None:
        """Stop following."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def render(self) -> bytes:
        """The text exposition format, with gauges read now."""
        self.sessions_active.set(self._host.live)
        dropped = self._host.bus.dropped
        self.bus_dropped.inc(max(0, dropped - self._bus_dropped_seen))
        self._bus_dropped_seen = max(dropped, self._bus_dropped_seen)
        rejected = self._host.bus.rejected
        self.bus_rejected.inc(max(0, rejected - self._bus_rejected_seen))
        self._bus_rejected_seen = max(rejected, self._bus_rejected_seen)
        breaker = self._host.llm_breaker
        self.llm_circuit_open.set(int(breaker is not None and breaker.state != "closed"))
        return generate_latest(self.registry)

    async def _follow(self, subscription) -> None:
        try:
            async for event in subscription:
                if isinstance(event, events.SessionError):
                    self.errors.labels(kind=event.code).inc()
                    self.errors_total += 1
                    continue
                if isinstance(event, events.SessionStarted):
                    self.sessions_started.labels(transport=event.transport).inc()
                    continue
                if isinstance(event, events.SpeechServed):
                    self.speech_requests.labels(transport=event.transport, kind=event.kind).inc()
                    self.speech_processing.labels(kind=event.kind).observe(event.processing_secs)
                    continue
                if isinstance(event, events.EchoGuarded):
                    outcome = "written_again" if event.attempt == 1 else "fallback"
                    self.echo_guarded.labels(outcome=outcome).inc()
                    continue
                self.turns.inc()
                self.turns_total += 1
                for stage in STAGES:
                    self.turn_latency.labels(stage=stage).observe(getattr(event, f"{stage}_secs"))
                self.stt.observe(event.stt_secs)
                self.llm_first_token.observe(event.llm_secs)
                self.tts_first_audio.observe(event.tts_secs)
        finally:
            subscription.close()


class ComputeUsageCollector(Collector):
    """The CPU arbiter's counters per kind of work, read at scrape time: how much of the CPU
    each kind took and how long it queued for it (a growing `user_waiting` wait means users
    wait on other sessions' work: the machine is at its session limit)."""

    def __init__(self, compute: ComputeArbiter):
        self._compute = compute

    def collect(self):
        turns = CounterMetricFamily("voxline_compute_turns", "Turns on the CPU by kind of work",
                                    labels=["work"])
        busy = CounterMetricFamily("voxline_compute_busy_seconds",
                                   "Seconds holding the CPU by kind of work", labels=["work"])
        waiting = CounterMetricFamily("voxline_compute_wait_seconds",
                                      "Seconds queued for the CPU by kind of work",
                                      labels=["work"])
        for work, (n, busy_secs, wait_secs) in self._compute.usage_now().items():
            label = [work.name.lower()]
            turns.add_metric(label, n)
            busy.add_metric(label, busy_secs)
            waiting.add_metric(label, wait_secs)
        yield from (turns, busy, waiting)
