"""`GET /v1/realtime`, OpenAI's Realtime API on our pipeline, driven by the official `openai`
SDK's realtime client as its users drive it (a spoken question, a typed one, barge-in, a
cancel), plus a raw WebSocket for the beta event names and the error paths."""

import asyncio
import base64
import json

import numpy as np
import pytest
import soxr
import websockets
from openai import AsyncOpenAI
from pipecat.audio.utils import create_stream_resampler, pcm_to_ulaw, ulaw_to_pcm

from tests.conftest import RunningServer, make_settings
from tests.helpers import transcribe, wer, words
from voxline.bench.turn_audio import ESPEAK_VOICES, Speaker
from voxline.bus import events

INSTRUCTIONS = "You are a helpful assistant. Answer in one short sentence."
EVENT_SECS = 60.0
APPEND_SECS = 0.1


@pytest.fixture(scope="module")
def speaker(tmp_path_factory):
    speaker = Speaker(tmp_path_factory.mktemp("realtime-speech"), enable_kokoro=False)
    yield speaker
    speaker.close()


def at_24k(pcm16k: bytes) -> bytes:
    samples = np.frombuffer(pcm16k, np.int16).astype(np.float32)
    return soxr.resample(samples, 16000, 24000).astype(np.int16).tobytes()


@pytest.fixture
async def client(server):
    async with AsyncOpenAI(base_url=f"{server.http_url}/v1", api_key="no-key-needed",
                           max_retries=0) as client:
        yield client


async def _speak(connection, pcm24: bytes, *, silence_secs: float = 2.0) -> None:
    """Append audio in real time, as a microphone does, then silence."""
    pcm24 += bytes(int(24000 * silence_secs) * 2)
    step = int(24000 * APPEND_SECS) * 2
    for offset in range(0, len(pcm24), step):
        await connection.input_audio_buffer.append(
            audio=base64.b64encode(pcm24[offset:offset + step]).decode())
        await asyncio.sleep(APPEND_SECS)


async def _ask(connection, text: str) -> list:
    """Type `text` as the user's message, ask for a response; its events to response.done."""
    await connection.conversation.item.create(item={
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
    await connection.response.create()
    return await _until(connection, lambda e: e.type == "response.done")


async def _next_of(connection, kind: str):
    """The next event of type `kind` (others, such as rate_limits.updated, are skipped)."""
    return (await _until(connection, lambda e: e.type == kind))[-1]


async def _until(connection, done) -> list:
    """Events until one `done` accepts (included)."""
    seen = []
    async with asyncio.timeout(EVENT_SECS):
        async for event in connection:
            seen.append(event)
            if done(event):
                return seen
    raise AssertionError("the connection closed")


def _audio(seen, kind: str = "response.output_audio.delta") -> bytes:
    return b"".join(base64.b64decode(e.delta) for e in seen if e.type == kind)


async def test_a_spoken_question_is_transcribed_and_answered_aloud(client, speaker, server,
                                                                   models):
    question = "What is the capital of France?"
    subscription = server.worker.bus.subscribe(lambda e: isinstance(e, events.SessionStarted)
                                               and e.transport == "realtime")
    async with client.realtime.connect(model="gpt-realtime") as connection:
        created = await connection.recv()
        assert created.type == "session.created" and created.session.model == "gpt-realtime"
        limits = await connection.recv()
        assert limits.type == "rate_limits.updated"
        assert limits.rate_limits[0].name == "requests" and limits.rate_limits[0].limit == 60
        await connection.session.update(session={"type": "realtime",
                                                 "instructions": INSTRUCTIONS})
        updated = await _next_of(connection, "session.updated")
        assert updated.session.instructions == INSTRUCTIONS
        speaking = asyncio.create_task(_speak(connection,
                                              at_24k(speaker.say(question, ESPEAK_VOICES[1]).pcm)))
        seen = await _until(connection, lambda e: e.type == "response.done")
        await speaking
    types = [e.type for e in seen]
    order = ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
             "input_audio_buffer.committed", "response.created", "response.output_item.added",
             "response.content_part.added", "response.output_audio.delta",
             "response.output_audio.done", "response.output_audio_transcript.done",
             "response.output_item.done", "response.done"]
    assert [types.index(t) for t in order] == sorted(types.index(t) for t in order), types
    (heard,) = [e for e in seen
                if e.type == "conversation.item.input_audio_transcription.completed"]
    assert wer(question, heard.transcript) <= 0.5, heard.transcript
    assert seen[-1].response.status == "completed"
    transcript = next(e for e in seen if e.type == "response.output_audio_transcript.done")
    deltas = "".join(e.delta for e in seen if e.type == "response.output_audio_transcript.delta")
    assert deltas == transcript.transcript and transcript.transcript
    spoken = transcribe(models, _audio(seen), 24000)
    assert words(spoken) & words(transcript.transcript), (spoken, transcript.transcript)
    started = await asyncio.wait_for(anext(aiter(subscription)), 5)
    subscription.close()
    assert started.output_sample_rate == 24000
    assert 'voxline_sessions_started_total{transport="realtime"}' in \
        server.worker.metrics.render().decode()


async def test_a_typed_question_is_answered_in_g711(client, models):
    """A phone bridge's session: μ-law at 8 kHz both ways; a typed user item, then a
    response."""
    async with client.realtime.connect(model="gpt-realtime") as connection:
        await connection.recv()
        await connection.session.update(session={
            "type": "realtime", "instructions": INSTRUCTIONS,
            "audio": {"input": {"format": {"type": "audio/pcmu"}},
                      "output": {"format": {"type": "audio/pcmu"}}}})
        updated = await _next_of(connection, "session.updated")
        assert updated.session.audio.output.format.type == "audio/pcmu"
        seen = await _ask(connection, "What color is the sky on a clear day?")
    added = next(e for e in seen if e.type == "conversation.item.added")
    assert added.item.role == "user" and added.item.content[0].text.startswith("What color")
    assert seen[-1].response.status == "completed"
    ulaw = _audio(seen)
    pcm = await ulaw_to_pcm(ulaw, 8000, 16000, create_stream_resampler())
    assert len(ulaw) / 8000 > 0.5  # 8 kHz, one byte a sample
    transcript = next(e for e in seen if e.type == "response.output_audio_transcript.done")
    assert words(transcribe(models, pcm, 16000)) & words(transcript.transcript)


async def test_speech_over_the_reply_cuts_it_and_is_answered(client, speaker):
    async with client.realtime.connect(model="gpt-realtime") as connection:
        await connection.recv()
        await connection.conversation.item.create(item={
            "type": "message", "role": "user",
            "content": [{"type": "input_text",
                         "text": "Tell me a long story about a dragon and a knight."}]})
        await connection.response.create()
        await _until(connection, lambda e: e.type == "response.output_audio.delta")
        await asyncio.sleep(1.0)  # the reply is playing
        interruption = at_24k(speaker.say("Wait, stop. What is two plus two?",
                                          ESPEAK_VOICES[2]).pcm)
        speaking = asyncio.create_task(_speak(connection, interruption))
        seen = await _until(connection, lambda e: e.type == "response.done")
        assert seen[-1].response.status == "cancelled"
        assert "input_audio_buffer.speech_started" in [e.type for e in seen]
        answer = await _until(connection, lambda e: e.type == "response.done")
        await speaking
    assert answer[-1].response.status == "completed"
    assert any(e.type == "conversation.item.input_audio_transcription.completed"
               for e in seen + answer)


async def test_response_cancel_stops_the_reply(client):
    async with client.realtime.connect(model="gpt-realtime") as connection:
        await connection.recv()
        await connection.response.cancel()
        error = await _next_of(connection, "error")
        assert error.type == "error" and error.error.code == "response_cancel_not_active"
        await connection.conversation.item.create(item={
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "Describe the ocean in detail."}]})
        await connection.response.create()
        await _until(connection, lambda e: e.type == "response.output_audio.delta")
        await connection.response.cancel()
        seen = await _until(connection, lambda e: e.type == "response.done")
    assert seen[-1].response.status == "cancelled"
    assert seen[-1].response.output[0].status == "incomplete"


async def _raw(server, *, beta: bool = False):
    headers = {"Authorization": "Bearer no-key-needed"}
    if beta:
        headers["OpenAI-Beta"] = "realtime=v1"
    return await websockets.connect(f"ws://127.0.0.1:{server.port}/v1/realtime?model=m",
                                    additional_headers=headers)


async def _next_json(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), EVENT_SECS))


async def test_bad_events_get_error_events_and_the_session_goes_on(server):
    ws = await _raw(server)
    try:
        assert (await _next_json(ws))["type"] == "session.created"
        assert (await _next_json(ws))["type"] == "rate_limits.updated"
        cases = [
            ("this is not json", "invalid_json", None),
            (json.dumps({"no": "type"}), "invalid_event", None),
            (json.dumps({"type": "conversation.nonsense", "event_id": "e1"}), "unknown_event",
             None),
            (json.dumps({"type": "input_audio_buffer.append", "audio": "%%%not base64"}),
             "invalid_audio", "audio"),
            (json.dumps({"type": "input_audio_buffer.append", "audio": "AA=="}),
             "invalid_audio", "audio"),
            (json.dumps({"type": "session.update",
                         "session": {"turn_detection": {"type": "nonsense_vad"}}}),
             "invalid_value", "session.turn_detection"),
            (json.dumps({"type": "session.update", "session": {"voice": "nobody"}}),
             "unknown_voice", "session.voice"),
            (json.dumps({"type": "session.update", "session": {"tools": [{"type": "function",
                                                                            "name": "f"}]}}),
             "tools_need_remote_llm", "session.tools"),
            (json.dumps({"type": "conversation.item.create",
                         "item": {"type": "function_call_output", "output": "{}"}}),
             "invalid_value", "item"),
            (json.dumps({"type": "conversation.item.create",
                         "item": {"type": "message", "role": "user",
                                  "content": [{"type": "input_audio", "audio": "AAAA"}]}}),
             "invalid_audio", "item.content"),
            (json.dumps({"type": "conversation.item.create",
                         "item": {"type": "message", "role": "user",
                                  "content": [{"type": "input_image"}]}}),
             "unsupported_item", "item.content"),
            (json.dumps({"type": "input_audio_buffer.commit"}), "not_needed", None),
            (json.dumps({"type": "input_audio_buffer.append",
                         "audio": base64.b64encode(bytes(600_000)).decode()}),
             "audio_too_large", "audio"),
        ]
        for text, code, param in cases:
            await ws.send(text)
            error = await _next_json(ws)
            assert error["type"] == "error", error
            assert error["error"]["code"] == code and error["error"]["param"] == param, error
            assert error["error"]["message"]
        await ws.send(json.dumps({"type": "conversation.nonsense", "event_id": "evt_9"}))
        assert (await _next_json(ws))["error"]["event_id"] == "evt_9"
        await ws.send(json.dumps({"type": "session.update", "session": {"voice": "alloy"}}))
        updated = await _next_json(ws)
        assert updated["type"] == "session.updated"
        assert updated["session"]["audio"]["output"]["voice"] == "alloy"
    finally:
        await ws.close()


async def test_instructions_are_refused_whole_where_the_operator_forbids_them(models):
    """agent.allow_client_prompt off: an update with instructions is refused, and none of its
    other fields are taken; the server's own instructions are not a change."""
    server = await RunningServer(make_settings(agent={"allow_client_prompt": False}),
                                 models).start()
    try:
        ws = await _raw(server)
        try:
            created = await _next_json(ws)
            assert created["type"] == "session.created"
            own = created["session"]["instructions"]
            await ws.send(json.dumps({"type": "session.update", "session": {
                "instructions": "You are a pirate.", "voice": "alloy"}}))
            error = await _until_type(ws, "error")
            assert error["error"]["code"] == "client_prompt_not_allowed"
            await ws.send(json.dumps({"type": "session.update",
                                      "session": {"instructions": own}}))
            updated = (await _until_type(ws, "session.updated"))["session"]
            assert updated["instructions"] == own
            assert updated["audio"]["output"]["voice"] == created["session"]["audio"][
                "output"]["voice"] != "alloy"
        finally:
            await ws.close()
    finally:
        await server.stop()


async def _until_type(ws, kind: str) -> dict:
    """The next event of type `kind` (others, such as rate_limits.updated, are skipped)."""
    while (event := await _next_json(ws))["type"] != kind:
        pass
    return event


async def test_a_beta_client_gets_the_beta_names(server, speaker):
    ws = await _raw(server, beta=True)
    try:
        created = await _next_json(ws)
        assert created["session"]["input_audio_format"] == "pcm16"
        assert (await _next_json(ws))["type"] == "rate_limits.updated"
        await ws.send(json.dumps({"type": "session.update",
                                  "session": {"output_audio_format": "g711_alaw"}}))
        assert (await _next_json(ws))["session"]["output_audio_format"] == "g711_alaw"
        await ws.send(json.dumps({"type": "session.update",
                                  "session": {"output_audio_format": "pcm16"}}))
        await _next_json(ws)
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "Say hello."}]}}))
        await ws.send(json.dumps({"type": "response.create"}))
        types = []
        while not types or types[-1] != "response.done":
            types.append((await _next_json(ws))["type"])
    finally:
        await ws.close()
    assert "conversation.item.created" in types and "response.audio.delta" in types
    assert "response.audio_transcript.done" in types
    assert not {"response.output_audio.delta", "conversation.item.done"} & set(types)


async def test_ulaw_input_is_heard(client, speaker):
    pcm16 = speaker.say("What time is it in London?", ESPEAK_VOICES[5]).pcm
    ulaw = await pcm_to_ulaw(pcm16, 16000, 8000, create_stream_resampler())
    async with client.realtime.connect(model="gpt-realtime") as connection:
        await connection.recv()
        await connection.session.update(session={
            "type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"}}}})
        await _next_of(connection, "session.updated")
        ulaw += bytes([0xFF]) * 8000 * 2  # μ-law silence
        for offset in range(0, len(ulaw), 800):
            await connection.input_audio_buffer.append(
                audio=base64.b64encode(ulaw[offset:offset + 800]).decode())
            await asyncio.sleep(APPEND_SECS)
        seen = await _until(connection, lambda e: e.type ==
                            "conversation.item.input_audio_transcription.completed")
    assert wer("What time is it in London?", seen[-1].transcript) <= 0.5, seen[-1].transcript


async def test_push_to_talk_transcribes_the_committed_turn(client, speaker):
    """turn_detection null: the audio waits for the client's commit, is transcribed whole, and
    the client asks for the answer itself."""
    question = "How far away is the moon?"
    pcm24 = at_24k(speaker.say(question, ESPEAK_VOICES[3]).pcm)
    async with client.realtime.connect(model="gpt-realtime") as connection:
        await connection.recv()
        await connection.session.update(session={
            "type": "realtime", "audio": {"input": {"turn_detection": None}}})
        updated = await _next_of(connection, "session.updated")
        assert updated.session.audio.input.turn_detection is None
        await connection.input_audio_buffer.commit()
        assert (await _next_of(connection, "error")).error.code == \
            "input_audio_buffer_commit_empty"
        await connection.input_audio_buffer.append(audio=base64.b64encode(b"\1\0" * 2400)
                                                   .decode())
        await connection.input_audio_buffer.clear()
        await _next_of(connection, "input_audio_buffer.cleared")
        step = int(24000 * APPEND_SECS) * 2
        for offset in range(0, len(pcm24), step):  # no pacing needed, but not all at once
            await connection.input_audio_buffer.append(
                audio=base64.b64encode(pcm24[offset:offset + step]).decode())
            await asyncio.sleep(APPEND_SECS / 2)
        await asyncio.sleep(1.0)
        await connection.input_audio_buffer.commit()
        seen = await _until(connection, lambda e: e.type ==
                            "conversation.item.input_audio_transcription.completed")
        assert "input_audio_buffer.speech_started" not in [e.type for e in seen]
        assert wer(question, seen[-1].transcript) <= 0.5, seen[-1].transcript
        await connection.response.create()
        answer = await _until(connection, lambda e: e.type == "response.done")
    assert answer[-1].response.status == "completed"
    assert _audio(answer)


async def test_turn_detection_settings_are_taken_and_locked_once_talking(client):
    async with client.realtime.connect(model="gpt-realtime") as connection:
        await connection.recv()
        await connection.session.update(session={"type": "realtime", "audio": {"input": {
            "turn_detection": {"type": "semantic_vad", "eagerness": "high"}}}})
        updated = await _next_of(connection, "session.updated")
        assert updated.session.audio.input.turn_detection.type == "semantic_vad"
        await connection.conversation.item.create(item={
            "type": "message", "role": "user", "content": [{"type": "input_text",
                                                            "text": "Hello."}]})
        await connection.session.update(session={"type": "realtime", "audio": {"input": {
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 300}}}})
        error = await _next_of(connection, "error")
    assert error.error.code == "turn_detection_locked"


async def test_an_audio_item_is_transcribed_into_the_conversation(client, speaker):
    """A recorded question sent whole as a user item (no streaming), then a response."""
    question = "What is the tallest mountain in the world?"
    pcm24 = at_24k(speaker.say(question, ESPEAK_VOICES[0]).pcm)
    async with client.realtime.connect(model="gpt-realtime") as connection:
        await connection.conversation.item.create(item={
            "type": "message", "role": "user",
            "content": [{"type": "input_audio", "audio": base64.b64encode(pcm24).decode()}]})
        seen = await _until(connection, lambda e: e.type ==
                            "conversation.item.input_audio_transcription.completed")
        added = next(e for e in seen if e.type == "conversation.item.added")
        assert added.item.content[0].type == "input_audio"
        assert wer(question, seen[-1].transcript) <= 0.5, seen[-1].transcript
        await connection.response.create()
        answer = await _until(connection, lambda e: e.type == "response.done")
    assert answer[-1].response.status == "completed" and _audio(answer)
