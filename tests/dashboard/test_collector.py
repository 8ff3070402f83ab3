"""The dashboard's collector: what a session's transcript shows for each event."""

from voxline.bus import InProcessBus
from voxline.bus.events import (
    BotPaused,
    BotResumed,
    BotSpoken,
    EchoGuarded,
    SessionStarted,
    SpeechServed,
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


def test_speech_requests_show_as_sessions_of_their_transport():
    """A Wyoming transcription and an OpenAI-compatible synthesis, as their connections
    publish them (transports/speech.py): sessions with their words in the transcript."""
    collector = Collector(InProcessBus(), history_turns=50, transcript_retention="memory")
    for session_id, transport, event in (
            ("w1", "wyoming", TranscriptFinal(session_id="w1", source="w", text="Lights off.")),
            ("o1", "openai-audio", BotSpoken(session_id="o1", source="w", text="Hello there.")),
            ("r1", "realtime", TranscriptFinal(session_id="r1", source="w", text="Hi.")),
    ):
        collector.apply(SessionStarted(session_id=session_id, source="w", transport=transport,
                                       client="127.0.0.1:5000"))
        collector.apply(event)
        collector.apply(SpeechServed(session_id=session_id, source="w", kind="stt",
                                     transport=transport, audio_secs=1.0, processing_secs=0.2))
    sessions = collector.snapshot()["sessions"]
    assert {s: sessions[s]["transport"] for s in ("w1", "o1", "r1")} == {
        "w1": "wyoming", "o1": "openai-audio", "r1": "realtime"}
    assert sessions["w1"]["transcript"] == [{"who": "user", "text": "Lights off."}]
    assert sessions["o1"]["transcript"] == [{"who": "bot", "text": "Hello there."}]
