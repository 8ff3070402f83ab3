"""The embedded default bus: fan-out to subscribers in this process."""

from voxline.bus.base import EventBus, EventFilter, Subscription
from voxline.bus.events import Event


class InProcessBus(EventBus):
    """Delivers each event synchronously into every subscriber's own bounded queue.

    Must be used from the event loop thread. A slow subscriber loses its own oldest events; it
    never slows the publisher or other subscribers.
    """

    def __init__(self, *, queue_size: int = 1000):
        self._queue_size = queue_size
        self._subscriptions: set[Subscription] = set()
        self._dropped_closed = 0

    def publish_nowait(self, event: Event) -> None:
        """Offer `event` to every subscriber."""
        for subscription in tuple(self._subscriptions):
            subscription.offer(event)

    def subscribe(self, accept: EventFilter | None = None) -> Subscription:
        """Subscribe with an optional filter."""
        subscription = Subscription(accept, self._queue_size, self._unsubscribe)
        self._subscriptions.add(subscription)
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.discard(subscription)
            self._dropped_closed += subscription.dropped

    @property
    def dropped(self) -> int:
        """Events dropped by lagging subscribers, past and present."""
        return self._dropped_closed + sum(s.dropped for s in self._subscriptions)
