"""The LLM's prompt: the system prompt, the persona's example exchanges, the conversation."""

Examples = tuple[tuple[str, str], ...]
# Appended to the user's words when an echo is written again: it names the failure in plain
# words, and changes the prompt only after the cached history.
ECHO_NUDGE = "\n\n(Reply to what I said in your own words. Do not repeat my words back.)"


def example_messages(examples: Examples) -> list[dict]:
    """The example exchanges as chat messages: a user line, then the reply it deserves.

    They stand between the system prompt and the conversation in every prompt, so they are
    part of the prefix the KV cache keeps; they are not in the session's context, so the
    history window never drops them and no transcript shows them."""
    messages = []
    for user, assistant in examples:
        messages += [{"role": "user", "content": user},
                     {"role": "assistant", "content": assistant}]
    return messages


def prompt_messages(system_prompt: str, examples: Examples, history: list[dict]) -> list[dict]:
    """The whole prompt: system prompt, examples, then `history` (user/assistant messages)."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*system, *example_messages(examples), *history]


def with_examples(messages: list[dict], examples: Examples) -> list[dict]:
    """`messages` (leading system messages, then the conversation) with the examples put in
    after the system messages."""
    head = 0
    while head < len(messages) and messages[head].get("role") == "system":
        head += 1
    return [*messages[:head], *example_messages(examples), *messages[head:]]


def last_user_words(messages: list[dict]) -> str:
    """The text of the last user message ("" if none, or not plain text)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else ""
    return ""


def nudged(messages: list[dict]) -> list[dict]:
    """A copy of `messages` with `ECHO_NUDGE` after the last user message's words."""
    copy = [dict(m) for m in messages]
    for message in reversed(copy):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            message["content"] += ECHO_NUDGE
            break
    return copy
