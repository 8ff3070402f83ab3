"""Telling a reply that repeats the user's words back from one that answers them.

Small models, told something that is not a question, often say it back ("My daughter starts
school tomorrow." -> "Your daughter starts school tomorrow!"). Words are compared after light
normalisation (case, punctuation, person, simple suffixes), sentence against sentence, so a
question restated in its answer ("What's the capital of France?" -> "The capital of France is
Paris.") is not an echo: its kind of sentence differs.
"""

import re
from difflib import SequenceMatcher
from enum import Enum

ECHO_SIMILARITY = 0.7  # word-sequence similarity of two sentences that makes one an echo
MIN_ECHO_WORDS = 3  # shorter user sentences ("Thanks.", "Good morning!") may be said back
HOLD_SIMILARITY = 0.6  # share of an opening's words found, in order, in the user's words
HOLD_SKIPPED_WORDS = 2  # "I'm moving" says back "My brother is moving": words may drop out
HOLD_FREE_WORDS = 1  # until a second word begins, the first may still be growing
MAX_COMPARED_WORDS = 16  # an echo shows in a sentence's first words

# The person flips, or slips, when words are said back ("my" -> "your", "we" -> "she"):
# all count as one word.
_PERSON = {"i", "me", "my", "mine", "myself", "you", "your", "yours", "yourself", "we",
           "us", "our", "ours", "i'm", "you're", "we're", "i've", "you've", "i'll", "you'll",
           "am", "are", "he", "she", "they", "him", "her", "his", "them", "their"}
# Said ahead of a repeat ("Okay, set a timer..."): skipped before comparing.
_LEAD_INS = {"okay", "ok", "sure", "alright", "right", "yes", "yeah", "oh", "so", "well",
             "great", "got", "it", "absolutely", "certainly", "of", "course"}
_MAX_LEAD_IN = 2
# "Sure, I can add milk to your list": a promise that says the instruction back.
_MODALS = {"can", "will", "would", "could", "shall"}
_SENTENCE = re.compile(r"[^.!?]+[.!?]*")
_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    """`text` as comparable words: lower case, no punctuation, one word for every person,
    plural and tense endings dropped."""
    return [_stem(w) for w in _WORD.findall(text.lower().replace("\u2019", "'"))]


def _stem(word: str) -> str:
    if word in _PERSON:
        return "@"
    word = word.strip("'")
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def sentences(text: str) -> list[str]:
    """`text` cut after each . ! or ? (a line break also ends one)."""
    return [s.strip() for line in text.splitlines() for s in _SENTENCE.findall(line)
            if s.strip()]


def is_question(sentence: str) -> bool:
    """True for a sentence that asks (ends in "?")."""
    return sentence.rstrip().endswith("?")


def _without_lead_in(reply_words: list[str]) -> list[str]:
    n = 0
    while n < _MAX_LEAD_IN and n < len(reply_words) and reply_words[n] in _LEAD_INS:
        n += 1
    if reply_words[n: n + 1] == ["@"] and reply_words[n + 1: n + 2] and \
            reply_words[n + 1] in _MODALS:
        n += 2
    return reply_words[n:]


def similarity(a: list[str], b: list[str]) -> float:
    """How alike two word sequences are, 0 to 1 (difflib's ratio over words)."""
    if not a or not b:
        return 0.0
    return SequenceMatcher(None, a, b, autojunk=False).ratio()


def _share(said: list[str], heard: list[str]) -> float:
    """The share of `said` found in `heard`, in order."""
    blocks = SequenceMatcher(None, said, heard, autojunk=False).get_matching_blocks()
    return sum(block.size for block in blocks) / len(said)


def is_echo(reply_sentence: str, user_text: str) -> bool:
    """True when `reply_sentence` says one of the user's sentences (of at least
    `MIN_ECHO_WORDS` words) back: nearly the same words, and the same kind of sentence."""
    said = _without_lead_in(words(reply_sentence))[:MAX_COMPARED_WORDS]
    for sentence in sentences(user_text):
        heard = words(sentence)[:MAX_COMPARED_WORDS]
        if len(heard) < MIN_ECHO_WORDS or is_question(sentence) != is_question(reply_sentence):
            continue
        if similarity(said, heard) >= ECHO_SIMILARITY:
            return True
    return False


def echoed_sentences(reply: str, user_text: str) -> list[str]:
    """The sentences of a whole reply that say the user's words back (the bench's measure)."""
    return [s for s in sentences(reply) if is_echo(s, user_text)]


class Verdict(Enum):
    """What to do with a reply's text so far."""

    HOLD = "hold"  # it may still turn out to be an echo: do not speak it yet
    PASS = "pass"  # not an echo: speak what was held and all that follows
    ECHO = "echo"  # its opening sentence says the user's words back: speak none of it


class EchoGuard:
    """Watches the opening sentence of one reply as it is written.

    Text is held only while the opening still matches the start of one of the user's
    sentences (the same first word, then mostly the same words), so a reply that answers is
    released at its first word, or its second when the first could begin a repeat ("I ...",
    "Okay, ..."). The verdict on an opening that keeps matching comes at its sentence end (or
    the reply's end).
    """

    def __init__(self, user_text: str):
        self._user_text = user_text
        long_enough = [(s, w) for s in sentences(user_text)
                       if len(w := words(s)) >= MIN_ECHO_WORDS]
        self._heard = [w for _, w in long_enough]
        # First words that may begin a repeat: the user's sentences' own, any person if one of
        # them begins with one ("I"/"My" said back as "You"/"Your"), "I" ("I can ...") and the
        # lead-ins skipped before comparing (a token may hold half of one).
        self._first_words = {_WORD.findall(s.lower())[0] for s, _ in long_enough}
        self._openers = self._first_words | {"i"} | _LEAD_INS
        if any(heard[0] == "@" for heard in self._heard):
            self._openers |= _PERSON
        self._text = ""
        self.verdict = Verdict.HOLD if self._heard else Verdict.PASS

    @property
    def held(self) -> str:
        """The text seen so far (what was held back, once the verdict is PASS)."""
        return self._text

    def feed(self, piece: str) -> Verdict:
        """Take the next piece of the reply and return the verdict so far."""
        if self.verdict is not Verdict.HOLD:
            return self.verdict
        self._text += piece
        first = sentences(self._text)
        is_complete = bool(first) and (len(first) > 1 or first[0][-1] in ".!?"
                                       or "\n" in self._text.strip())
        if is_complete:
            return self._decide(first[0])
        said = _without_lead_in(words(self._text))
        if len(said) <= HOLD_FREE_WORDS:
            if said and not self._may_open_an_echo(_WORD.findall(self._text.lower())[-1]):
                self.verdict = Verdict.PASS
            return self.verdict
        n = min(len(said), MAX_COMPARED_WORDS)
        if not any(said[0] == heard[0] and _share(said[:n], heard[:n + HOLD_SKIPPED_WORDS])
                   >= HOLD_SIMILARITY for heard in self._heard):
            self.verdict = Verdict.PASS
        return self.verdict

    def _may_open_an_echo(self, word: str) -> bool:
        """Whether an opening's first word, perhaps not written to its end yet, can begin a
        repeat of the user's words: most answers ("The capital...", "That's great") are
        released at their first token."""
        return any(opener.startswith(word) for opener in self._openers) or any(
            len(first) > 1 and word.startswith(first) for first in self._first_words)  # "Going"

    def finish(self) -> Verdict:
        """The reply ended: decide on what was held."""
        if self.verdict is Verdict.HOLD:
            return self._decide(self._text)
        return self.verdict

    def _decide(self, opening: str) -> Verdict:
        self.verdict = Verdict.ECHO if is_echo(opening, self._user_text) else Verdict.PASS
        return self.verdict
