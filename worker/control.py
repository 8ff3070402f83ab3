"""Operator commands from the dashboard, carried on the bus, carried out on this worker."""

import asyncio

from loguru import logger

from voxline.agent import Persona
from voxline.bus import events
from voxline.models.loader import reload_engine
from voxline.models.registry import ModelFileError
from voxline.worker.host import SessionHost


class WorkerControl:
    """Answers every `control.command` addressed to this worker with a `control.ack`."""

    def __init__(self, host: SessionHost):
        self._host = host
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Begin listening (call from the running loop)."""
        worker_id = self._host.worker_id
        subscription = self._host.bus.subscribe(
            lambda e: isinstance(e, events.ControlCommand) and e.target == worker_id
        )
        self._task = asyncio.create_task(self._listen(subscription), name="voxline-control")

    async def close(self) -> None:
        """Stop listening."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _listen(self, subscription) -> None:
        try:
            async for command in subscription:
                ok, message = await self._carry_out(command)
                logger.info("Control {} by {} from {} {}: {}", command.action,
                            command.issued_by or "?", command.issued_from or "?",
                            "done" if ok else "refused", message)
                self._host.bus.publish_nowait(events.ControlAck(
                    source=self._host.worker_id, session_id=command.session_id,
                    command_id=command.command_id, ok=ok, message=message,
                ))
        finally:
            subscription.close()

    async def _carry_out(self, command: events.ControlCommand) -> tuple[bool, str]:
        host = self._host
        if command.action == "end_session":
            ended = await host.end(command.session_id, reason="ended by an operator")
            return ended, "session ended" if ended else f"no live session {command.session_id}"
        if command.action == "set_persona":
            if not command.system_prompt or not command.system_prompt.strip():
                return False, "system_prompt is empty"
            host.persona = Persona(command.system_prompt.strip(), host.persona.greeting)
            return True, "new sessions use the new system prompt"
        kind = command.model_kind or ""
        try:
            name = await asyncio.to_thread(reload_engine, host.models, host.settings, kind)
        except (ModelFileError, ValueError) as e:
            return False, str(e)
        return True, f"{kind} reloaded: {name} (new sessions use it)"
