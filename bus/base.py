"""The bus interface. Publishing never blocks: the voice path must not wait on observers."""

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable

from voxline.bus.events import Event

EventFilter = Callable[[Event], bool]


class EventBus(ABC):
    """Publish/subscribe for typed events: in-process, or over Redis (`bus.url`)."""

    @abstractmethod
    def publish_nowait(self, event: Event) -> None:
        """Queue `event` for delivery. Never blocks; drops the oldest when full (counted)."""

    @abstractmethod
    def subscribe(self, accept: EventFilter | None = None) -> "Subscription":
        """A new subscription receiving every later event that `accept` lets through."""

    @property
    @abstractmethod
    def dropped(self) -> int:
        """Events dropped because a queue was full."""

    @property
    def rejected(self) -> int:
        """Messages from other processes refused (unsigned, forged, stale, replayed); none
        in-process."""
        return 0

    async def start(self) -> None:  # noqa: B027 (optional hook: nothing to do in-process)
        """Connect (a no-op for the in-process bus)."""

    async def close(self) -> None:  # noqa: B027 (optional hook: nothing to do in-process)
        """Disconnect (a no-op for the in-process bus)."""

    @property
    def health(self) -> str:
        """embedded | healthy | degraded."""
        return "embedded"

    @property
    def health_detail(self) -> str:
        """Why the bus is degraded, if it is."""
        return ""


class Subscription:
    """One subscriber's bounded queue. Use as an async iterator; `close()` when done."""

    def __init__(self, accept: EventFilter | None, max_size: int, on_close: Callable):
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=max_size)
        self._accept = accept
        self._on_close = on_close
        self.dropped = 0

    def offer(self, event: Event) -> None:
        """Deliver, dropping this subscriber's oldest event when it lags behind."""
        if self._accept and not self._accept(event):
            return
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    async def get(self) -> Event:
        """The next event."""
        return await self._queue.get()

    def get_nowait(self) -> Event:
        """The next event if one is waiting (raises asyncio.QueueEmpty otherwise)."""
        return self._queue.get_nowait()

    def empty(self) -> bool:
        """No event waiting."""
        return self._queue.empty()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        return await self._queue.get()

    def close(self) -> None:
        """Stop receiving."""
        self._on_close(self)


class SessionBus:
    """A session's view of the bus: stamps its id and worker on everything it publishes."""

    def __init__(self, bus: EventBus, *, session_id: str, source: str):
        self.bus = bus
        self.session_id = session_id
        self.source = source

    def publish(self, event_cls: type[Event], **fields) -> None:
        """Build and publish an event of this session without waiting."""
        self.bus.publish_nowait(
            event_cls(session_id=self.session_id, source=self.source, **fields)
        )
