"""Picks the bus from settings: Redis when `bus.url` is set, the in-process bus otherwise."""

from voxline.bus.base import EventBus
from voxline.bus.inprocess import InProcessBus
from voxline.config.settings import BusSettings


def create_bus(settings: BusSettings, *, origin: str) -> EventBus:
    """The bus a process publishes on; `origin` identifies this process on a shared bus."""
    if not settings.url:
        return InProcessBus(queue_size=settings.queue_size)
    from voxline.bus.redis import RedisBus

    return RedisBus(settings.url, queue_size=settings.queue_size, origin=origin,
                    secret=settings.secret.get_secret_value().encode(),
                    max_skew_secs=settings.max_skew_secs, tls_ca_file=settings.tls_ca_file)
