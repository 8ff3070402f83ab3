"""The event bus every session publishes on; the dashboard and bots subscribe to it."""

from voxline.bus.base import EventBus, SessionBus
from voxline.bus.factory import create_bus
from voxline.bus.inprocess import InProcessBus

__all__ = ["EventBus", "InProcessBus", "SessionBus", "create_bus"]
