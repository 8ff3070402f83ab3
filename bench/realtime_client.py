"""`voxline bench --protocol realtime`: the bench's sessions over `/v1/realtime`, OpenAI's
Realtime API, on the same prompts and the same timing as the `/ws` client.

The Realtime connection is wrapped to look like the `/ws` one to the bench's Microphone and
Listener: 20 ms frames of 16 kHz PCM go out as `input_audio_buffer.append` events at 24 kHz,
and the server's events come back as `/ws` messages (audio deltas as PCM at 16 kHz, the
response's lifecycle as bot.started_speaking / bot.text / bot.reply / bot.stopped_speaking), so
voice-to-voice is measured identically: end of the user's speech in the sent audio → first
audible bot audio received.
"""

import base64
import json

import numpy as np
import soxr
import websockets

from voxline.bench.client import TurnResult, talk_turns
from voxline.bench.prompts import SAMPLE_RATE, Prompt

REALTIME_RATE = 24000


class RealtimeWire:
    """A `/v1/realtime` WebSocket seen as a `/ws` one: `send(pcm)` and async iteration."""

    def __init__(self, ws):
        self._ws = ws
        self._up = soxr.ResampleStream(SAMPLE_RATE, REALTIME_RATE, 1, dtype="int16")
        self._down = soxr.ResampleStream(REALTIME_RATE, SAMPLE_RATE, 1, dtype="int16")
        self._transcript = ""

    async def send(self, pcm: bytes) -> None:
        samples = self._up.resample_chunk(np.frombuffer(pcm, dtype=np.int16))
        await self._ws.send(json.dumps({"type": "input_audio_buffer.append",
                                        "audio": base64.b64encode(samples.tobytes()).decode()}))

    async def __aiter__(self):
        async for message in self._ws:
            for translated in self._as_ws_messages(json.loads(message)):
                yield translated

    def _as_ws_messages(self, event: dict) -> list:
        kind = event.get("type")
        if kind == "response.output_audio.delta":
            pcm24 = np.frombuffer(base64.b64decode(event["delta"]), dtype=np.int16)
            return [self._down.resample_chunk(pcm24).tobytes()]
        if kind == "conversation.item.input_audio_transcription.completed":
            return [json.dumps({"type": "transcript.final", "text": event["transcript"]})]
        if kind == "response.created":
            self._transcript = ""
            return [json.dumps({"type": "bot.started_speaking"})]
        if kind == "response.output_audio_transcript.delta":
            self._transcript += event["delta"]
            return [json.dumps({"type": "bot.text", "text": event["delta"]})]
        if kind == "response.done":
            cancelled = event["response"]["status"] != "completed"
            return [json.dumps({"type": "bot.reply", "text": self._transcript,
                                "interrupted": cancelled}),
                    json.dumps({"type": "bot.stopped_speaking"})]
        if kind == "error":
            error = event["error"]
            return [json.dumps({"type": "error", "code": error["code"],
                                "message": error["message"]})]
        return []


async def run_realtime_session(http_url: str, prompts: list[Prompt], *, session: int,
                               turns: int, turn_timeout_secs: float = 30.0) -> list[TurnResult]:
    """Talk `turns` times on one Realtime connection; one result per turn (as `run_session`)."""
    url = http_url.replace("http", "ws", 1) + "/v1/realtime?model=bench"
    async with websockets.connect(url, max_size=None, open_timeout=20) as ws:
        return await talk_turns(RealtimeWire(ws), prompts, session=session, turns=turns,
                                turn_timeout_secs=turn_timeout_secs)
