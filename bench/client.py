"""One benchmark session: a WebSocket client that talks like a microphone and times the bot."""

import asyncio
import json
import time
from dataclasses import dataclass, field

import numpy as np
import websockets

from voxline.bench.prompts import SAMPLE_RATE, Prompt
from voxline.transports.reply_end import ReplyEnd

FRAME_SECS = 0.02
FRAME_BYTES = int(SAMPLE_RATE * FRAME_SECS) * 2
AUDIBLE_RMS = 0.01
UNDERRUN_SLACK_SECS = 0.1
PAUSE_BETWEEN_TURNS_SECS = 1.0
# A reply with neither an event nor audio this long has stalled (not event alone: bot.text
# comes once a sentence has been played, and a rambling sentence can play for longer).
REPLY_IDLE_SECS = 20.0
TRAIL_EVENTS = 16  # the last events named in a stalled turn's error


@dataclass
class TurnResult:
    """What one user turn cost, seen from the client (and, when sent, the server's stages)."""

    session: int
    turn: int
    prompt_id: str
    reference: str
    transcript: str = ""
    reply: str = ""  # the bot's words as spoken (bot.text)
    v2v_secs: float | None = None  # end of user speech → first audible bot audio received
    stages: dict[str, float] = field(default_factory=dict)
    bot_audio_secs: float = 0.0
    underruns: int = 0  # times a player (with a 0.1 s buffer) would have run dry
    underrun_secs: float = 0.0  # silence those made, in seconds
    # Each of those as [seconds into the reply's audio where it fell silent, seconds silent]:
    # gaps in the opening seconds and gaps deep into a long reply have different causes.
    gaps: list[list[float]] = field(default_factory=list)
    error: str = ""


class Microphone:
    """Sends 20 ms frames in real time, forever: queued speech, else silence."""

    def __init__(self, ws):
        self._ws = ws
        self._frames: asyncio.Queue[tuple[bytes, asyncio.Future | None]] = asyncio.Queue()

    def say(self, prompt: Prompt) -> asyncio.Future:
        """Queue `prompt`; the future resolves to the monotonic time its speech end was sent."""
        sent = asyncio.get_running_loop().create_future()
        marker = int(prompt.speech_end_secs / FRAME_SECS)
        for index, offset in enumerate(range(0, len(prompt.pcm), FRAME_BYTES)):
            frame = prompt.pcm[offset: offset + FRAME_BYTES].ljust(FRAME_BYTES, b"\0")
            self._frames.put_nowait((frame, sent if index == marker else None))
        if not sent.done() and marker * FRAME_BYTES >= len(prompt.pcm):
            self._frames.put_nowait((bytes(FRAME_BYTES), sent))
        return sent

    async def run(self) -> None:
        """The sending loop (cancel it to stop)."""
        started, count = time.monotonic(), 0
        silence = bytes(FRAME_BYTES)
        while True:
            frame, marker = (self._frames.get_nowait() if not self._frames.empty()
                             else (silence, None))
            await self._ws.send(frame)
            if marker is not None and not marker.done():
                marker.set_result(time.monotonic())
            count += 1
            await asyncio.sleep(max(0.0, started + count * FRAME_SECS - time.monotonic()))


class Listener:
    """Receives events and bot audio, time-stamped on arrival."""

    def __init__(self, ws):
        self._ws = ws
        self.events: asyncio.Queue[tuple[float, dict]] = asyncio.Queue()
        self.audio: list[tuple[float, float, bool]] = []  # (arrival, seconds, audible)
        self._last_audible_at = 0.0

    def idle_secs(self, since: float) -> float:
        """Seconds since the last audible bot audio arrived, or since `since` if none did after."""
        return time.monotonic() - max(self._last_audible_at, since)

    async def run(self) -> None:
        """The receiving loop (ends when the server closes)."""
        async for message in self._ws:
            now = time.monotonic()
            if isinstance(message, bytes):
                samples = np.frombuffer(message, dtype=np.int16).astype(np.float32) / 32768
                audible = samples.size > 0 and float(np.sqrt(np.mean(samples**2))) > AUDIBLE_RMS
                self.audio.append((now, len(message) / 2 / SAMPLE_RATE, audible))
                self._last_audible_at = now if audible else self._last_audible_at
            else:
                self.events.put_nowait((now, json.loads(message)))


async def run_session(url: str, prompts: list[Prompt], *, session: int, turns: int,
                      turn_timeout_secs: float = 30.0,
                      start_delay_secs: float = 0.0) -> list[TurnResult]:
    """Talk `turns` times on one connection; one result per turn (errors recorded, not raised)."""
    await asyncio.sleep(start_delay_secs)
    async with websockets.connect(url, max_size=None, open_timeout=20) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": SAMPLE_RATE}))
        json.loads(await asyncio.wait_for(ws.recv(), 20))  # ready
        return await talk_turns(ws, prompts, session=session, turns=turns,
                                turn_timeout_secs=turn_timeout_secs)


async def talk_turns(wire, prompts: list[Prompt], *, session: int, turns: int,
                     turn_timeout_secs: float) -> list[TurnResult]:
    """The turns of one session on an open connection (`wire`: sends 16 kHz PCM frames and
    yields the server's messages as /ws has them)."""
    results: list[TurnResult] = []
    mic, listener = Microphone(wire), Listener(wire)
    tasks = [asyncio.create_task(mic.run()), asyncio.create_task(listener.run())]
    try:
        for turn in range(turns):
            prompt = prompts[(session + turn) % len(prompts)]
            result = TurnResult(session, turn, prompt.id, prompt.text)
            try:
                await _one_turn(mic, listener, prompt, result,
                               answer_timeout_secs=turn_timeout_secs + prompt.duration_secs)
            except TimeoutError as e:
                result.error = str(e)
            results.append(result)
            await asyncio.sleep(PAUSE_BETWEEN_TURNS_SECS)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return results


async def _one_turn(mic: Microphone, listener: Listener, prompt: Prompt, result: TurnResult,
                    *, answer_timeout_secs: float) -> None:
    """Say the prompt, then take events until the bot has answered and stopped. The answer
    must start within `answer_timeout_secs`; a long answer (a story) may then take as long as
    it needs, as long as events or its audio keep coming."""
    audio_mark = len(listener.audio)
    loop = asyncio.get_running_loop()
    answer_deadline = loop.time() + answer_timeout_secs
    speech_end = await mic.say(prompt)
    turn = TurnEvents(result)
    last_event_at = time.monotonic()
    while not turn.is_done:
        if turn.has_answered:
            wait = REPLY_IDLE_SECS - listener.idle_secs(since=last_event_at)
            if wait <= 0:
                raise TimeoutError(f"the reply stalled: {turn.waiting_for()}; the turn's "
                                   f"events: {turn.trail()}")
        else:
            wait = answer_deadline - loop.time()
        try:
            _, event = await asyncio.wait_for(listener.events.get(), max(0.0, wait))
        except TimeoutError:
            if not turn.has_answered:
                raise TimeoutError("no reply in time") from None
            continue  # audio may still be coming: checked above
        last_event_at = time.monotonic()
        turn.record(event)
    time_audio(listener.audio[audio_mark:], speech_end, result)


class TurnEvents:
    """Fills a TurnResult from the server's events (docs/protocol.md) until the bot has written
    and spoken its whole reply; shared by the WebSocket and the WebRTC clients, whose events are
    the same."""

    def __init__(self, result: TurnResult):
        self._result = result
        self._reply_end = ReplyEnd()
        self.is_done = False
        self._trail: list[str] = []  # each event in brief, for an error message

    @property
    def has_answered(self) -> bool:
        return self._reply_end.has_spoken

    def waiting_for(self) -> str:
        """What the reply still lacks, in words."""
        return self._reply_end.waiting_for()

    def trail(self) -> str:
        """The events so far in brief: what a stalled turn did see."""
        return ", ".join(self._trail[-TRAIL_EVENTS:]) or "none"

    def record(self, event: dict) -> None:
        """Take one event into the result; sets `is_done` once the reply is over."""
        self.is_done = self._reply_end.see(event)
        text = event.get("text")
        self._trail.append(f"{event.get('type')} {text[:40]!r}" if text else
                           str(event.get("type")))
        result, kind = self._result, event.get("type")
        if kind == "transcript.final":
            result.transcript = f"{result.transcript} {event['text']}".strip()
        elif kind == "turn.metrics":
            result.stages = event["stages"]
        elif kind == "bot.text":
            result.reply = f"{result.reply} {event['text']}".strip()
        elif kind == "error":
            result.error = f"{event.get('code')}: {event.get('message')}"


def time_audio(audio: list[tuple[float, float, bool]], speech_end: float,
               result: TurnResult) -> None:
    """First audible bot audio after the user's speech ended, and where playback ran dry: a
    player that starts at the first audible piece and keeps `UNDERRUN_SLACK_SECS` of buffer.
    `audio` is (arrival, seconds, audible) per piece received, on the clock of `speech_end`."""
    audible = [(at, secs) for at, secs, loud in audio if loud and at >= speech_end]
    if not audible:
        result.error = result.error or "no audible reply"
        return
    first = audible[0][0]
    result.v2v_secs = first - speech_end
    received, played_until = 0.0, first
    for at, secs, _ in (a for a in audio if a[0] >= first):
        if at > played_until + UNDERRUN_SLACK_SECS:  # the player ran out: silence, then this
            result.underruns += 1
            result.underrun_secs += at - played_until
            result.gaps.append([round(received, 2), round(at - played_until, 3)])
            played_until = at
        played_until += secs
        received += secs
    result.bot_audio_secs = received
