"""What a worker tells the dashboard: status, counters, effective config and log lines."""

import asyncio
import time
from collections.abc import Callable

import psutil
from loguru import logger

from voxline.bus import events
from voxline.worker.host import SessionHost
from voxline.worker.metrics import WorkerMetrics

STATUS_PERIOD_SECS = 2.0
CONFIG_PERIOD_SECS = 30.0
LOG_LEVEL = "INFO"


class WorkerTelemetry:
    """Publishes `system.service.status` + `metrics.update` every few seconds, `worker.config`
    now and then, and every INFO+ log line as a `log` event. Never blocks the caller."""

    def __init__(
        self, host: SessionHost, metrics: WorkerMetrics, *, started_at: float, url: str = "",
        extra_components: Callable[[], list[events.ComponentStatus]] = list,
    ):
        self._host = host
        self._metrics = metrics  # its turn and error counts are the worker's
        self._started_at = started_at
        self._url = url
        self._extra_components = extra_components  # e.g. the Discord gateway connection
        self._process = psutil.Process()
        self._process.cpu_percent()  # the first reading only starts the measurement
        self._task: asyncio.Task | None = None
        self._sink_id: int | None = None
        self._stopping = False

    async def start(self) -> None:
        """Begin publishing (call from the running loop)."""
        loop = asyncio.get_running_loop()
        self._sink_id = logger.add(
            lambda message: loop.call_soon_threadsafe(self._publish_log, message.record),
            level=LOG_LEVEL, filter=lambda record: not record["name"].startswith("voxline.bus"),
            enqueue=False,
        )
        self._task = asyncio.create_task(self._publish_task_handler(), name="voxline-telemetry")

    async def close(self) -> None:
        """Stop publishing."""
        if self._sink_id is not None:
            logger.remove(self._sink_id)
            self._sink_id = None
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _publish_task_handler(self) -> None:
        last_config = 0.0
        while True:
            self._publish_status()
            if time.monotonic() - last_config >= CONFIG_PERIOD_SECS:
                self._publish(events.WorkerConfig, config=self._host.settings.redacted())
                last_config = time.monotonic()
            await asyncio.sleep(STATUS_PERIOD_SECS)

    def publish_stopping(self) -> None:
        """The worker is shutting down: say so now, and in every status until it is gone,
        rather than fall silent and be taken for lost once its statuses are overdue."""
        self._stopping = True
        self._publish_status()

    def _publish_status(self) -> None:
        host, models = self._host, self._host.models
        names = models.describe()
        bus_health = getattr(host.bus, "health", "embedded")
        components = [
            events.ComponentStatus(name=kind, health="ok", model=names[kind])
            for kind in ("vad", "stt", "tts")
        ] + [self._llm_status(names["llm"]),
             events.ComponentStatus(name="bus", health=bus_health,
                                    detail=getattr(host.bus, "health_detail", ""))]
        components += self._extra_components()
        self._publish(
            events.ServiceStatus,
            components=components,
            cpu_percent=self._process.cpu_percent(),
            rss_bytes=self._process.memory_info().rss,
            uptime_secs=time.monotonic() - self._started_at,
            sessions_active=host.live,
            url=self._url,
            stopping=self._stopping,
        )
        self._publish(
            events.MetricsUpdate,
            sessions_active=host.live,
            sessions_total=host.total,
            turns_total=self._metrics.turns_total,
            bus_dropped=host.bus.dropped,
            errors_total=self._metrics.errors_total,
        )

    def _llm_status(self, model: str) -> events.ComponentStatus:
        """A remote LLM's health is its circuit breaker's: closed ok, half-open degraded,
        open down."""
        breaker = self._host.llm_breaker
        if breaker is None:
            return events.ComponentStatus(name="llm", health="ok", model=model)
        health = {"closed": "ok", "half_open": "degraded", "open": "down"}[breaker.state]
        return events.ComponentStatus(name="llm", health=health, model=model,
                                      detail=breaker.describe())

    def _publish_log(self, record) -> None:
        session_id = record["extra"].get("session_id", "")
        self._publish(
            events.LogLine, level=record["level"].name, message=record["message"][:2000],
            name=record["name"] or "", session_id="" if session_id == "-" else session_id,
        )

    def _publish(self, event_cls, **fields) -> None:
        fields.setdefault("session_id", "")
        self._host.bus.publish_nowait(event_cls(source=self._host.worker_id, **fields))
