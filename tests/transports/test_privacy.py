"""Privacy: a session is recorded only when the server allows it and the client asks; the
dashboard forgets a transcript when its session ends unless told to keep it."""

import wave

import numpy as np

from tests.conftest import RunningServer, make_settings
from tests.helpers import read_pcm, rms
from tests.ws_client import (
    QUESTION,
    ask,
    connect,
    expect_error,
    start,
    wait_for_no_sessions,
)
from voxline.bus import InProcessBus, events
from voxline.dashboard.collector import Collector


async def test_asking_for_a_recording_where_recording_is_off_is_refused(server):
    async with connect(server.ws_url) as ws:
        await ws.send('{"type": "start", "sample_rate": 16000, "record": true}')
        message = await expect_error(ws, "recording_not_allowed")
        assert "privacy.allow_recording" in message and "without" in message, message
        ready = await start(ws)  # the connection stays open; a start without record works
        assert ready["session_id"]
    await wait_for_no_sessions(server)
    assert not server.worker.settings.privacy.allow_recording  # the default


async def test_a_recorded_session_is_one_stereo_wav_of_user_and_bot(models, speech, tmp_path):
    recordings = tmp_path / "recordings"
    settings = make_settings(privacy={"allow_recording": True, "recordings_dir": str(recordings)})
    server = await RunningServer(settings, models).start()
    try:
        async with connect(server.ws_url) as ws:  # recording allowed, but not asked for
            await start(ws)
        async with connect(server.ws_url) as ws:
            session_id = (await start(ws, record=True))["session_id"]
            await ask(ws, speech(QUESTION), until="bot.stopped_speaking")
        await wait_for_no_sessions(server)
    finally:
        await server.stop()
    assert [p.name for p in recordings.iterdir()] == [f"{session_id}.wav"]
    with wave.open(str(recordings / f"{session_id}.wav"), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 16000)
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).reshape(-1, 2)
    user, bot = frames[:, 0].tobytes(), frames[:, 1].tobytes()
    spoken_secs = len(read_pcm(speech(QUESTION))) / 32000
    assert len(frames) / 16000 > spoken_secs, "shorter than the question itself"
    assert rms(user) > 0.01 and rms(bot) > 0.01, (rms(user), rms(bot))


def _conversation(collector: Collector) -> None:
    collector.apply(events.SessionStarted(session_id="s1", source="w", transport="websocket"))
    collector.apply(events.TranscriptFinal(session_id="s1", source="w", text="my secret"))
    collector.apply(events.BotSpoken(session_id="s1", source="w", text="noted"))


def test_the_dashboard_forgets_a_transcript_when_its_session_ends():
    collector = Collector(InProcessBus(), history_turns=10)  # transcript_retention "none"
    _conversation(collector)
    assert [line["text"] for line in collector.sessions["s1"]["transcript"]] == [
        "my secret", "noted"]  # shown while live
    collector.apply(events.SessionEnded(session_id="s1", source="w", reason="ended"))
    session = collector.snapshot()["sessions"]["s1"]
    assert session["transcript"] == [] and session["is_transcript_forgotten"]
    assert "my secret" not in str(collector.snapshot())
    assert collector.snapshot()["transcript_retention"] == "none"


def test_transcript_retention_memory_keeps_ended_sessions_transcripts():
    collector = Collector(InProcessBus(), history_turns=10, transcript_retention="memory")
    _conversation(collector)
    collector.apply(events.SessionEnded(session_id="s1", source="w", reason="ended"))
    assert len(collector.sessions["s1"]["transcript"]) == 2
