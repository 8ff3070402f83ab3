"""Writes one spoken reply with the local LLM: the style's sampling, and no echo spoken.

A plain generator, run on the LLM's caller thread: the pipecat service (`pipeline/llm.py`)
and the reply-quality bench (`bench/replies.py`) write replies the same way.
"""

import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace

from voxline.models.llama import LlamaEngine
from voxline.models.llama_request import Pace, Penalties
from voxline.models.prompt import last_user_words, nudged
from voxline.pipeline.echo import EchoGuard, Verdict, is_question, sentences


@dataclass(frozen=True)
class ReplyStyle:
    """How replies are written (from `llm.*` and `agent.*` settings)."""

    max_tokens: int
    temperature: float
    repeat_penalty: float = 1.0  # on tokens of the user's last words and the reply so far
    presence_penalty: float = 0.0
    echo_guard: bool = True
    echo_fallback: str = "I see."  # spoken when the second try says the words back too


@dataclass(frozen=True)
class EchoCaught:
    """An opening that said the user's words back: not spoken, written again (`attempt` 1)
    or replaced by the fallback (`attempt` 2)."""

    text: str
    attempt: int


def write_reply(
    engine: LlamaEngine, messages: list[dict], *, style: ReplyStyle, stop: threading.Event,
    session_key: str | None = None, pace: Pace | None = None,
) -> Iterator[str | EchoCaught]:
    """The reply's text pieces as they may be spoken, with an `EchoCaught` for each opening
    the echo guard kept back. Blocking: iterate on `engine.executor`."""
    user_text = last_user_words(messages)
    penalties = _penalties(engine, style, user_text)
    for attempt in (1, 2):
        prompt = messages if attempt == 1 else nudged(messages)
        stream = engine.stream_chat(
            prompt, max_tokens=style.max_tokens, temperature=style.temperature, stop=stop,
            session_key=session_key, pace=pace, penalties=penalties)
        guard = EchoGuard(user_text) if style.echo_guard and user_text else None
        for piece in stream:
            if guard is None or guard.verdict is Verdict.PASS:
                yield piece
            elif (verdict := guard.feed(piece)) is Verdict.PASS:
                yield guard.held
            elif verdict is Verdict.ECHO:
                stream.close()
                break
        if guard is None or guard.verdict is Verdict.PASS or stop.is_set():
            return
        if guard.verdict is Verdict.HOLD and guard.finish() is Verdict.PASS:
            if guard.held:  # a short reply, held to its end
                yield guard.held
            return
        yield EchoCaught(text=guard.held, attempt=attempt)
        # The second try may not open with the first one's first token ("Your" of "Your
        # daughter starts school..."): the nudge alone was often not enough for a small model.
        if stream.first_token is not None:
            penalties = replace(penalties or Penalties(), banned_opening=(stream.first_token,))
    yield style.echo_fallback


def _penalties(engine: LlamaEngine, style: ReplyStyle, user_text: str) -> Penalties | None:
    """The style's penalties over the user's statements: not over a question's words, which
    a right answer often repeats ("At what temperature does water boil?" -> "Water boils
    at..."); penalizing them cost a quarter of the factual answers in the reply bench."""
    if style.repeat_penalty == 1.0 and style.presence_penalty == 0.0:
        return None
    said = " ".join(s for s in sentences(user_text) if not is_question(s))
    return Penalties(repeat=style.repeat_penalty, presence=style.presence_penalty,
                     history=tuple(engine.tokenize_text(said)) if said else ())
