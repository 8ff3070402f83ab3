"""Scoring the turn-taking bench: what the user heard (a timeline of played bot audio, one
entry per 20 ms microphone frame), what the user said and when, and the server's events, all
on one clock (seconds since the call's first microphone frame) → per-item outcomes → rates.

Every "the bot stopped / paused / kept talking" here is read from the played audio, never
from event timing: events travel apart from the audio (docs/protocol.md).
"""

import math
from dataclasses import dataclass, field

FRAME_SECS = 0.02
# A gap in played audio this long after barge-in counts as "the bot stopped": longer than the
# pauses between Piper's sentences (≤ 0.4 s), shorter than any answer to the interruption.
STOP_HOLD_SECS = 0.8
BACKCHANNEL_MAX_SILENCE_SECS = 0.5  # the longest gap a kept-going reply may have
PAUSE_MIN_SECS = 0.3  # a silence at least this long in a reply counts as a pause
# The bot counts as talking at the user's onset if it was audible this recently.
TALKING_WITHIN_SECS = 0.6


@dataclass
class Utterance:
    """Something the user said: the clip's label and reference text, where its speech begins
    and ends on the call's clock."""

    label: str
    text: str
    onset_secs: float
    end_secs: float


@dataclass
class CallRecord:
    """One call as the user lived it."""

    played: list[bool] = field(default_factory=list)  # audible bot audio per 20 ms frame
    events: list[tuple[float, dict]] = field(default_factory=list)  # (secs, server event)
    utterances: list[Utterance] = field(default_factory=list)
    frame_secs: float = FRAME_SECS

    @property
    def duration_secs(self) -> float:
        """How long the microphone ran."""
        return len(self.played) * self.frame_secs

    def events_of(self, kind: str, start: float = 0.0, end: float = math.inf) -> list[dict]:
        """Events of type `kind` that arrived in [start, end)."""
        return [e for t, e in self.events if e.get("type") == kind and start <= t < end]

    def first_event_at(self, kind: str, start: float = 0.0) -> float | None:
        """When the first `kind` event at or after `start` arrived."""
        return next((t for t, e in self.events if e.get("type") == kind and t >= start), None)

    def index_at(self, secs: float) -> int:
        """The frame that starts at or after `secs` (clamped to the record)."""
        if secs >= self.duration_secs:
            return len(self.played)
        return max(0, math.ceil(secs / self.frame_secs - 1e-9))


def first_audible(record: CallRecord, after: float) -> float | None:
    """Start of the first audible played frame at or after `after`."""
    start = record.index_at(after)
    index = next((i for i in range(start, len(record.played)) if record.played[i]), None)
    return None if index is None else index * record.frame_secs


def last_audible(record: CallRecord, start: float, end: float = math.inf) -> float | None:
    """End of the last audible played frame that starts in [start, end)."""
    first, stop = record.index_at(start), record.index_at(end)
    index = next((i for i in range(stop - 1, first - 1, -1) if record.played[i]), None)
    return None if index is None else (index + 1) * record.frame_secs


def silences(record: CallRecord, start: float, end: float) -> list[tuple[float, float]]:
    """(start, seconds) of each silent stretch in the played audio from `start` up to the
    last audible frame before `end`: the gaps a listener heard inside a reply (silence at
    `start` counts; silence after the reply's last sound does not)."""
    stop_at = last_audible(record, start, end)
    if stop_at is None:
        return []
    runs, run_start = [], None
    for index in range(record.index_at(start), record.index_at(stop_at)):
        if not record.played[index] and run_start is None:
            run_start = index
        elif record.played[index] and run_start is not None:
            runs.append((run_start * record.frame_secs, (index - run_start) * record.frame_secs))
            run_start = None
    return runs


def is_talking_at(record: CallRecord, secs: float) -> bool:
    """Whether bot audio was heard within TALKING_WITHIN_SECS before `secs`."""
    return last_audible(record, secs - TALKING_WITHIN_SECS, secs + record.frame_secs) \
        is not None


def playback_stop(record: CallRecord, after: float, hold_secs: float = STOP_HOLD_SECS,
                  new_reply_at: float | None = None) -> float | None:
    """When the played audio stopped after `after`: the end of the last audible frame before
    the first silence of at least `hold_secs` (`after` itself if it was already silent) that
    the old reply did not resume from. Audio after a silence is the old reply resuming (a
    slow sentence, not a stop) unless it starts with the new reply, `new_reply_at` (the
    answer's turn.metrics, which comes with its first audio). None: it never stopped."""
    hold = round(hold_secs / record.frame_secs)
    silent_run = 0
    for index in range(record.index_at(after), len(record.played)):
        if record.played[index] and silent_run >= hold:
            if new_reply_at is not None and index * record.frame_secs >= new_reply_at - 0.3:
                return max(after, (index - silent_run) * record.frame_secs)
            silent_run = 0  # the old reply went on: that silence was a gap
        silent_run = 0 if record.played[index] else silent_run + 1
    if silent_run >= hold:
        return max(after, (len(record.played) - silent_run) * record.frame_secs)
    return None


def score_complete_turn(record: CallRecord, said: Utterance, end: float = math.inf) -> dict:
    """A turn the user finished, watched until `end`: answered once, only after its end?
    (mid-sentence pauses, their unpaused versions, a conversation's turns). v2v: end of
    speech → first audible bot audio."""
    early = first_audible(record, said.onset_secs)
    early = early is not None and early < said.end_secs
    metrics = record.events_of("turn.metrics", said.onset_secs, end)
    turns = len(metrics)
    heard = first_audible(record, said.end_secs)
    heard = heard if heard is not None and heard < end else None
    return {"label": said.label, "is_early": early, "answers": turns,
            "ok": not early and turns == 1 and heard is not None,
            "v2v_secs": _since(heard, said.end_secs), "server_total_secs": _total(metrics)}


def score_backchannel(record: CallRecord, question: Utterance, backchannel: Utterance,
                      end: float) -> dict:
    """A short "yeah" over a long reply: did the reply keep going? Valid only if the bot
    was talking when the backchannel began."""
    valid = is_talking_at(record, backchannel.onset_secs)
    interrupted = bool(record.events_of("interrupted", backchannel.onset_secs - 0.1, end))
    extra = len(record.events_of("turn.metrics", backchannel.onset_secs, end))
    gaps = silences(record, backchannel.onset_secs, end)
    longest = max((secs for _, secs in gaps), default=0.0)
    return {
        "label": backchannel.label, "is_valid": valid, "interrupted": interrupted,
        "extra_answers": extra, "longest_silence_secs": round(longest, 3),
        "pauses": sum(secs >= PAUSE_MIN_SECS for _, secs in gaps),
        "paused_events": len(record.events_of("bot.paused", backchannel.onset_secs, end)),
        "ok": valid and not interrupted and extra == 0
        and longest <= BACKCHANNEL_MAX_SILENCE_SECS,
        "v2v_secs": _since(first_audible(record, question.end_secs), question.end_secs),
    }


def score_interruption(record: CallRecord, interruption: Utterance, end: float) -> dict:
    """The user talks over the bot: how long until the played audio stopped, and was the
    interruption then answered (v2v: end of the interruption → the new reply's audio)?"""
    onset = interruption.onset_secs
    valid = is_talking_at(record, onset)
    answer_at = record.first_event_at("turn.metrics", onset)
    stop = playback_stop(record, onset, new_reply_at=answer_at)
    cut_earlier = record.first_event_at("interrupted") is not None and \
        record.first_event_at("interrupted") < onset - 0.1
    answers = record.events_of("turn.metrics", onset, end)
    heard = first_audible(record, max(interruption.end_secs, stop + STOP_HOLD_SECS)) \
        if stop is not None else None
    answered = bool(answers) and heard is not None and heard < end
    return {"label": interruption.label, "is_valid": valid and not cut_earlier,
            "is_cut_before_onset": cut_earlier,
            "stop_secs": _since(stop, onset), "interrupted": bool(
                record.events_of("interrupted", onset - 0.1, end)),
            "answered": answered,
            "v2v_secs": _since(heard, interruption.end_secs) if answered else None}


def score_echo(record: CallRecord, question: Utterance, end: float) -> dict:
    """A reply played into a leaky room with nobody talking: was it cut by its own echo?"""
    interrupted = bool(record.events_of("interrupted", question.end_secs, end))
    answers = len(record.events_of("turn.metrics", question.onset_secs, end))
    replies = record.events_of("bot.reply", question.end_secs, end)
    heard = first_audible(record, question.end_secs)
    return {"label": question.label, "interrupted": interrupted, "answers": answers,
            "is_complete": bool(replies) and not replies[0]["interrupted"],
            "ok": heard is not None and not interrupted and answers == 1,
            "v2v_secs": _since(heard, question.end_secs)}


def score_noise(record: CallRecord, start: float, end: float) -> dict:
    """Noise only: any reply is a false start."""
    answers = len(record.events_of("turn.metrics", start, end))
    heard = first_audible(record, start)
    heard = heard is not None and heard < end
    finals = [e["text"] for e in record.events_of("transcript.final", start, end)]
    return {"answers": answers, "is_audible": heard, "finals": finals,
            "interrupted": bool(record.events_of("interrupted", start, end)),
            "ok": answers == 0 and not heard}


def score_question(record: CallRecord, question: Utterance, end: float) -> dict:
    """A question (clean or in noise): answered? its final transcript and v2v."""
    finals = record.events_of("transcript.final", question.onset_secs, end)
    heard = first_audible(record, question.end_secs)
    answered = bool(record.events_of("turn.metrics", question.onset_secs, end)) and \
        heard is not None
    return {"label": question.label, "reference": question.text,
            "transcript": " ".join(e["text"] for e in finals).strip(), "answered": answered,
            "v2v_secs": _since(heard, question.end_secs) if answered else None,
            "server_total_secs": _total(record.events_of("turn.metrics", question.onset_secs,
                                                         end))}


def rate(items: list[dict], key: str = "ok") -> float | None:
    """Share of valid items where `key` is true (None when no item is valid)."""
    valid = [item for item in items if item.get("is_valid", True)]
    return sum(bool(item[key]) for item in valid) / len(valid) if valid else None


def _total(metrics: list[dict]) -> float | None:
    """The server's own end of speech → first audio (turn.metrics total_secs) of the first
    answer: with v2v, it tells the server's wait from the network's and the player's."""
    total = metrics[0].get("stages", {}).get("total_secs") if metrics else None
    return None if total is None else round(total, 3)


def _since(at: float | None, start: float) -> float | None:
    return None if at is None else round(at - start, 3)
