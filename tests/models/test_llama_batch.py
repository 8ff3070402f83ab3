"""The batched llama.cpp engine on the real SmolLM2 model: concurrent replies, unchanged greedy
output, prefix reuse between turns, stop, eviction and errors that reach the caller."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import make_settings
from voxline.models import catalog
from voxline.models.llama import LlamaEngine
from voxline.models.registry import ModelRegistry

SYSTEM = {"role": "system", "content": "You are a helpful assistant. Answer in one sentence."}
SLOTS = 3


@pytest.fixture(scope="module")
def engine():
    settings = make_settings()
    path = ModelRegistry(settings.models.cache_dir).path_of(catalog.SMOLLM2_135M)
    loaded = LlamaEngine(model_path=path, n_ctx=768, n_threads=2, slots=SLOTS)
    loaded.warm_up([SYSTEM])
    yield loaded
    loaded.close()


def _ask(question: str) -> list[dict]:
    return [SYSTEM, {"role": "user", "content": question}]


def _reply(engine, messages, *, max_tokens=40, session_key=None, stop=None) -> str:
    stream = engine.stream_chat(
        messages, max_tokens=max_tokens, temperature=0.0, stop=stop or threading.Event(),
        session_key=session_key,
    )
    return "".join(stream)


def test_three_concurrent_replies_are_all_sensible(engine):
    questions = {
        "What is the capital of France?": "paris",
        "What color is the sky on a clear day?": "blue",
        "How many legs does a dog have?": "four",
    }
    with ThreadPoolExecutor(len(questions)) as pool:
        replies = list(pool.map(lambda q: _reply(engine, _ask(q)), questions))
    for (question, word), reply in zip(questions.items(), replies, strict=True):
        assert word in reply.lower().replace("4", "four"), f"{question!r} -> {reply!r}"


def test_greedy_reply_is_the_same_alone_and_batched(engine):
    """Batching must not change results: a greedy reply is computed alone, then again while
    another sequence generates in the same batches."""
    question = _ask("Name three fruits.")
    alone = _reply(engine, question)
    other_started, stop_other = threading.Event(), threading.Event()

    def other():
        stream = engine.stream_chat(
            _ask("Write a long story about a dragon."), max_tokens=200, temperature=0.0,
            stop=stop_other,
        )
        for _ in stream:
            other_started.set()
        other_started.set()

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(other)
        assert other_started.wait(10)
        batched = _reply(engine, question)
        stop_other.set()
        running.result()
    assert batched == alone


def test_second_turn_evaluates_only_the_new_tail(engine):
    first = _ask("What is the capital of France?")
    stream = engine.stream_chat(
        first, max_tokens=30, temperature=0.0, stop=threading.Event(), session_key="alice"
    )
    answer = "".join(stream)
    second = [*first, {"role": "assistant", "content": answer},
              {"role": "user", "content": "And of Italy?"}]
    stream = engine.stream_chat(
        second, max_tokens=30, temperature=0.0, stop=threading.Event(), session_key="alice"
    )
    assert "".join(stream)
    tail = len(engine.tokenize_chat(second)) - len(engine.tokenize_chat(first))
    assert stream.prompt_tokens_evaluated <= tail + 2, (
        f"evaluated {stream.prompt_tokens_evaluated} of {stream.prompt_tokens} prompt tokens; "
        f"only the new {tail} should be"
    )
    assert stream.prompt_tokens_evaluated < stream.prompt_tokens / 2


def test_dropping_old_turns_shifts_the_cache_instead_of_evaluating_again(engine):
    """The history window drops the oldest turns (pipeline/context_window.py): what remains is
    still in KV, shifted into place; only the new question is evaluated."""
    turns = [("What is the capital of France?", "The capital of France is Paris."),
             ("And of Italy?", "The capital of Italy is Rome."),
             ("And of Spain?", "The capital of Spain is Madrid.")]
    history = [SYSTEM]
    for question, answer in turns:
        history += [{"role": "user", "content": question},
                    {"role": "assistant", "content": answer}]
    _reply(engine, [*history, {"role": "user", "content": "And of Germany?"}],
           session_key="bob")
    # The next prompt without the first exchange, as the window trims it.
    trimmed = [SYSTEM, *history[3:], {"role": "user", "content": "And of Portugal?"}]
    stream = engine.stream_chat(trimmed, max_tokens=20, temperature=0.0,
                                stop=threading.Event(), session_key="bob")
    reply = "".join(stream)
    assert "lisbon" in reply.lower(), reply
    assert stream.prompt_tokens_evaluated < 40, (
        f"evaluated {stream.prompt_tokens_evaluated} of {stream.prompt_tokens}")


def test_a_prefill_of_the_users_words_leaves_only_the_rest_to_evaluate(engine):
    history = [SYSTEM, {"role": "user", "content": "Hello."},
               {"role": "assistant", "content": "Hello! How can I help?"}]
    _reply(engine, [*history, {"role": "user", "content": "Hi again."}], session_key="carol")
    question = "What is the capital city of the country of France?"
    # Interims while the user speaks; the later one supersedes the earlier if both wait.
    prefills = [
        engine.prefill([*history, {"role": "user", "content": "What is the capital"}],
                       session_key="carol"),
        engine.prefill([*history, {"role": "user", "content": question[:-1]}],
                       session_key="carol"),
    ]
    for prefill in prefills:  # the scheduler evaluates them in the background: wait for it
        assert list(prefill) == []
    stream = engine.stream_chat([*history, {"role": "user", "content": question}],
                                max_tokens=20, temperature=0.0, stop=threading.Event(),
                                session_key="carol")
    assert "paris" in "".join(stream).lower()
    assert stream.prompt_tokens_evaluated <= 8, (
        f"evaluated {stream.prompt_tokens_evaluated}: the question was read while spoken")


def test_a_prefill_never_takes_another_sessions_slot(engine):
    owners = {f"busy{i}" for i in range(SLOTS)}
    for key in owners:
        _reply(engine, _ask("Say hi."), max_tokens=2, session_key=key)
    assert list(engine.prefill(_ask("What is the weather"), session_key="newcomer")) == []
    stream = engine.stream_chat(_ask("Say hi."), max_tokens=2, temperature=0.0,
                                stop=threading.Event(), session_key="busy0")
    "".join(stream)
    assert stream.prompt_tokens_evaluated <= 2, "busy0 kept its slot and its cache"


def test_characters_split_across_tokens_arrive_whole(engine):
    """An emoji is several tokens; pieces must never carry half of one, even when max_tokens
    cuts the last one."""
    pieces = list(engine.stream_chat(
        [{"role": "user", "content": "Reply with three emoji."}], max_tokens=31,
        temperature=0.0, stop=threading.Event(),
    ))
    text = "".join(pieces)
    assert any(ord(c) > 0xFFFF for c in text), f"no 4-byte character to check in {text!r}"
    assert "\ufffd" not in text, pieces


def test_stop_event_ends_the_reply_within_a_step(engine):
    stop = threading.Event()
    stream = engine.stream_chat(
        _ask("Write a long story about a dragon who learns to cook."), max_tokens=400,
        temperature=0.0, stop=stop,
    )
    pieces = [next(stream) for _ in range(3)]
    stop.set()
    stopped = time.perf_counter()
    pieces_after = list(stream)
    assert time.perf_counter() - stopped < 0.5
    assert len(pieces_after) <= 1, f"{len(pieces_after)} pieces came after the stop"
    assert "".join(pieces)


class _Pace:
    def __init__(self, is_ahead):
        self.is_ahead = is_ahead

    def is_running_short(self) -> bool:
        return False


def test_a_reply_ahead_of_playback_sits_out_and_resumes_unchanged(engine):
    """While its pace says it is ahead the reply gets no tokens, other replies still do, and once
    playback catches up it goes on: to the same greedy text as without pacing."""
    story = _ask("Write a long story about a dragon who learns to cook.")
    unpaced = _reply(engine, story, max_tokens=40)
    ahead = threading.Event()
    stream = engine.stream_chat(story, max_tokens=40, temperature=0.0, stop=threading.Event(),
                                pace=_Pace(ahead.is_set))
    pieces = [next(stream) for _ in range(5)]
    ahead.set()
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(lambda: [pieces.append(p) for p in stream])
        assert "paris" in _reply(engine, _ask("What is the capital of France?")).lower()
        count_while_ahead = len(pieces)  # a step under way when it was set has ended by now
        time.sleep(0.5)
        assert len(pieces) == count_while_ahead, "the reply went on while ahead of playback"
        ahead.clear()
        held.result(timeout=30)
    assert "".join(pieces) == unpaced


def test_pacing_yields_when_another_session_needs_a_slot(engine):
    """Every slot busy with a reply that is ahead of playback: a new session's request makes
    them finish (pacing is ignored), instead of waiting for their playback."""
    streams = [engine.stream_chat(_ask("Write a long story about a dragon."), max_tokens=30,
                                  temperature=0.0, stop=threading.Event(),
                                  session_key=f"paced{i}", pace=_Pace(lambda: True))
               for i in range(SLOTS)]
    for stream in streams:
        next(stream)  # each holds its slot, then sits out
    with ThreadPoolExecutor(SLOTS + 1) as pool:
        newcomer = pool.submit(_reply, engine, _ask("What is the capital of France?"),
                               session_key="newcomer")
        assert "paris" in newcomer.result(timeout=60).lower()
        rests = [pool.submit(list, stream) for stream in streams]
        for rest in rests:
            rest.result(timeout=30)  # each paced reply ran to its end


def test_more_sessions_than_slots_all_answer_twice(engine):
    """Five sessions on three slots: idle slots are taken over (LRU), and every turn answers."""
    keys = [f"session-{i}" for i in range(SLOTS + 2)]

    def converse(key: str) -> list[str]:
        first = _ask("What is the capital of France?")
        answer = _reply(engine, first, max_tokens=20, session_key=key)
        second = [*first, {"role": "assistant", "content": answer},
                  {"role": "user", "content": "Thank you!"}]
        return [answer, _reply(engine, second, max_tokens=20, session_key=key)]

    with ThreadPoolExecutor(len(keys)) as pool:
        conversations = list(pool.map(converse, keys))
    assert all(answer.strip() for turns in conversations for answer in turns), conversations


def test_decode_failure_reaches_the_caller_and_the_engine_goes_on(engine, monkeypatch):
    def broken_decode(batch):
        raise RuntimeError("llama_decode returned -3")

    monkeypatch.setattr(engine._ctx, "decode", broken_decode)
    with pytest.raises(RuntimeError, match="llama_decode returned -3"):
        _reply(engine, _ask("What is the capital of France?"))
    monkeypatch.undo()
    assert "paris" in _reply(engine, _ask("What is the capital of France?")).lower()


def test_a_prompt_longer_than_n_ctx_names_the_setting(engine):
    with pytest.raises(ValueError, match="VOXLINE_LLM__N_CTX"):
        engine.stream_chat(
            _ask("hello " * 1000), max_tokens=10, temperature=0.0, stop=threading.Event()
        )


def test_a_reply_that_stays_still_is_logged_once_with_the_scheduler_state(engine, monkeypatch):
    """A reply that has not moved for STALL_WARN_SECS (here held back by its pace) gets one
    warning that says what it waits on, so a stuck reply can be diagnosed from the log."""
    from loguru import logger

    from voxline.models import llama_batch

    monkeypatch.setattr(llama_batch, "STALL_WARN_SECS", 0.3)
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    stop = threading.Event()
    try:
        stream = engine.stream_chat(_ask("Write a long story about a dragon."), max_tokens=30,
                                    temperature=0.0, stop=stop, session_key="still",
                                    pace=_Pace(lambda: True))
        next(stream)  # it holds its slot, then sits out
        time.sleep(1.0)
    finally:
        stop.set()
        logger.remove(sink)
    list(stream)
    stalls = [w for w in warnings if "still for over" in w]
    assert len(stalls) == 1, warnings
    assert "session still, reply still" in stalls[0] and "[ahead]" in stalls[0], stalls[0]


def test_the_example_exchanges_are_in_every_slots_cached_prefix(engine):
    """The persona's examples come after the system prompt in every prompt: warmed up once,
    a new session's first turn evaluates only its own words."""
    examples = [{"role": "user", "content": "I just finished painting the kitchen."},
                {"role": "assistant", "content": "Nice work! What color did you pick?"}]
    engine.warm_up([SYSTEM, *examples])
    for session in ("first-turn-a", "first-turn-b"):
        messages = [SYSTEM, *examples, {"role": "user", "content": "My cat is asleep."}]
        stream = engine.stream_chat(messages, max_tokens=4, temperature=0.0,
                                    stop=threading.Event(), session_key=session)
        assert "".join(stream)
        tail = len(engine.tokenize_chat(messages)) - len(engine.tokenize_chat(messages[:-1]))
        assert stream.prompt_tokens_evaluated <= tail + 8, (
            f"evaluated {stream.prompt_tokens_evaluated} of {stream.prompt_tokens} prompt "
            f"tokens; only the user's {tail} should be")
    engine.warm_up([SYSTEM])  # as the other tests expect
