"""Keeps each session's conversation history bounded before it reaches the LLM."""

from pipecat.frames.frames import Frame, LLMContextFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor


def trim_messages(messages: list, max_messages: int) -> list:
    """Past `max_messages`, keep leading system messages plus the newest half, from a user turn.

    Cutting to half rather than to the limit means the history's start changes only every
    `max_messages / 2` turns: in between, llama.cpp reuses the KV cache of the whole previous
    prompt (a cut changes the prefix and costs a full re-evaluation, ~2 s on 2 cores).
    Starting at a user message keeps chat templates valid (they expect user/assistant pairs).
    """
    head = 0
    while head < len(messages) and _role(messages[head]) == "system":
        head += 1
    system, rest = messages[:head], messages[head:]
    if len(rest) <= max_messages:
        return messages
    window = rest[-max(2, max_messages // 2):]
    while window and _role(window[0]) != "user":
        window = window[1:]
    return system + window


def _role(message) -> str | None:
    return message.get("role") if isinstance(message, dict) else getattr(message, "role", None)


class ContextWindowProcessor(FrameProcessor):
    """Trims the shared context in place on every `LLMContextFrame`, so it stays bounded."""

    def __init__(self, *, max_messages: int, **kwargs):
        super().__init__(**kwargs)
        self._max_messages = max_messages

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        """Trim, then pass the frame on."""
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            messages = frame.context.get_messages()
            trimmed = trim_messages(messages, self._max_messages)
            if len(trimmed) != len(messages):
                frame.context.set_messages(trimmed)
        await self.push_frame(frame, direction)
