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


def test_long_history_keeps_system_and_newest_starting_with_user():
    messages = [{"role": "system", "content": "s"}, *_turns(10)]
    trimmed = trim_messages(messages, 5)
    assert trimmed[0]["role"] == "system"
    assert trimmed[1] == {"role": "user", "content": "q8"}
    assert trimmed[-1] == {"role": "assistant", "content": "a9"}
    assert len(trimmed) == 1 + 4


async def test_processor_trims_the_shared_context_in_place():
    context = LLMContext(messages=_turns(20))
    down, _ = await run_test(
        ContextWindowProcessor(max_messages=6), frames_to_send=[LLMContextFrame(context)]
    )
    assert [f for f in down if isinstance(f, LLMContextFrame)]
    assert len(context.get_messages()) == 6
    assert context.get_messages()[0]["content"] == "q17"
