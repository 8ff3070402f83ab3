"""Delivers a session's events (and errors) to its client, whatever carries them: the session
host (`worker/host.py`) hands them to the client's `ClientOutbox`."""

import asyncio
from collections.abc import Awaitable, Callable

from loguru import logger

from voxline.bus.events import Event
from voxline.transports.protocol import client_message, error_message

SendMessage = Callable[[dict], Awaitable[None]]


class ClientOutbox:
    """Sends JSON messages to one client from one task, in order, never blocking the caller.

    `send` is the carrier (a WebSocket text frame, a WebRTC data-channel message). A client that
    stops reading loses messages (counted), not the server its memory.
    """

    def __init__(self, send: SendMessage, max_pending: int = 256):
        self._send = send
        self._queue: asyncio.Queue[dict] = asyncio.Queue(maxsize=max_pending)
        self._task = asyncio.create_task(self._send_task_handler(), name="voxline-client-outbox")
        self.dropped = 0
        self._said_goodbye = False
        self._codes_logged: set[str] = set()

    def put(self, message: dict) -> None:
        """Queue a message; drop it if the client is far behind (counted, warned once), or if
        the client was told the server is shutting down (that notice is the last word)."""
        if self._said_goodbye:
            return
        if not self._queue.full():
            self._queue.put_nowait(message)
            return
        self.dropped += 1
        if self.dropped == 1:
            logger.warning("Client is not reading its events; dropping them")

    def deliver(self, event: Event) -> None:
        """Queue a session event, as the client protocol says it (not all events are said)."""
        if (message := client_message(event)) is not None:
            self.put(message)

    def error(self, code: str, message: str) -> None:
        """Queue an error for the client and note it in the log: the first of each kind at
        INFO, repeats at DEBUG (a client sending garbage must not flood the log, nor every
        dashboard it is shown on)."""
        first = code not in self._codes_logged
        self._codes_logged.add(code)
        logger.log("INFO" if first else "DEBUG", "Client error {}: {}", code, message)
        self.put(error_message(code, message))

    async def say_shutting_down(self) -> None:
        """Tell the client the server is going away, and wait (briefly) until it is sent:
        ending the session closes the connection right after."""
        self.error("server_shutdown", "the server is shutting down; reconnect to go on")
        # A session still running while it ends (an STT interim, a reply's text) must not
        # send after the notice: clients take it as the end.
        self._said_goodbye = True
        await self._flush()

    async def close(self) -> None:
        """Flush what is queued (briefly), then stop. Safe to call twice."""
        if self._task.done():
            return
        await self._flush()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _flush(self, timeout_secs: float = 0.5) -> None:
        try:
            await asyncio.wait_for(self._queue.join(), timeout=timeout_secs)
        except TimeoutError:
            pass

    async def _send_task_handler(self):
        while True:
            message = await self._queue.get()
            try:
                await self._send(message)
            except Exception as e:  # the carrier is gone; the session ends through its transport
                logger.debug("Client outbox: send failed: {}", e)
            finally:
                self._queue.task_done()
