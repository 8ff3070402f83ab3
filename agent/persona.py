"""Who the bot is: its system prompt and optional greeting."""

from dataclasses import dataclass

MAX_SYSTEM_PROMPT_CHARS = 4000


@dataclass(frozen=True)
class Persona:
    """The instructions a session starts from."""

    system_prompt: str
    greeting: str | None = None

    def with_overrides(self, *, system_prompt: str | None, greeting: str | None) -> "Persona":
        """A copy with a client's per-session choices applied (already length-checked)."""
        return Persona(
            system_prompt=system_prompt or self.system_prompt,
            greeting=greeting if greeting is not None else self.greeting,
        )
