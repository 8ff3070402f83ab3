"""Bad client input on `/ws` (docs/protocol.md, "Error codes"): every case gets a stable code and
a clear message, the connection stays open where the protocol says so, and a real spoken question
on that same connection is still transcribed afterwards."""

import asyncio
import json
import time

import pytest
import websockets
from loguru import logger

from tests.conftest import RunningServer, make_settings
from tests.helpers import read_pcm, words
from tests.ws_client import (
    ANSWER_TIMEOUT_SECS,
    CHUNK_BYTES,
    QUESTION,
    ask,
    assert_still_answers,
    connect,
    events_until,
    expect_close,
    expect_error,
    http_get,
    next_event,
    speak,
    start,
    wait_for_no_sessions,
)
from voxline.config.settings import SUPPORTED_SAMPLE_RATES


async def test_non_json_text_before_start(server, speech):
    async with connect(server.ws_url) as ws:
        await ws.send("hello, server")
        message = await expect_error(ws, "bad_json")
        assert "JSON" in message and '"type": "start"' in message
        await start(ws)
        await assert_still_answers(ws, speech)


async def test_json_without_a_string_type_before_start(server, speech):
    async with connect(server.ws_url) as ws:
        for raw in ('{"sample_rate": 16000}', '{"type": 7}', '[1, 2]', '"start"'):
            await ws.send(raw)
            message = await expect_error(ws, "bad_message")
            assert "object" in message and "'type'" in message, (raw, message)
        await start(ws)  # the fifth message
        await assert_still_answers(ws, speech)


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


async def test_unsupported_sample_rates_then_a_valid_start(server, speech):
    bad = [("sample_rate", 11025), ("output_sample_rate", 1), ("sample_rate", "16000"),
           ("sample_rate", True)]  # four bad starts: the fifth message may still be valid
    async with connect(server.ws_url) as ws:
        for field, value in bad:
            await ws.send(json.dumps({"type": "start", "sample_rate": 16000, field: value}))
            message = await expect_error(ws, "bad_sample_rate")
            assert message.startswith(f"start message: {field}: "), message
            assert all(str(rate) in message for rate in SUPPORTED_SAMPLE_RATES), message
            if type(value) is int:
                assert f"unsupported sample rate {value};" in message, message
            else:
                assert "integer" in message, message
        ready = await start(ws, sample_rate=48000)
        assert ready["sample_rate"] == ready["output_sample_rate"] == 48000
        await assert_still_answers(ws, speech, rate=48000)


async def test_sample_rate_that_is_not_an_integer_is_refused(server):
    """Regression: `"16000"` and `16000.0` were accepted although the protocol asks for an
    integer, and `true` was read as 1 Hz ("unsupported sample rate 1")."""
    async with connect(server.ws_url) as ws:
        for value in ("16000", 16000.0, True, None):
            await ws.send(json.dumps({"type": "start", "sample_rate": value}))
            message = await expect_error(ws, "bad_sample_rate")
            assert "valid integer" in message and "16000, 22050" in message, message
            assert "rate 1;" not in message, message


async def test_missing_sample_rate_names_the_field(server, speech):
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "start"}))
        assert "sample_rate" in await expect_error(ws, "bad_sample_rate")
        await start(ws)
        await assert_still_answers(ws, speech)


async def test_start_with_an_unknown_field(server, speech):
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "voice": "alice"}))
        message = await expect_error(ws, "bad_start")
        assert "voice" in message, message
        await start(ws)
        await assert_still_answers(ws, speech)


async def test_too_long_system_prompt(server, speech):
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000,
                                  "system_prompt": "x" * 4001}))
        message = await expect_error(ws, "bad_start")
        assert "system_prompt" in message and "4000" in message, message
        await start(ws)
        await assert_still_answers(ws, speech)


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


async def test_a_client_prompt_is_refused_where_the_operator_forbids_it(models, speech):
    server = await RunningServer(make_settings(agent={"allow_client_prompt": False}),
                                 models).start()
    try:
        async with connect(server.ws_url) as ws:
            for extra in ({"system_prompt": "You are a pirate."}, {"greeting": "Arr!"}):
                await ws.send(json.dumps({"type": "start", "sample_rate": 16000, **extra}))
                message = await expect_error(ws, "client_prompt_not_allowed")
                assert "agent.allow_client_prompt" in message
            await start(ws)
            await assert_still_answers(ws, speech)
    finally:
        await server.stop()


DEEPLY_NESTED = "[" * 4000 + "]" * 4000  # past the JSON parser's recursion limit, under 8 KiB


async def test_deeply_nested_json_is_bad_json_before_and_after_start(server, speech):
    async with connect(server.ws_url) as ws:
        await ws.send(DEEPLY_NESTED)
        await expect_error(ws, "bad_json")
        await start(ws)
        await ws.send(DEEPLY_NESTED)
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
    limit = server.worker.settings.server.max_frame_bytes
    async with connect(server.ws_url) as ws:
        await start(ws)
        await ws.send(bytes(limit + 2))
        message = await expect_error(ws, "frame_too_large")
        assert str(limit + 2) in message and str(limit) in message, message
        await ws.send(bytes(limit))  # exactly the limit is fine (`ask` fails on any error)
        await assert_still_answers(ws, speech)


async def test_text_message_over_the_limit(server, speech):
    limit = server.worker.settings.server.max_text_bytes
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


@pytest.mark.parametrize("is_started", [False, True])
async def test_frame_over_the_transport_limit_ends_only_that_connection(server, speech,
                                                                        is_started):
    """Past 16 × the limits uvicorn itself closes with 1009 (docs/protocol.md); nothing else."""
    async with connect(server.ws_url) as ws:
        if is_started:
            await start(ws)
            await assert_still_answers(ws, speech)  # the pipeline is running
        await ws.send(bytes(4 * 1024 * 1024))
        await expect_close(ws, 1009)
    await wait_for_no_sessions(server)
    async with connect(server.ws_url) as ws:
        await start(ws)
        await assert_still_answers(ws, speech)


@pytest.mark.parametrize("text, refusal", [
    ("\u202e☃\u2028\ufeff\u200bé 日本", None),  # format characters and any script: accepted
    ("\u0000\u202e☃", "control character U+0000 at position 15; send plain text"),
    ("\x1b[31mred\x07", "control character U+001B at position 15; send plain text"),
    ("\ud800 lone", "Input should be a valid string"),  # a lone surrogate is not text
])
async def test_control_and_unusual_characters_in_strings(server, speech, text, refusal):
    """Accepted, or refused with a clear error; never a crash; the bot still speaks and answers."""
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000,
                                  "system_prompt": f"You are terse. {text}",
                                  "greeting": f"Hello {text}."}))
        if refusal:
            message = await expect_error(ws, "bad_start")
            assert message.startswith("start message: system_prompt: "), message
            assert refusal in message, message
            await start(ws, greeting="Hello.")
        else:
            assert (await next_event(ws))["type"] == "ready"
        greeting = await events_until(ws, "bot.text")
        assert greeting[-1]["text"].startswith("Hello"), greeting
        await ws.send(json.dumps({"type": text}))
        message = await expect_error(ws, "unknown_type")
        assert "expected 'stop'" in message
        events = await ask(ws, speech(QUESTION), until="bot.text")
        assert any(e["type"] == "transcript.final" for e in events), events


async def test_greeting_with_a_nul_character_is_refused(server, speech):
    """Regression: a NUL in `greeting` was accepted, then Piper's phonemizer failed on it and the
    client got `pipeline_error` "Error processing frame: embedded null character"."""
    async with connect(server.ws_url) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "greeting": "Hi\u0000"}))
        message = await expect_error(ws, "bad_start")
        assert message == ("start message: greeting: control character U+0000 at position 2; "
                           "send plain text (tabs and newlines are fine)")
        await start(ws, greeting="Hi\tthere.\n")
        greeting = await events_until(ws, "bot.text")
        assert words(greeting[-1]["text"]) == {"hi", "there"}, greeting
        await assert_still_answers(ws, speech)


async def test_stop_ends_the_session_with_a_normal_close(server, speech):
    async with connect(server.ws_url) as ws:
        await start(ws)
        await assert_still_answers(ws, speech)
        await ws.send(json.dumps({"type": "stop"}))
        await expect_close(ws, 1000, timeout_secs=ANSWER_TIMEOUT_SECS)  # the reply finishes first
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
            await assert_still_answers(third, speech)
    finally:
        await single.stop()


async def test_busy_server_when_two_clients_wait_to_start(models, speech):
    """Regression: the slot check ran only on connect, so two clients that connected before
    either sent `start` both got a session past `server.max_sessions`."""
    single = await RunningServer(make_settings(server={"max_sessions": 1}), models).start()
    try:
        async with connect(single.ws_url) as first, connect(single.ws_url) as second:
            await start(first)
            await second.send(json.dumps({"type": "start", "sample_rate": 16000}))
            reply = await next_event(second)
            assert reply["type"] == "error", f"a second session past max_sessions=1: {reply}"
            assert reply["code"] == "server_busy" and "retry" in reply["message"], reply
            await expect_close(second, 1013)
            assert single.host.live == 1
            await assert_still_answers(first, speech)
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


async def test_client_that_leaves_right_after_ready_leaves_no_task_behind(server):
    """Regression: a session cancelled while its pipeline was still starting left pipecat's
    `_segment_task_handler` waiting forever (one task, holding the STT service, per client)."""
    before = set(asyncio.all_tasks())
    async with connect(server.ws_url) as ws:
        await start(ws)
    await wait_for_no_sessions(server)
    started = [t for t in asyncio.all_tasks() - before if not t.done()]
    if started:
        await asyncio.wait(started, timeout=3)
    leaked = [t for t in started if not t.done()]
    names = [t.get_name() for t in leaked]
    for task in leaked:  # so that this bug fails here, not in every later test
        task.cancel()
    await asyncio.gather(*leaked, return_exceptions=True)
    assert not names, f"tasks left behind by a finished session: {names}"


async def test_server_is_healthy_after_all_of_the_above(server):
    await wait_for_no_sessions(server)
    status, body = await asyncio.to_thread(http_get, f"{server.http_url}/health")
    assert (status, body) == (200, {"status": "ok"})
    status, body = await asyncio.to_thread(http_get, f"{server.http_url}/ready")
    assert status == 200 and body["sessions"] == 0, body


async def test_audio_far_faster_than_real_time_is_refused_without_filling_memory(server):
    """60 MB of audio pushed at once used to queue unbounded (+55 MB RSS, 20 s to drain)."""
    async with connect(server.ws_url) as ws:
        await start(ws)
        second = bytes(32000)  # one second of 16 kHz audio
        for _ in range(120):  # two minutes of audio, as fast as the socket takes it
            try:
                await ws.send(second)
            except websockets.ConnectionClosed:
                break
        error = await expect_error(ws, "audio_too_fast")
        assert "real time" in error
        closed = await expect_close(ws, 1008)
        assert "real time" in closed.reason
    await wait_for_no_sessions(server)


async def test_a_client_sending_only_garbage_is_closed_after_fifty_bad_messages(server):
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG", format="{level} {message}")
    try:
        async with connect(server.ws_url) as ws:
            await start(ws)
            for _ in range(60):
                try:
                    await ws.send('{"type": "bogus"}')
                except websockets.ConnectionClosed:
                    break
            codes = []
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    event = await next_event(ws)
                    codes.append(event.get("code"))
            assert codes.count("unknown_type") == 49 and codes[-1] == "too_many_errors", codes
            assert closed.value.rcvd.code == 1008
        await wait_for_no_sessions(server)
    finally:
        logger.remove(sink)
    info = [line for line in lines if line.startswith("INFO Client error unknown_type")]
    assert len(info) == 1, "a repeated client error is logged once at INFO (then DEBUG)"
