"""One voxline process: the worker's long-lived parts and the session host every transport
calls (`docs/architecture.md`)."""

from voxline.worker.host import NoSlot, SessionClient, SessionHost, Slot
from voxline.worker.worker import Worker, key_store

__all__ = ["NoSlot", "SessionClient", "SessionHost", "Slot", "Worker", "key_store"]
