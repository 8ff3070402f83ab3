"""One voxline process: the worker's long-lived parts and the session host every transport
calls (`docs/architecture.md`)."""

from voxline.worker.host import SessionClient, SessionHost
from voxline.worker.worker import Worker, key_store

__all__ = ["SessionClient", "SessionHost", "Worker", "key_store"]
