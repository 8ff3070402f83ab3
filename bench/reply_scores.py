"""Scores a reply as a listener would: said back, right, short enough, plain speech."""

import re
from dataclasses import dataclass

from voxline.pipeline.echo import echoed_sentences, sentences

MAX_SPOKEN_SENTENCES = 2  # unless the user asked for more
# Read aloud, these come out as symbols or noise: list markers, markdown, code, emojis.
_FORMATTING = re.compile(
    r"(^\s*([-*•]|\d+[.)])\s)|(\*\*|__|`|^#+\s|\[[^\]]*\]\([^)]*\))"
    r"|[\U0001F300-\U0001FAFF\u2600-\u27BF\U0001F000-\U0001F2FF]",
    re.MULTILINE,
)
_WORD = re.compile(r"[A-Za-z0-9']+")


@dataclass(frozen=True)
class ReplyScore:
    """One reply's scores (what the bench's JSON keeps per turn)."""

    words: int
    sentences: int
    is_echo: bool
    is_formatted: bool
    is_too_long: bool  # over MAX_SPOKEN_SENTENCES where the user did not ask for more
    is_right: bool | None  # None: the turn has no known answer


def score_reply(reply: str, user: str, *, kind: str, answer: list[str] | None) -> ReplyScore:
    """Score `reply` to `user`; `kind` "more" allows a longer reply, `answer` lists the
    words any one of which makes a factual reply right."""
    n_sentences = len(sentences(reply))
    return ReplyScore(
        words=len(_WORD.findall(reply)),
        sentences=n_sentences,
        is_echo=bool(echoed_sentences(reply, user)),
        is_formatted=bool(_FORMATTING.search(reply)),
        is_too_long=kind != "more" and n_sentences > MAX_SPOKEN_SENTENCES,
        is_right=None if not answer else _mentions_any(reply, answer),
    )


def _mentions_any(reply: str, answers: list[str]) -> bool:
    text = " " + " ".join(_WORD.findall(reply.lower())) + " "
    return any(f" {a.lower()} " in text for a in answers)
