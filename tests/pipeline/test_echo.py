"""Echo detection: a reply that says the user's words back, told apart from one that answers."""

import pytest

from voxline.pipeline.echo import EchoGuard, Verdict, echoed_sentences, is_echo


@pytest.mark.parametrize(("user", "reply"), [
    ("My daughter starts school tomorrow.", "Your daughter starts school tomorrow!"),
    ("Set a timer for ten minutes.", "Okay, set a timer for ten minutes."),
    ("Add milk and eggs to my shopping list.",
     "Sure, I can add milk and eggs to your shopping list."),
    ("I just got home from a really long day at work.",
     "You just got home from a really long day at work."),
    ("What's the capital of France?", "What's the capital of France?"),
    ("We adopted a puppy. He chewed one of my shoes this morning.",
     "He chewed one of your shoes this morning."),
])
def test_words_said_back_are_an_echo(user, reply):
    assert is_echo(reply, user)


@pytest.mark.parametrize(("user", "reply"), [
    ("What's the capital of France?", "The capital of France is Paris."),  # restated answer
    ("My daughter starts school tomorrow.", "That's exciting! Is she looking forward to it?"),
    ("Set a timer for ten minutes.", "I can't set timers, but I can keep you company."),
    ("Thanks.", "Thanks!"),  # too short to count
    ("Good morning!", "Good morning! How are you today?"),
])
def test_answers_are_not_echoes(user, reply):
    assert not is_echo(reply, user)


def test_a_whole_reply_is_scored_sentence_by_sentence():
    user = "I planted tomatoes in the garden this morning."
    reply = "How lovely! You planted tomatoes in the garden this morning. Which kind?"
    assert echoed_sentences(reply, user) == ["You planted tomatoes in the garden this morning."]


def _feed_words(guard: EchoGuard, reply: str) -> list[Verdict]:
    words = reply.split(" ")
    return [guard.feed(w if i == 0 else " " + w) for i, w in enumerate(words)]


@pytest.mark.parametrize(("user", "reply", "released_after"), [
    ("My daughter starts school tomorrow.", "That's exciting! Is she ready?", 1),
    ("I just got home from a really long day at work.", "Welcome home! How was it?", 1),
    ("What's the capital of France?", "The capital of France is Paris.", 1),
    ("What's the capital of France?", "Paris is the capital.", 1),
    ("My daughter starts school tomorrow.", "Your kids grow up fast.", 2),  # a person: 2 words
    ("Set a timer for ten minutes.", "Sure, I can't set timers yet.", 3),  # lead-in skipped
])
def test_an_answer_is_released_within_its_first_words(user, reply, released_after):
    """The guard costs no latency on most answers, a token on a few: it holds only while the
    opening may still match the user's words."""
    verdicts = _feed_words(EchoGuard(user), reply)
    assert Verdict.PASS in verdicts, verdicts
    assert verdicts.index(Verdict.PASS) + 1 <= released_after, verdicts


def test_an_echo_is_held_to_its_sentence_end_then_caught():
    guard = EchoGuard("My daughter starts school tomorrow.")
    verdicts = _feed_words(guard, "Your daughter starts school tomorrow! She")
    assert Verdict.PASS not in verdicts
    assert verdicts[-1] is Verdict.ECHO
    assert guard.held.startswith("Your daughter starts school tomorrow!")


def test_a_short_reply_held_to_the_end_is_decided_by_finish():
    guard = EchoGuard("Set a timer for ten minutes.")
    assert set(_feed_words(guard, "Set a timer for ten minutes")) == {Verdict.HOLD}
    assert guard.finish() is Verdict.ECHO
    other = EchoGuard("Set a timer for ten minutes.")
    _feed_words(other, "Set")
    assert other.finish() is Verdict.PASS
    assert other.held == "Set"


def test_nothing_is_held_after_a_short_user_turn():
    guard = EchoGuard("Thank you!")
    assert guard.feed("Thank") is Verdict.PASS


def test_half_a_word_is_held_while_it_may_begin_a_repeat():
    guard = EchoGuard("Set a timer for ten minutes.")
    assert guard.feed("Se") is Verdict.HOLD  # "Set ..." or "Sure, ..."
    assert guard.feed("t") is Verdict.HOLD
    assert guard.feed(" a timer for ten minutes.") is Verdict.ECHO
    other = EchoGuard("Set a timer for ten minutes.")
    assert other.feed("Unfortunately") is Verdict.PASS
