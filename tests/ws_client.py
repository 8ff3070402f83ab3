"""A small WebSocket client for protocol tests: start, speak in real time, read events."""

import asyncio
import json
import time
import urllib.request

import numpy as np
import pytest
import soxr
import websockets

from tests.helpers import read_pcm, words

QUESTION = "What is the capital of France?"
CHUNK_BYTES = 640  # 20 ms of 16-bit PCM at 16 kHz
TRAILING_SILENCE_SECS = 1.5  # the VAD must hear the end of the question
MESSAGE_TIMEOUT_SECS = 10
ANSWER_TIMEOUT_SECS = 45  # 2 shared CPU cores: STT of a 2 s clip can queue behind other tests



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


def resample(pcm: bytes, rate: int) -> bytes:
    """16 kHz 16-bit PCM at `rate` (for clients that capture at 48 kHz, say)."""
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768
    return (np.clip(soxr.resample(samples, 16000, rate), -1, 1) * 32767).astype(np.int16).tobytes()


async def speak(ws, pcm: bytes, rate: int = 16000) -> None:
    """Send `pcm` in real time, 20 ms per frame, as a microphone would."""
    chunk = rate // 50 * 2
    started = time.monotonic()
    for i, offset in enumerate(range(0, len(pcm), chunk)):
        await ws.send(pcm[offset: offset + chunk])
        await asyncio.sleep(max(0.0, started + (i + 1) * 0.02 - time.monotonic()))


async def _microphone(ws, pcm: bytes, rate: int) -> None:
    """`pcm`, then silence for as long as it runs (a live microphone; the VAD hears the end)."""
    await speak(ws, pcm, rate)
    while True:
        await speak(ws, bytes(int(rate * TRAILING_SILENCE_SECS) * 2), rate)


async def events_until(ws, kind: str, timeout_secs: float = ANSWER_TIMEOUT_SECS) -> list[dict]:
    """The events up to the first `kind`; any `error` on the way fails the test."""
    seen: list[dict] = []
    async with asyncio.timeout(timeout_secs):
        while True:
            seen.append(event := await next_event(ws, timeout_secs))
            assert event["type"] != "error", f"unexpected error: {event}"
            if event["type"] == kind:
                return seen


async def ask(ws, wav, until: str = "transcript.final", rate: int = 16000) -> list[dict]:
    """Speak `wav` on a started connection; return the events up to the first `until`.

    Any `error` on the way fails the test: the session must be healthy again.
    """
    pcm = read_pcm(wav) if rate == 16000 else resample(read_pcm(wav), rate)
    microphone = asyncio.create_task(_microphone(ws, pcm, rate), name="test-microphone")
    try:
        return await events_until(ws, until)
    finally:
        microphone.cancel()
        await asyncio.gather(microphone, return_exceptions=True)


async def assert_still_answers(ws, speech, rate: int = 16000) -> None:
    """The proof that a connection survived: a spoken question is transcribed on it."""
    events = await ask(ws, speech(QUESTION), rate=rate)
    final = events[-1]["text"]
    assert {"capital", "france"} <= words(final), f"transcript was {final!r}"


async def expect_close(ws, code: int, timeout_secs: float = MESSAGE_TIMEOUT_SECS):
    """Read (and drop) what is left until the server closes; check the close code."""
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(timeout_secs):
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None, "closed without a close frame from the server"
    assert closed.value.rcvd.code == code, closed.value.rcvd
    return closed.value.rcvd


async def wait_for_no_sessions(server) -> None:
    """Every session the test opened has ended and released its slot (polled, bounded)."""
    async with asyncio.timeout(MESSAGE_TIMEOUT_SECS):
        # The slot count is a plain counter with no event to wait on, so it is polled.
        while server.host.live:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def http_get(url: str) -> tuple[int, dict]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, json.loads(response.read())


# --- before `start` -----------------------------------------------------------------------------
