"""History stays bounded, keeps the system prompt and starts at a user turn."""

from pipecat.frames.frames import LLMContextFrame
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.tests.utils import run_test

from voxline.pipeline.context_window import ContextWindowProcessor, trim_messages


def _turns(n: int) -> list[dict]:
    out = []
    for i in range(n):
        out += [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]
    return out


def test_short_history_is_untouched():
    messages = [{"role": "system", "content": "s"}, *_turns(2)]
    assert trim_messages(messages, 10) == messages


def test_long_history_keeps_system_and_newest_half_starting_with_user():
    messages = [{"role": "system", "content": "s"}, *_turns(10)]
    trimmed = trim_messages(messages, 8)
    assert trimmed[0]["role"] == "system"
    assert trimmed[1] == {"role": "user", "content": "q8"}
    assert trimmed[-1] == {"role": "assistant", "content": "a9"}
    assert len(trimmed) == 1 + 4


def test_history_start_moves_only_every_half_window():
    """Regression: trimming to the limit every turn changed the prompt's start each turn, so
    llama.cpp re-evaluated the whole history (2+ s) from the 7th turn on."""
    history: list = []
    starts = []
    for turn in range(20):
        history = trim_messages([*history, *_turns(1)], 12)
        history[-2:] = [{"role": "user", "content": f"q{turn}"},
                        {"role": "assistant", "content": f"a{turn}"}]
        starts.append(history[0]["content"])
    assert len(set(starts)) <= 5, starts  # the start changed a few times, not every turn


async def test_processor_trims_the_shared_context_in_place():
    context = LLMContext(messages=_turns(20))
    down, _ = await run_test(
        ContextWindowProcessor(max_messages=6), frames_to_send=[LLMContextFrame(context)]
    )
    assert [f for f in down if isinstance(f, LLMContextFrame)]
    assert [m["content"] for m in context.get_messages()] == ["q19", "a19"]
