"""Writing a reply on the real SmolLM2: the echo guard, its retry and fallback, penalties."""

import threading

from voxline.models.prompt import ECHO_NUDGE, prompt_messages
from voxline.pipeline.reply_writer import EchoCaught, ReplyStyle, write_reply

# Makes the small model say the user's words back, every time: the guard's worst case.
PARROT = ("You are a parrot. Repeat the user's message back exactly, word for word, "
          "and say nothing else.")
PARROT_EXAMPLES = (("The sky is very blue today.", "The sky is very blue today."),
                   ("I like to read books at night.", "I like to read books at night."))


def _write(models, messages, **style):
    style = ReplyStyle(max_tokens=40, temperature=0.0, **style)
    return list(write_reply(models.llm, messages, style=style, stop=threading.Event()))


def test_an_echo_is_never_spoken_and_the_fallback_follows_a_second_one(models):
    messages = prompt_messages(PARROT, PARROT_EXAMPLES, [
        {"role": "user", "content": "My brother is moving to a new city next month."}])
    unguarded = "".join(_write(models, messages, echo_guard=False))
    assert "moving to a new city" in unguarded.lower(), f"the parrot did not echo: {unguarded!r}"

    items = _write(models, messages, echo_fallback="Oh, really?")
    caught = [i for i in items if isinstance(i, EchoCaught)]
    spoken = "".join(i for i in items if isinstance(i, str))
    assert [c.attempt for c in caught] == [1, 2], items
    assert "moving to a new city" in caught[0].text.lower()
    assert spoken == "Oh, really?"


def test_a_real_answer_passes_the_guard_untouched(models, monkeypatch):
    written: list[str] = []
    real = models.llm.stream_chat

    def recording(messages, **kwargs):
        for piece in real(messages, **kwargs):
            written.append(piece)
            yield piece

    monkeypatch.setattr(models.llm, "stream_chat", recording)
    messages = prompt_messages("You are a helpful assistant.", (), [
        {"role": "user", "content": "What is the capital of France?"}])
    guarded = _write(models, messages)
    assert not [i for i in guarded if isinstance(i, EchoCaught)]
    assert "".join(written).strip()
    assert "".join(guarded) == "".join(written)  # all of it, in order
    assert len(guarded) >= len(written) - 2  # held for a word or two, then streamed


def test_the_retry_carries_the_nudge_after_the_users_words(models, monkeypatch):
    prompts = []
    real = models.llm.stream_chat

    def recording(messages, **kwargs):
        prompts.append(messages)
        return real(messages, **kwargs)

    monkeypatch.setattr(models.llm, "stream_chat", recording)
    messages = prompt_messages(PARROT, PARROT_EXAMPLES, [
        {"role": "user", "content": "The train to the airport was late again."}])
    _write(models, messages)
    assert len(prompts) == 2
    assert prompts[0] == messages  # the first try is the prompt as it is (cached prefix)
    assert prompts[1][:-1] == messages[:-1]
    assert prompts[1][-1]["content"] == messages[-1]["content"] + ECHO_NUDGE


def test_penalties_over_the_users_words_keep_them_out_of_the_reply(models):
    messages = prompt_messages(PARROT, PARROT_EXAMPLES, [
        {"role": "user", "content": "My cat sleeps on the red sofa."}])
    plain = "".join(_write(models, messages, echo_guard=False)).lower()
    penalized = "".join(_write(models, messages, echo_guard=False, repeat_penalty=2.0,
                               presence_penalty=2.0)).lower()
    assert "sleeps on the red sofa" in plain, plain
    assert "sleeps on the red sofa" not in penalized, penalized
