"""The dashboard's collector: what a session's transcript shows for each event."""

from voxline.bus import InProcessBus
from voxline.bus.events import BotSpoken, EchoGuarded, SessionStarted, TranscriptFinal
from voxline.dashboard.collector import ECHO_NOTES, Collector


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
