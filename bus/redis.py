"""The production bus: Redis pub/sub between processes, in-process fan-out within one.

Local subscribers get local events at once, Redis or not: a conversation's own client never
depends on Redis. Remote events arrive through PSUBSCRIBE `voxline.*`; our own come back too
and are skipped by `origin`, so nothing is delivered twice. Every message is sealed with the
shared secret (`bus/envelope.py`); one that is not, or not validly, is dropped and counted.
"""

import asyncio
import random
from collections import deque
from pathlib import Path

import redis.asyncio as redis
from loguru import logger
from redis.exceptions import RedisError

from voxline.bus.base import EventBus, EventFilter, Subscription
from voxline.bus.envelope import EnvelopeOpener, RejectedEnvelope, seal
from voxline.bus.events import Event
from voxline.bus.inprocess import InProcessBus
from voxline.config.settings import mask_url_credentials

CHANNEL_PREFIX = "voxline."
BACKOFF_FIRST_SECS = 0.1
BACKOFF_MAX_SECS = 5.0
PING_EVERY_SECS = 1.0
# At close, what is still queued (a session's end, the worker's last status) gets this long to
# go out; Redis may be the reason for closing, so not longer.
CLOSE_DRAIN_SECS = 1.0


class RedisBus(EventBus):
    """Publishes through a bounded queue drained by one task; reconnects with backoff."""

    def __init__(self, url: str, *, queue_size: int, origin: str, secret: bytes,
                 max_skew_secs: float = 30.0, tls_ca_file: Path | None = None):
        self._url = url
        self._tls_ca_file = tls_ca_file
        self._origin = origin
        self._secret = secret
        self._opener = EnvelopeOpener(secret, max_skew_secs=max_skew_secs)
        self._rejected = 0
        self._local = InProcessBus(queue_size=queue_size)
        self._outbox: deque[Event] = deque()
        self._queue_size = queue_size
        self._wake = asyncio.Event()
        self._dropped = 0
        self._is_publisher_up = False
        self._is_reader_up = False
        self._detail = "connecting"
        self._tasks: list[asyncio.Task] = []
        self._client: redis.Redis | None = None

    def publish_nowait(self, event: Event) -> None:
        """Deliver locally now; queue for Redis (dropping the oldest, counted, when full)."""
        self._local.publish_nowait(event)
        if len(self._outbox) >= self._queue_size:
            self._outbox.popleft()
            self._dropped += 1
        self._outbox.append(event)
        self._wake.set()

    def subscribe(self, accept: EventFilter | None = None) -> Subscription:
        """Local and remote events that `accept` lets through."""
        return self._local.subscribe(accept)

    @property
    def dropped(self) -> int:
        """Events dropped on the way to Redis plus by lagging local subscribers."""
        return self._dropped + self._local.dropped

    @property
    def rejected(self) -> int:
        """Messages from Redis refused: unsigned, forged, stale, replayed, unreadable."""
        return self._rejected

    @property
    def health(self) -> str:
        """healthy when both directions are connected, degraded otherwise."""
        return "healthy" if self._is_publisher_up and self._is_reader_up else "degraded"

    @property
    def health_detail(self) -> str:
        """Why it is degraded."""
        return "" if self.health == "healthy" else self._detail

    async def start(self) -> None:
        """Start the publisher and reader tasks (they connect, and reconnect, by themselves)."""
        tls = {"ssl_ca_certs": str(self._tls_ca_file)} if self._tls_ca_file else {}
        self._client = redis.from_url(self._url, socket_connect_timeout=1, socket_timeout=2,
                                      **tls)
        self._tasks = [
            asyncio.create_task(self._publish_task_handler(), name="redis-bus-publish"),
            asyncio.create_task(self._read_task_handler(), name="redis-bus-read"),
        ]

    async def close(self) -> None:
        """Publish what is still queued (for up to `CLOSE_DRAIN_SECS`), stop, disconnect."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client:
            try:
                async with asyncio.timeout(CLOSE_DRAIN_SECS):
                    await self._drain()
            except (TimeoutError, RedisError, OSError) as e:
                logger.debug("bus: {} event(s) not published at close: {!r}", len(self._outbox),
                             e)
            await self._client.aclose()

    async def _publish_task_handler(self) -> None:
        assert self._client is not None
        backoff = Backoff()
        while True:
            try:
                await self._drain()
                self._mark(publisher=True)
                backoff.reset()
                try:
                    async with asyncio.timeout(PING_EVERY_SECS):  # no helper task, unlike wait_for
                        await self._wake.wait()
                except TimeoutError:
                    await self._client.ping()  # notice an outage even when idle
                self._wake.clear()
            except (RedisError, OSError) as e:
                self._mark(publisher=False, why=f"publishing: {e}")
                await asyncio.sleep(backoff.next())

    async def _drain(self) -> None:
        assert self._client is not None
        while self._outbox:
            event = self._outbox[0]
            await self._client.publish(CHANNEL_PREFIX + event.topic, self._envelope(event))
            if self._outbox and self._outbox[0] is event:  # still ours (not dropped meanwhile)
                self._outbox.popleft()

    async def _read_task_handler(self) -> None:
        assert self._client is not None
        backoff = Backoff()
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.psubscribe(CHANNEL_PREFIX + "*")
                self._mark(reader=True)
                backoff.reset()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True,
                                                       timeout=PING_EVERY_SECS)
                    if message is None:
                        await pubsub.ping()
                    elif message["type"] == "pmessage":
                        self._deliver(message["data"])
            except (RedisError, OSError) as e:
                self._mark(reader=False, why=f"subscribing: {e}")
                await asyncio.sleep(backoff.next())
            finally:
                await pubsub.aclose()

    def _envelope(self, event: Event) -> str:
        return seal(event, origin=self._origin, secret=self._secret)

    def _deliver(self, data: bytes) -> None:
        try:
            origin, event = self._opener.open(data)
        except RejectedEnvelope as e:
            self._rejected += 1
            if self._rejected == 1 or self._rejected % 1000 == 0:
                logger.warning("Redis bus: refused a message ({} so far): {}; is bus.secret "
                               "the same on every worker and dashboard?", self._rejected, e)
            return
        if origin != self._origin:  # our own events were delivered locally already
            self._local.publish_nowait(event)

    def _mark(self, *, publisher: bool | None = None, reader: bool | None = None,
              why: str = "") -> None:
        was = self.health
        if publisher is not None:
            self._is_publisher_up = publisher
        if reader is not None:
            self._is_reader_up = reader
        if why:
            self._detail = why
        if was != self.health:
            if self.health == "healthy":
                logger.info("Redis bus: connected to {}", mask_url_credentials(self._url))
            else:
                logger.warning("Redis bus degraded ({}); conversations go on, retrying", why)


class Backoff:
    """Exponential backoff with jitter: 0.1 s doubling to 5 s."""

    def __init__(self):
        self._delay = BACKOFF_FIRST_SECS

    def next(self) -> float:
        """The next wait."""
        delay = self._delay * random.uniform(0.8, 1.2)
        self._delay = min(BACKOFF_MAX_SECS, self._delay * 2)
        return delay

    def reset(self) -> None:
        """After a success."""
        self._delay = BACKOFF_FIRST_SECS
