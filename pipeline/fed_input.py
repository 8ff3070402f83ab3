"""An input transport that code feeds (a Discord member's receiver, a Realtime API
connection) rather than one that reads a socket itself."""

from pipecat.frames.frames import CancelFrame, EndFrame, StartFrame
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_transport import BaseTransport, TransportParams


class FedInputTransport(BaseInputTransport):
    """Runs `_feed_task_handler` (a subclass's: moves what was fed into the pipeline) while
    the pipeline runs, and calls `on_started` once it does (not awaited: the session may be
    cancelled from it, and `start` must finish first)."""

    def __init__(self, params: TransportParams, *, on_started, **kwargs):
        super().__init__(params, **kwargs)
        self._on_started = on_started
        self._feed_task = None

    async def start(self, frame: StartFrame):
        await super().start(frame)
        await self.set_transport_ready(frame)
        self._feed_task = self.create_task(self._feed_task_handler())
        self.create_task(self._on_started(), name=f"{self}::on_started")

    async def stop(self, frame: EndFrame):
        await self._stop_feeding()
        await super().stop(frame)

    async def cancel(self, frame: CancelFrame):
        await self._stop_feeding()
        await super().cancel(frame)

    async def cleanup(self):
        await self._stop_feeding()  # also when the session is cancelled before it fully started
        await super().cleanup()

    async def _stop_feeding(self):
        if self._feed_task:
            await self.cancel_task(self._feed_task)
            self._feed_task = None

    async def _feed_task_handler(self):
        raise NotImplementedError


class FedTransport(BaseTransport):
    """A transport around a `FedInputTransport`: `disconnect()` ends its session, also when
    the client left while the session was still being built (its handler was not registered
    yet: the input's `on_started` tells it then). Subclasses pass `self._on_input_started` as
    their input's `on_started`."""

    def __init__(self, *, name: str):
        super().__init__(name=name)
        self._disconnect_reason: str | None = None
        self._register_event_handler("on_client_disconnected")

    async def disconnect(self, reason: str) -> None:
        """The client left: end the session."""
        self._disconnect_reason = reason
        await self._call_event_handler("on_client_disconnected", reason)

    async def _on_input_started(self) -> None:
        if self._disconnect_reason is not None:
            await self._call_event_handler("on_client_disconnected", self._disconnect_reason)
