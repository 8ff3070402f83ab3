"""Bad client input on `/ws` (docs/protocol.md, "Error codes"): every case gets a stable code and
a clear message, the connection stays open where the protocol says so, and a real spoken question
on that same connection is still transcribed afterwards."""

import asyncio
import json
import time
import urllib.request

import pytest
import websockets

from tests.conftest import RunningServer, make_settings
from tests.helpers import read_pcm, words
from voxline.config.settings import SUPPORTED_SAMPLE_RATES

QUESTION = "What is the capital of France?"
CHUNK_BYTES = 640  # 20 ms of 16-bit PCM at 16 kHz
TRAILING_SILENCE_SECS = 1.5  # the VAD must hear the end of the question
MESSAGE_TIMEOUT_SECS = 10
ANSWER_TIMEOUT_SECS = 45  # 2 shared CPU cores: STT of a 2 s clip can queue behind other tests


# --- a small client -----------------------------------------------------------------------------

def connect(url: str):
    """A client that, like `voxline talk`, accepts bot audio of any size."""
    return websockets.connect(url, max_size=None, open_timeout=10)


async def next_event(ws, timeout_secs: float = MESSAGE_TIMEOUT_SECS) -> dict:
    """The next JSON message from the server (bot audio in between is skipped)."""
    async with asyncio.timeout(timeout_secs):
        while True:
            message = await ws.recv()
            if isinstance(message, str):
                return json.loads(message)


async def expect_error(ws, code: str) -> str:
    """Wait for the next `error` (skipping other events); check its shape; return its message."""
    async with asyncio.timeout(MESSAGE_TIMEOUT_SECS):
        while (event := await next_event(ws))["type"] != "error":
            pass
    assert event == {"type": "error", "code": code, "message": event["message"]}, event
    message = event["message"]
    assert isinstance(message, str) and 10 < len(message) < 300, message
    assert "Traceback" not in message and "Exception" not in message, message
    return message


async def start(ws, **fields) -> dict:
    """Send a valid `start` (16 kHz unless overridden) and return the `ready` reply."""
    await ws.send(json.dumps({"type": "start", "sample_rate": 16000, **fields}))
    ready = await next_event(ws)
    assert ready["type"] == "ready", ready
    return ready


async def speak(ws, pcm: bytes) -> None:
    """Send `pcm` in real time, 20 ms per frame, as a microphone would."""
    started = time.monotonic()
    for i, offset in enumerate(range(0, len(pcm), CHUNK_BYTES)):
        await ws.send(pcm[offset: offset + CHUNK_BYTES])
        await asyncio.sleep(max(0.0, started + (i + 1) * 0.02 - time.monotonic()))


async def _microphone(ws, pcm: bytes) -> None:
    """`pcm`, then silence for as long as it runs (a live microphone; the VAD hears the end)."""
    await speak(ws, pcm)
    while True:
        await speak(ws, bytes(int(16000 * TRAILING_SILENCE_SECS) * 2))


async def ask(ws, wav, until: str = "transcript.final") -> list[dict]:
    """Speak `wav` on a started connection; return the events up to the first `until`.

    Any `error` on the way fails the test: the session must be healthy again.
    """
    seen: list[dict] = []
    microphone = asyncio.create_task(_microphone(ws, read_pcm(wav)), name="test-microphone")
    try:
        async with asyncio.timeout(ANSWER_TIMEOUT_SECS):
            while True:
                event = await next_event(ws, ANSWER_TIMEOUT_SECS)
                seen.append(event)
                assert event["type"] != "error", f"unexpected error after recovery: {event}"
                if event["type"] == until:
                    return seen
    finally:
        microphone.cancel()
        await asyncio.gather(microphone, return_exceptions=True)


async def assert_still_answers(ws, speech) -> None:
    """The proof that a connection survived: a spoken question is transcribed on it."""
    events = await ask(ws, speech(QUESTION))
    final = events[-1]["text"]
    assert {"capital", "france"} <= words(final), f"transcript was {final!r}"


async def expect_close(ws, code: int) -> websockets.frames.Close:
    """Read (and drop) what is left until the server closes; check the close code."""
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(MESSAGE_TIMEOUT_SECS):
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None, "closed without a close frame from the server"
    assert closed.value.rcvd.code == code, closed.value.rcvd
    return closed.value.rcvd


async def wait_for_no_sessions(server) -> None:
    """Every session the test opened has ended and released its slot (polled, bounded)."""
    async with asyncio.timeout(MESSAGE_TIMEOUT_SECS):
        while server.state.active_sessions:
            await asyncio.sleep(0.05)


def http_get(url: str) -> tuple[int, dict]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, json.loads(response.read())


# --- before `start` -----------------------------------------------------------------------------

async def test_non_json_text_before_start(server, speech):
    async with connect(server.ws_url) as ws:
        await ws.send("hello, server")
        message = await expect_error(ws, "bad_json")
        assert "JSON" in message and '"type": "start"' in message
        await start(ws)
        await assert_still_answers(ws, speech)


@pytest.mark.parametrize("raw", ['{"sample_rate": 16000}', '{"type": 7}', "[1, 2]", '"start"',
                                 "null"])
async def test_json_without_a_string_type_before_start(server, raw):
    async with connect(server.ws_url) as ws:
        await ws.send(raw)
        message = await expect_error(ws, "bad_message")
        assert "object" in message and "'type'" in message
        await start(ws)


async def test_json_without_type_after_start(server, speech):
    async with connect(server.ws_url) as ws:
        await start(ws)
        await ws.send('{"sample_rate": 16000}')
        assert "'type'" in await expect_error(ws, "bad_message")
        await assert_still_answers(ws, speech)


async def test_unknown_type_before_start(server, speech):
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "hello", "sample_rate": 16000}))
        message = await expect_error(ws, "bad_start")
        assert "type" in message and "'start'" in message, message
        await start(ws)
        await assert_still_answers(ws, speech)


async def test_binary_audio_before_start(server, speech):
    async with connect(server.ws_url) as ws:
        await ws.send(bytes(CHUNK_BYTES))
        message = await expect_error(ws, "not_started")
        assert "start" in message
        await start(ws)
        await assert_still_answers(ws, speech)


@pytest.mark.parametrize("field, value", [("sample_rate", 12345), ("sample_rate", "16000"),
                                          ("sample_rate", None), ("output_sample_rate", 1)])
async def test_unsupported_sample_rate_then_a_valid_start(server, field, value):
    async with connect(server.ws_url) as ws:
        start_message = {"type": "start", "sample_rate": 16000, field: value}
        await ws.send(json.dumps(start_message))
        message = await expect_error(ws, "bad_sample_rate")
        assert field in message, message
        if isinstance(value, int):
            assert str(value) in message, message
            assert all(str(rate) in message for rate in SUPPORTED_SAMPLE_RATES), message
        ready = await start(ws, sample_rate=48000)
        assert ready["sample_rate"] == ready["output_sample_rate"] == 48000


async def test_missing_sample_rate_names_the_field(server):
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "start"}))
        assert "sample_rate" in await expect_error(ws, "bad_sample_rate")
        await start(ws)


async def test_bad_sample_rate_then_a_valid_start_answers(server, speech):
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 11025}))
        await expect_error(ws, "bad_sample_rate")
        await start(ws)
        await assert_still_answers(ws, speech)


async def test_start_with_an_unknown_field(server, speech):
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "voice": "alice"}))
        message = await expect_error(ws, "bad_start")
        assert "voice" in message, message
        await start(ws)
        await assert_still_answers(ws, speech)


async def test_too_long_system_prompt(server):
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000,
                                  "system_prompt": "x" * 4001}))
        message = await expect_error(ws, "bad_start")
        assert "system_prompt" in message and "4000" in message, message
        await start(ws)


async def test_too_many_bad_starts_close_with_4400(server):
    async with connect(server.ws_url) as ws:
        for _ in range(5):
            await ws.send(json.dumps({"type": "start", "sample_rate": 1}))
            await expect_error(ws, "bad_sample_rate")
        message = await expect_error(ws, "bad_start")
        assert "5 invalid" in message, message
        await expect_close(ws, 4400)


async def test_no_start_in_time_closes_with_4408(models):
    quick = await RunningServer(make_settings(server={"start_timeout_secs": 0.5}), models).start()
    try:
        async with connect(quick.ws_url) as ws:
            started = time.monotonic()
            message = await expect_error(ws, "start_timeout")
            assert "0.5s" in message and "start" in message, message
            await expect_close(ws, 4408)
            assert time.monotonic() - started < 3
    finally:
        await quick.stop()


# --- after `start` ------------------------------------------------------------------------------

async def test_unknown_type_after_start(server, speech):
    async with connect(server.ws_url) as ws:
        await start(ws)
        await ws.send(json.dumps({"type": "pause"}))
        message = await expect_error(ws, "unknown_type")
        assert "'pause'" in message and "'stop'" in message, message
        await assert_still_answers(ws, speech)


async def test_non_json_text_after_start(server, speech):
    async with connect(server.ws_url) as ws:
        await start(ws)
        await ws.send("{not json")
        await expect_error(ws, "bad_json")
        await assert_still_answers(ws, speech)


async def test_second_start(server, speech):
    async with connect(server.ws_url) as ws:
        await start(ws)
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
        message = await expect_error(ws, "already_started")
        assert "already started" in message, message
        await assert_still_answers(ws, speech)


async def test_odd_length_pcm(server, speech):
    async with connect(server.ws_url) as ws:
        await start(ws)
        await ws.send(bytes(641))
        message = await expect_error(ws, "odd_length_pcm")
        assert "641" in message and "16-bit" in message, message
        await assert_still_answers(ws, speech)


async def test_empty_binary_frame(server, speech):
    async with connect(server.ws_url) as ws:
        await start(ws)
        await ws.send(b"")
        assert "empty" in await expect_error(ws, "empty_frame")
        await assert_still_answers(ws, speech)


async def test_binary_frame_over_the_limit(server, speech):
    limit = server.state.settings.server.max_frame_bytes
    async with connect(server.ws_url) as ws:
        await start(ws)
        await ws.send(bytes(limit + 2))
        message = await expect_error(ws, "frame_too_large")
        assert str(limit + 2) in message and str(limit) in message, message
        await ws.send(bytes(limit))  # exactly the limit is fine (`ask` fails on any error)
        await assert_still_answers(ws, speech)


async def test_text_message_over_the_limit(server, speech):
    limit = server.state.settings.server.max_text_bytes
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000,
                                  "greeting": "a" * limit}))
        message = await expect_error(ws, "message_too_large")
        assert str(limit) in message, message
        await start(ws)
        await ws.send(json.dumps({"type": "stop", "pad": "b" * limit}))
        await expect_error(ws, "message_too_large")
        await assert_still_answers(ws, speech)


async def test_one_megabyte_text_message(server, speech):
    huge = json.dumps({"type": "start", "sample_rate": 16000, "pad": "x" * 1_000_000})
    async with connect(server.ws_url) as ws:
        await ws.send(huge)
        await expect_error(ws, "message_too_large")
        await start(ws)
        await ws.send(huge)
        await expect_error(ws, "message_too_large")
        await assert_still_answers(ws, speech)


async def test_frame_over_the_transport_limit_ends_only_that_connection(server):
    """Past 16 × the limits uvicorn itself closes with 1009 (docs/protocol.md); nothing else."""
    async with connect(server.ws_url) as ws:
        await start(ws)
        await ws.send(bytes(4 * 1024 * 1024))
        await expect_close(ws, 1009)
    async with connect(server.ws_url) as ws:
        await start(ws)
    await wait_for_no_sessions(server)


@pytest.mark.parametrize("text", ["\u0000\u202e☃", "\x1b[31mred\x07\u2028\ufeff", "\ud800 lone"])
async def test_control_and_unusual_characters_in_strings(server, speech, text):
    """Accepted (or refused with a clear error), never a crash; the bot still answers."""
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000,
                                  "system_prompt": f"You are terse. {text}"}))
        first = await next_event(ws)
        if first["type"] == "error":
            assert first["code"] == "bad_start" and "system_prompt" in first["message"], first
            await start(ws)
        else:
            assert first["type"] == "ready", first
        await ws.send(json.dumps({"type": text}))
        message = await expect_error(ws, "unknown_type")
        assert "expected 'stop'" in message
        events = await ask(ws, speech(QUESTION), until="bot.text")
        assert any(e["type"] == "transcript.final" for e in events), events


async def test_stop_ends_the_session_with_a_normal_close(server):
    async with connect(server.ws_url) as ws:
        await start(ws)
        await ws.send(json.dumps({"type": "stop"}))
        await expect_close(ws, 1000)
    await wait_for_no_sessions(server)


# --- other clients ------------------------------------------------------------------------------

async def test_busy_server_refuses_with_1013_while_the_first_client_is_connected(models, speech):
    single = await RunningServer(make_settings(server={"max_sessions": 1}), models).start()
    try:
        async with connect(single.ws_url) as first:
            await start(first)
            async with connect(single.ws_url) as second:
                message = await expect_error(second, "server_busy")
                assert "1 session slots" in message and "retry" in message, message
                await expect_close(second, 1013)
            await assert_still_answers(first, speech)
        await wait_for_no_sessions(single)
        async with connect(single.ws_url) as third:  # the slot is free again
            await start(third)
    finally:
        await single.stop()


async def test_busy_server_when_two_clients_wait_to_start(models):
    """Regression: the slot check ran only on connect, so two clients that connected before
    either sent `start` both got a session past `server.max_sessions`."""
    single = await RunningServer(make_settings(server={"max_sessions": 1}), models).start()
    try:
        async with connect(single.ws_url) as first, connect(single.ws_url) as second:
            await start(first)
            await second.send(json.dumps({"type": "start", "sample_rate": 16000}))
            message = await expect_error(second, "server_busy")
            assert "retry" in message
            await expect_close(second, 1013)
            assert single.state.active_sessions == 1
    finally:
        await single.stop()


async def test_client_that_vanishes_mid_question_does_not_hurt_the_next(server, speech):
    pcm = read_pcm(speech(QUESTION))
    async with connect(server.ws_url) as ws:
        await start(ws)
        await speak(ws, pcm[: len(pcm) // 4 * 2])  # half the question; the VAD heard speech
        ws.transport.abort()  # no close frame: like a dropped network or a killed process
    await wait_for_no_sessions(server)
    async with connect(server.ws_url) as ws:
        await start(ws)
        await assert_still_answers(ws, speech)


async def test_client_that_vanishes_mid_reply_does_not_hurt_the_next(server, speech):
    async with connect(server.ws_url) as ws:
        await start(ws)
        await ask(ws, speech(QUESTION), until="bot.started_speaking")
        ws.transport.abort()
    await wait_for_no_sessions(server)
    async with connect(server.ws_url) as ws:
        await start(ws)
        await assert_still_answers(ws, speech)


async def test_server_is_healthy_after_all_of_the_above(server):
    await wait_for_no_sessions(server)
    status, body = await asyncio.to_thread(http_get, f"{server.http_url}/health")
    assert (status, body) == (200, {"status": "ok"})
    status, body = await asyncio.to_thread(http_get, f"{server.http_url}/ready")
    assert status == 200 and body["sessions"] == 0, body
