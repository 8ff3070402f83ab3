"""`voxline talk`: the reference WebSocket client. Streams a wav in real time (`talk`), or
holds a conversation through a microphone and speakers (`talk_live`); prints what happens."""

import asyncio
import json
import time
import wave
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import websockets

from voxline.audio_devices import AudioDevice
from voxline.logs import redact_secrets
from voxline.transports.reply_end import ReplyEnd

CHUNK_SECS = 0.02
TRAILING_SILENCE_SECS = 1.5  # lets the server's VAD hear the end of the question
LIVE_SAMPLE_RATE = 16000  # microphone and bot audio of `talk_live`, Hz: the server's own rate
# After the last turn, bot audio may still be on its way (events and audio travel apart):
# play-out ends once the queue has played and nothing more came for this long.
PLAY_OUT_GRACE_SECS = 0.3
READY_TIMEOUT_SECS = 15  # the server answers `start` at once, unless it is not voxline


class TalkError(Exception):
    """The wav or the server made the conversation impossible; the message says why."""


@dataclass
class TalkResult:
    """Everything one `talk` run saw."""

    sample_rate: int
    events: list[dict] = field(default_factory=list)
    reply_pcm: bytearray = field(default_factory=bytearray)

    def texts(self, kind: str) -> list[str]:
        """The `text` of every event of `kind`, in order."""
        return [e["text"] for e in self.events if e.get("type") == kind]


def read_wav(path: Path) -> tuple[bytes, int]:
    """16-bit mono PCM and its rate, or a clear `TalkError`."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise TalkError(f"{path}: need 16-bit mono PCM wav (try: sox in.wav -b 16 -c 1 "
                                f"out.wav)")
            return w.readframes(w.getnframes()), w.getframerate()
    except (OSError, wave.Error, EOFError) as e:
        raise TalkError(f"{path}: cannot read wav: {e}") from None


async def talk(*, url: str, wav: Path, out: Path | None, timeout_secs: float,
               printer=print) -> TalkResult:
    """Send `wav` as one user turn and collect events and audio until the bot finishes."""
    pcm, rate = read_wav(wav)
    async with _connect(url) as ws:
        result = TalkResult(rate)
        await ws.send(json.dumps({"type": "start", "sample_rate": rate}))
        sender = asyncio.create_task(_stream(ws, pcm, rate))
        try:
            await asyncio.wait_for(_receive(ws, result, printer), timeout_secs)
        except TimeoutError:
            raise TalkError(f"no complete reply within {timeout_secs:g}s") from None
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
    if out:
        with wave.open(str(out), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
            w.writeframes(bytes(result.reply_pcm))
        printer(f"reply audio: {len(result.reply_pcm) / 2 / rate:.2f}s -> {out}")
    return result


@asynccontextmanager
async def _connect(url: str) -> AsyncIterator[websockets.ClientConnection]:
    """A connection to the server; failing to connect, or losing it, is a `TalkError`."""
    try:
        async with websockets.connect(url, max_size=None, open_timeout=10) as ws:
            yield ws
    except (OSError, websockets.InvalidHandshake, websockets.InvalidURI) as e:
        raise TalkError(redact_secrets(  # the URL may carry ?token=<API key>
            f"cannot connect to {url}: {e}; is `voxline serve` running there?"
        )) from None
    except websockets.ConnectionClosed as e:
        reason = f" ({e.rcvd.code} {e.rcvd.reason})" if e.rcvd else ""
        raise TalkError(f"the server closed the connection mid-reply{reason}") from None


async def _stream(ws, pcm: bytes, rate: int) -> None:
    """Send audio in real time, 20 ms at a time, then silence (like a live microphone)."""
    chunk = int(rate * CHUNK_SECS) * 2
    audio = pcm + bytes(int(rate * TRAILING_SILENCE_SECS) * 2)
    started = time.monotonic()
    for i, offset in enumerate(range(0, len(audio), chunk)):
        await ws.send(audio[offset: offset + chunk])
        await asyncio.sleep(max(0.0, started + (i + 1) * CHUNK_SECS - time.monotonic()))
    silence = bytes(chunk)
    while True:  # keep the stream alive as a real microphone would
        await ws.send(silence)
        await asyncio.sleep(CHUNK_SECS)


async def _receive(ws, result: TalkResult, printer) -> None:
    """Until the bot has answered (its reply written and spoken) or the server closed."""
    answered, reply_end = False, ReplyEnd()
    async for message in ws:
        if (event := _take(message, None, result, printer)) is None:
            continue
        if event["type"] == "error" and not result.reply_pcm:
            raise TalkError(f"server error {event['code']}: {event['message']}")
        if event["type"] == "turn.metrics":  # a reply, not the greeting
            answered = True
        if reply_end.see(event) and answered:
            return


def _describe(event: dict) -> str:
    kind = event["type"]
    if kind == "turn.metrics":
        stages = ", ".join(f"{k.removesuffix('_secs')} {v:.2f}s" for k, v in
                           event["stages"].items())
        return f"latency: {stages}"
    if "text" in event:
        return f"{kind}: {event['text']}"
    if kind == "error":
        return f"error {event['code']}: {event['message']}"
    return kind


async def talk_live(*, url: str, device: AudioDevice, enable_echo_cancellation: bool = True,
                    turns: int | None = None, on_answered: Callable[[int], None] | None = None,
                    printer=print) -> TalkResult:
    """Hold one conversation through `device`: its microphone streams to the server, the bot's
    audio plays on its speaker (dropped when the user interrupts), events are printed.

    Runs until cancelled (Ctrl-C), the server ends the session, or `turns` replies have ended;
    then the last one plays out first. `on_answered(n)` is called as the n-th reply ends.
    `enable_echo_cancellation` asks the server to take the speaker's echo out of the microphone
    (off: the field is not sent, for headphones and older servers). The device is opened before
    connecting, so a missing microphone fails before a session starts, and closed at the end.
    """
    start: dict = {"type": "start", "sample_rate": LIVE_SAMPLE_RATE}
    if enable_echo_cancellation:
        start["echo_cancellation"] = True
    device.open(sample_rate=LIVE_SAMPLE_RATE, output_sample_rate=LIVE_SAMPLE_RATE)
    try:
        async with _connect(url) as ws:
            await ws.send(json.dumps(start))
            try:
                result = TalkResult(await asyncio.wait_for(_ready(ws, start, printer),
                                                           READY_TIMEOUT_SECS))
            except TimeoutError:
                raise TalkError(f"no `ready` within {READY_TIMEOUT_SECS}s of `start`; is "
                                "it a voxline server?") from None
            sender = asyncio.create_task(_pump(ws, device))
            try:
                if await _converse(ws, device, result, turns, on_answered, printer):
                    await _play_out(ws, device, result, printer)
                else:
                    printer(f"the server ended the session ({ws.close_code} {ws.close_reason})")
            finally:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
    finally:
        device.close()
    return result


async def _ready(ws, start: dict, printer) -> int:
    """Wait for `ready` and return the rate of the bot's audio, or a `TalkError` naming the fix
    for the server's refusal."""
    async for message in ws:
        if isinstance(message, bytes):
            continue
        event = json.loads(message)
        printer(_describe(event))
        if event["type"] == "ready":
            if event["output_sample_rate"] != LIVE_SAMPLE_RATE:
                raise TalkError(f"the server sends bot audio at {event['output_sample_rate']} "
                                f"Hz, not the {LIVE_SAMPLE_RATE} Hz asked for")
            return event["output_sample_rate"]
        if event["type"] == "error" and event["code"] == "bad_start" and start.get(
                "echo_cancellation"):
            raise TalkError(f"the server does not know echo cancellation ({event['message']}); "
                            "update the server to a voxline with echo cancellation, or pass "
                            "--no-echo-cancellation if you wear headphones")
        if event["type"] == "error":
            raise TalkError(f"server error {event['code']}: {event['message']}")
    raise TalkError(f"the server closed the connection before `ready` ({ws.close_code} "
                    f"{ws.close_reason})")


async def _pump(ws, device: AudioDevice) -> None:
    """Send each microphone frame as it is captured, for as long as the conversation lasts."""
    while True:
        await ws.send(await device.read())


async def _converse(ws, device: AudioDevice, result: TalkResult, turns: int | None,
                    on_answered: Callable[[int], None] | None, printer) -> bool:
    """Play and print what the server sends; True once `turns` replies have ended, False when
    the server ends the session. A turn starts with the user's final transcript, so a greeting
    is not counted."""
    answered, reply_end = 0, None
    async for message in ws:
        event = _take(message, device, result, printer)
        if event is None:
            continue
        if event["type"] == "transcript.final" and reply_end is None:
            reply_end = ReplyEnd()
        if reply_end is not None and reply_end.see(event):
            answered, reply_end = answered + 1, None
            if on_answered:
                on_answered(answered)
            if answered == turns:
                return True
    return False


async def _play_out(ws, device: AudioDevice, result: TalkResult, printer) -> None:
    """Let the last reply play to its end, with the audio still on its way."""
    try:
        while True:
            wait_secs = device.queued_secs + PLAY_OUT_GRACE_SECS
            _take(await asyncio.wait_for(ws.recv(), wait_secs), device, result, printer)
    except (TimeoutError, websockets.ConnectionClosedOK):
        return


def _take(message: str | bytes, device: AudioDevice | None, result: TalkResult,
          printer) -> dict | None:
    """Bot audio is kept and goes to the speaker, if any; an event is kept, printed and
    returned; `interrupted` drops the audio not yet played."""
    if isinstance(message, bytes):
        result.reply_pcm.extend(message)
        if device:
            device.play(message)
        return None
    event = json.loads(message)
    result.events.append(event)
    printer(_describe(event))
    if device and event["type"] == "interrupted":
        device.clear()
    return event
