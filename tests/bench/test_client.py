"""The bench's WebSocket client against a scripted server on loopback that speaks our protocol
(docs/protocol.md): when a reply counts as over, and when as stalled."""

import asyncio
import json

import numpy as np
import pytest
import websockets

from voxline.bench import client
from voxline.bench.prompts import SAMPLE_RATE, Prompt

PIECE_SECS = 0.1
LOUD_PIECE = (np.full(int(SAMPLE_RATE * PIECE_SECS), 8000, dtype=np.int16)).tobytes()


async def _scripted_server(script):
    """A server that answers `start`, waits for the user's first audio, then runs `script(ws)`."""

    async def handler(ws):
        json.loads(await ws.recv())  # start
        await ws.send(json.dumps({"type": "ready"}))
        await ws.recv()  # the first microphone frame
        await asyncio.sleep(0.3)  # the prompt's speech has ended: it is the bot's turn
        await script(ws)
        async for _ in ws:  # keep reading the microphone until the client leaves
            pass

    return await websockets.serve(handler, "127.0.0.1", 0)


async def _run_one_turn(script) -> client.TurnResult:
    server = await _scripted_server(script)
    port = server.sockets[0].getsockname()[1]
    prompt = Prompt("p", "hello", bytes(int(SAMPLE_RATE * 0.2) * 2), speech_end_secs=0.1)
    try:
        [result] = await client.run_session(f"ws://127.0.0.1:{port}", [prompt], session=0,
                                            turns=1, turn_timeout_secs=5)
    finally:
        server.close()
        await server.wait_closed()
    return result


async def _speak(ws, secs: float):
    for _ in range(round(secs / PIECE_SECS)):
        await ws.send(LOUD_PIECE)
        await asyncio.sleep(PIECE_SECS)


async def test_a_long_sentence_still_playing_is_not_a_stall(monkeypatch):
    # bot.text comes only once a sentence has played; audio keeps the reply alive meanwhile.
    monkeypatch.setattr(client, "REPLY_IDLE_SECS", 0.5)

    async def one_long_sentence(ws):
        await ws.send(json.dumps({"type": "bot.started_speaking"}))
        await ws.send(json.dumps({"type": "bot.reply", "text": "On and on.",
                                  "interrupted": False}))
        await _speak(ws, 1.5)
        await ws.send(json.dumps({"type": "bot.text", "text": "On and on."}))
        await ws.send(json.dumps({"type": "bot.stopped_speaking"}))

    result = await _run_one_turn(one_long_sentence)
    assert result.error == "" and result.reply == "On and on."
    assert result.bot_audio_secs == pytest.approx(1.5, abs=0.05)


async def test_a_reply_gone_quiet_is_a_stall_that_says_what_is_missing(monkeypatch):
    monkeypatch.setattr(client, "REPLY_IDLE_SECS", 0.5)

    async def never_speaks_its_second_sentence(ws):
        await ws.send(json.dumps({"type": "bot.started_speaking"}))
        await _speak(ws, 0.3)
        await ws.send(json.dumps({"type": "bot.text", "text": "One."}))
        await ws.send(json.dumps({"type": "bot.reply", "text": "One. Two.",
                                  "interrupted": False}))
        await ws.send(json.dumps({"type": "bot.stopped_speaking"}))

    result = await _run_one_turn(never_speaks_its_second_sentence)
    assert result.error.startswith("the reply stalled: part of the reply was never spoken")
    assert "'One. Two.'" in result.error
    assert result.error.endswith("the turn's events: bot.started_speaking, bot.text 'One.', "
                                 "bot.reply 'One. Two.', bot.stopped_speaking"), result.error
