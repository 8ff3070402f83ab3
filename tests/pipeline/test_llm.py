"""LlamaCppLLMService on the real SmolLM2 model: streams tokens, stops on interruption."""

import asyncio
import threading
import time

import pytest
from pipecat.frames.frames import (
    InterruptionFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.tests.utils import SleepFrame, run_test

from voxline.pipeline.llm import LlamaCppLLMService, as_written
from voxline.pipeline.reply_writer import ReplyStyle
from voxline.pipeline.text_aggregation import FirstClauseAggregator


def _service(models, max_tokens=40):
    return LlamaCppLLMService(
        engine=models.llm, system_instruction="You are a helpful assistant.",
        style=ReplyStyle(max_tokens=max_tokens, temperature=0.0),
    )


def _ask(question: str) -> LLMContextFrame:
    return LLMContextFrame(LLMContext(messages=[{"role": "user", "content": question}]))


async def test_reply_streams_as_several_text_frames(models):
    down, _ = await run_test(
        _service(models), frames_to_send=[_ask("What is the capital of France?")]
    )
    texts = [f.text for f in down if isinstance(f, LLMTextFrame)]
    reply = [f for f in down if isinstance(f, LLMTextFrame | LLMFullResponseStartFrame
                                           | LLMFullResponseEndFrame)]
    assert isinstance(reply[0], LLMFullResponseStartFrame)
    assert isinstance(reply[-1], LLMFullResponseEndFrame)
    assert len(texts) > 3, "tokens should stream one by one, not as one block"
    assert {"paris", "france"} & set("".join(texts).lower().replace(",", " ").split())


async def test_interruption_stops_generation_and_no_later_tokens(models):
    started = time.perf_counter()
    down, _ = await run_test(
        _service(models, max_tokens=400),
        frames_to_send=[
            _ask("Write a long story about a dragon who learns to cook, in many paragraphs."),
            SleepFrame(sleep=0.4),
            InterruptionFrame(),
            SleepFrame(sleep=0.3),
        ],
    )
    cut = next(i for i, f in enumerate(down) if isinstance(f, InterruptionFrame))
    before = [f for f in down[:cut] if isinstance(f, LLMTextFrame)]
    after = [f for f in down[cut:] if isinstance(f, LLMTextFrame)]
    assert before, "some tokens should stream before the interruption"
    assert not after, f"{len(after)} tokens of the cancelled reply leaked past the interruption"
    # The worker thread must be free again almost at once (it checks the stop flag per token).
    loop = asyncio.get_running_loop()
    probe = time.perf_counter()
    await loop.run_in_executor(models.llm.executor, lambda: None)
    assert time.perf_counter() - probe < 0.3, "generation kept running after the interruption"
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize(("spoken", "written", "expected"), [
    ("Sure, here: - Dune - Emma", "Sure, here:\n\n- Dune\n- Emma\n",
     "Sure, here:\n\n- Dune\n- Emma\n"),
    ("Sure, here: - Dune", "Sure, here:\n\n- Dune\n- Emma", "Sure, here:\n\n- Dune"),  # cut off
    ('Certainly! " The Catcher"', 'Certainly! "The Catcher"', 'Certainly! "The Catcher"'),
    ("Hello there.", " Hello there.", " Hello there."),
    ("Something else.", "Hello there.", None),
    ("Hello there. And more", "Hello there.", None),  # longer than what was written
])
def test_a_spoken_reply_maps_back_to_its_written_form(spoken, written, expected):
    assert as_written(spoken, written) == expected


async def test_a_list_reply_stays_in_the_kv_cache_for_the_next_turn(models):
    """Regression: the context holds a reply as spoken (line breaks lost), so after a list the
    next turn evaluated the whole reply again (a first token 1.1 s late)."""
    service = _service(models, max_tokens=60)
    question = "Give me a bulleted list of three fruits, one per line."
    context = LLMContext(messages=[{"role": "user", "content": question}])
    down, _ = await run_test(service, frames_to_send=[LLMContextFrame(context)])
    written = "".join(f.text for f in down if isinstance(f, LLMTextFrame))
    assert "\n" in written.strip(), f"the model wrote no list: {written!r}"
    aggregator = FirstClauseAggregator()  # as the TTS cuts it; the context joins by spaces
    pieces = [a.text async for a in aggregator.aggregate(written)]
    if tail := await aggregator.flush():
        pieces.append(tail.text)
    spoken = " ".join(p for p in pieces if p)
    context.add_messages([{"role": "assistant", "content": spoken},
                          {"role": "user", "content": "Thanks. Which one is red?"}])

    messages = await service._messages(context)
    assert messages[-2]["content"] == written
    engine = models.llm
    stream = engine.stream_chat(messages, max_tokens=5, temperature=0.0,
                                stop=threading.Event(), session_key=service._session_key)
    assert "".join(stream)
    tail = len(engine.tokenize_chat(messages)) - len(engine.tokenize_chat(messages[:-1]))
    assert stream.prompt_tokens_evaluated <= tail + 8, (
        f"evaluated {stream.prompt_tokens_evaluated} of {stream.prompt_tokens} prompt tokens; "
        f"only the new {tail} or so should be")


async def test_example_exchanges_reach_the_model_but_not_the_conversation(models):
    service = LlamaCppLLMService(
        engine=models.llm, system_instruction="You are a helpful assistant.",
        style=ReplyStyle(max_tokens=20, temperature=0.0),
        examples=(("What is the password?", "The password is zebra."),),
    )
    context = LLMContext(messages=[{"role": "user", "content": "What is the password?"}])
    down, _ = await run_test(service, frames_to_send=[LLMContextFrame(context)])
    reply = "".join(f.text for f in down if isinstance(f, LLMTextFrame))
    assert "zebra" in reply.lower(), reply  # learned from the example, not from the context
    assert "zebra" not in str(context.get_messages())
    prompt = await service._messages(context)
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user"]
    assert prompt[2]["content"] == "The password is zebra."
