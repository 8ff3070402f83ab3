"""`voxline talk`: the reference WebSocket client. Streams a wav in real time, prints what
happens, saves the reply audio."""

import asyncio
import json
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import websockets

from voxline.logs import redact_secrets

CHUNK_SECS = 0.02
TRAILING_SILENCE_SECS = 1.5  # lets the server's VAD hear the end of the question


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


class ReplyEnd:
    """Tells, event by event, when the bot has finished answering: it wrote its whole reply
    (`bot.reply`), all of it has been spoken (`bot.text`) or it was interrupted, and its audio
    has stopped. A `bot.stopped_speaking` alone is not the end: the audio pauses whenever
    synthesis falls behind between sentences."""

    def __init__(self):
        self.has_spoken = False
        self._is_speaking = False
        self._spoken = ""
        self._reply: dict | None = None

    def see(self, event: dict) -> bool:
        """Take the next event; True once the reply is over."""
        match event.get("type"):
            case "bot.started_speaking":
                self.has_spoken = self._is_speaking = True
            case "bot.stopped_speaking":
                self._is_speaking = False
            case "bot.text":
                self._spoken += _letters(event["text"])
            case "bot.reply":
                self._reply = event
        return not self.waiting_for()

    def waiting_for(self) -> str:
        """What the reply still lacks, in words ("" once it is over): for an error message
        when it never comes."""
        if not self.has_spoken:
            return "the bot has not started speaking"
        if self._is_speaking:
            return "the bot is still speaking"
        if self._reply is None:
            return "the bot has not finished writing its reply (no bot.reply)"
        if self._reply["interrupted"] or _letters(self._reply["text"]) in self._spoken:
            return ""
        return (f"part of the reply was never spoken (bot.reply {self._reply['text']!r}, "
                f"spoken letters {self._spoken[-80:]!r})")


def _letters(text: str) -> str:
    """Only letters and digits: spoken sentences and the reply differ in spaces between them."""
    return "".join(ch for ch in text.lower() if ch.isalnum())


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
    try:
        async with websockets.connect(url, max_size=None, open_timeout=10) as ws:
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
    except (OSError, websockets.InvalidHandshake, websockets.InvalidURI) as e:
        raise TalkError(redact_secrets(  # the URL may carry ?token=<API key>
            f"cannot connect to {url}: {e}; is `voxline serve` running there?"
        )) from None
    except websockets.ConnectionClosed as e:
        reason = f" ({e.rcvd.code} {e.rcvd.reason})" if e.rcvd else ""
        raise TalkError(f"the server closed the connection mid-reply{reason}") from None
    if out:
        with wave.open(str(out), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
            w.writeframes(bytes(result.reply_pcm))
        printer(f"reply audio: {len(result.reply_pcm) / 2 / rate:.2f}s -> {out}")
    return result


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
        if isinstance(message, bytes):
            result.reply_pcm.extend(message)
            continue
        event = json.loads(message)
        result.events.append(event)
        printer(_describe(event))
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
