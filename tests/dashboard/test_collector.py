"""The dashboard's collector: what a session's transcript shows for each event."""

from voxline.bus import InProcessBus
from voxline.bus.events import (
    BotPaused,
    BotResumed,
    BotSpoken,
    EchoGuarded,
    SessionStarted,
    TranscriptFinal,
)
from voxline.dashboard.collector import ECHO_NOTES, PAUSE_NOTES, Collector


def test_an_echo_kept_back_is_a_note_in_the_transcript_not_its_words():
    collector = Collector(InProcessBus(), history_turns=50, transcript_retention="memory")
    for event in (
        SessionStarted(session_id="s", source="w", transport="websocket"),
        TranscriptFinal(session_id="s", source="w", text="My daughter starts school tomorrow."),
        EchoGuarded(session_id="s", source="w", text="Your daughter starts school tomorrow!",
                    attempt=1),
        BotSpoken(session_id="s", source="w", text="How exciting! Is she ready?"),
    ):
        collector.apply(event)
    lines = collector.snapshot()["sessions"]["s"]["transcript"]
    assert lines == [
        {"who": "user", "text": "My daughter starts school tomorrow."},
        {"who": "note", "text": ECHO_NOTES[1]},
        {"who": "bot", "text": "How exciting! Is she ready?"},
    ]


def test_a_pause_for_a_backchannel_shows_in_the_state_and_the_transcript():
    collector = Collector(InProcessBus(), history_turns=50, transcript_retention="memory")
    collector.apply(SessionStarted(session_id="s", source="w", transport="websocket"))
    collector.apply(BotSpoken(session_id="s", source="w", text="Once upon a time,"))
    collector.apply(BotPaused(session_id="s", source="w"))
    session = collector.snapshot()["sessions"]["s"]
    assert session["state"] == "paused"
    collector.apply(BotResumed(session_id="s", source="w"))
    session = collector.snapshot()["sessions"]["s"]
    assert session["state"] == "speaking"
    assert [line["text"] for line in session["transcript"][-2:]] == [
        PAUSE_NOTES["paused"], PAUSE_NOTES["resumed"]]
