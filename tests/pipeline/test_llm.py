"""LlamaCppLLMService on the real SmolLM2 model: streams tokens, stops on interruption."""

import asyncio
import time

from pipecat.frames.frames import (
    InterruptionFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.tests.utils import SleepFrame, run_test

from voxline.pipeline.llm import LlamaCppLLMService


def _service(models, max_tokens=40):
    return LlamaCppLLMService(
        engine=models.llm, system_instruction="You are a helpful assistant.",
        max_tokens=max_tokens, temperature=0.0,
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
