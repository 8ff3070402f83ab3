"""Folds bus events into what the dashboard shows, and fans them out to connected browsers."""

import asyncio
from collections import deque
from typing import Literal

from voxline.bus import EventBus
from voxline.bus.events import (
    BotPaused,
    BotResumed,
    BotSpoken,
    ControlAck,
    EchoGuarded,
    Event,
    LogLine,
    MetricsUpdate,
    ServiceStatus,
    SessionEnded,
    SessionStarted,
    TranscriptFinal,
    TranscriptPartial,
    TurnInterrupted,
    TurnMetrics,
    WorkerConfig,
)

MAX_LOG_LINES = 500
MAX_TRANSCRIPT_LINES = 200
ENDED_SESSIONS_KEPT = 20
VIEWER_QUEUE_SIZE = 1000
BUS_HEALTH_PERIOD_SECS = 1.0

# The transcript's note for an opening the echo guard kept back (its words are not shown: the
# user's own are already there).
PAUSE_NOTES = {"paused": "paused: speech over the bot",
               "resumed": "resumed: it was a backchannel"}
ECHO_NOTES = {1: "reply repeated the user: written again", 2: "reply repeated the user twice: "
              "fallback spoken"}


class Viewer:
    """One browser's bounded queue of messages; a slow browser loses its oldest (counted)."""

    def __init__(self):
        self.queue: asyncio.Queue[dict] = asyncio.Queue(maxsize=VIEWER_QUEUE_SIZE)
        self.dropped = 0

    def offer(self, message: dict) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(message)


class Collector:
    """The dashboard's picture of every worker and live session, built only from the bus."""

    def __init__(self, bus: EventBus, *, history_turns: int,
                 transcript_retention: Literal["none", "memory"] = "none"):
        self._bus = bus
        # none: a session's transcript is shown while it is live and forgotten when it ends.
        self.transcript_retention = transcript_retention
        self.workers: dict[str, dict] = {}
        self.sessions: dict[str, dict] = {}
        self.turns: deque[dict] = deque(maxlen=history_turns)
        self.logs: deque[dict] = deque(maxlen=MAX_LOG_LINES)
        self._viewers: set[Viewer] = set()
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        """Subscribe to the bus (call from the running loop)."""
        subscription = self._bus.subscribe()
        self._tasks = [
            asyncio.create_task(self._consume(subscription), name="dashboard-collector"),
            asyncio.create_task(self._watch_bus(), name="dashboard-bus-health"),
        ]

    async def close(self) -> None:
        """Stop consuming."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def add_viewer(self) -> Viewer:
        """A new browser: it gets `snapshot()` first, then every event."""
        viewer = Viewer()
        self._viewers.add(viewer)
        return viewer

    def remove_viewer(self, viewer: Viewer) -> None:
        """The browser left."""
        self._viewers.discard(viewer)

    def snapshot(self) -> dict:
        """Everything a newly opened page needs to draw itself."""
        return {
            "type": "snapshot",
            "workers": self.workers,
            "sessions": self.sessions,
            "turns": list(self.turns),
            "logs": list(self.logs),
            "bus": self._bus_health(),
            "transcript_retention": self.transcript_retention,
        }

    def _bus_health(self) -> dict:
        return {"type": "bus", "health": self._bus.health, "detail": self._bus.health_detail,
                "dropped": self._bus.dropped}

    async def _watch_bus(self) -> None:
        """The dashboard's own view of the bus, every second: when Redis is down, no worker's
        status can reach us, so this is how the page learns it."""
        while True:
            await asyncio.sleep(BUS_HEALTH_PERIOD_SECS)
            health = self._bus_health()
            for viewer in tuple(self._viewers):
                viewer.offer(health)

    async def _consume(self, subscription) -> None:
        try:
            async for event in subscription:
                self.apply(event)
                message = {"type": "event", "topic": event.topic,
                           "event": event.model_dump(mode="json")}
                for viewer in tuple(self._viewers):
                    viewer.offer(message)
        finally:
            subscription.close()

    def apply(self, event: Event) -> None:
        """Update the picture with one event."""
        match event:
            case ServiceStatus() | MetricsUpdate() | WorkerConfig():
                worker = self.workers.setdefault(event.source, {"id": event.source})
                key = {ServiceStatus: "status", MetricsUpdate: "metrics",
                       WorkerConfig: "config"}[type(event)]
                worker[key] = event.model_dump(mode="json")
                worker["last_seen"] = event.ts
            case SessionStarted():
                self.sessions[event.session_id] = {
                    "id": event.session_id, "worker": event.source, "transport": event.transport,
                    "client": event.client, "started": event.ts, "ended": None,
                    "state": "listening", "transcript": [], "partial": "",
                }
            case SessionEnded():
                if session := self.sessions.get(event.session_id):
                    session.update(ended=event.ts, state="ended", reason=event.reason)
                    if self.transcript_retention == "none":
                        session.update(transcript=[], partial="", is_transcript_forgotten=True)
                self._forget_old_sessions()
            case LogLine():
                self.logs.append(event.model_dump(mode="json"))
            case TurnMetrics():
                self.turns.append(event.model_dump(mode="json"))
            case _:
                self._apply_to_session(event)

    def _apply_to_session(self, event: Event) -> None:
        session = self.sessions.get(event.session_id)
        if session is None:
            return
        lines = session["transcript"]
        match event:
            case TranscriptPartial(text=text):
                session["partial"] = text
            case TranscriptFinal(text=text):
                session["partial"] = ""
                lines.append({"who": "user", "text": text})
                session["state"] = "thinking"
            case BotSpoken(text=text):
                lines.append({"who": "bot", "text": text})
                session["state"] = "speaking"
            case TurnInterrupted():
                lines.append({"who": "note", "text": "interrupted"})
                session["state"] = "listening"
            case BotPaused():
                lines.append({"who": "note", "text": PAUSE_NOTES["paused"]})
                session["state"] = "paused"
            case BotResumed():
                lines.append({"who": "note", "text": PAUSE_NOTES["resumed"]})
                session["state"] = "speaking"
            case EchoGuarded(attempt=attempt):
                lines.append({"who": "note", "text": ECHO_NOTES.get(attempt, ECHO_NOTES[2])})
            case ControlAck():
                pass
        del lines[:-MAX_TRANSCRIPT_LINES]

    def _forget_old_sessions(self) -> None:
        ended = sorted((s for s in self.sessions.values() if s["ended"]),
                       key=lambda s: s["ended"])
        for session in ended[:-ENDED_SESSIONS_KEPT]:
            del self.sessions[session["id"]]

