"""The turn-taking bench's scripted client: one WebSocket call with a live microphone in a
room. Every 20 ms it sends a microphone frame (scripted speech, else silence, plus an optional
background bed) mixed with what the loudspeaker leaks back (`voxline.room.LeakyRoom`; no room
is headphones), and it plays every piece of bot audio it receives through that loudspeaker.
What was played, frame by frame, is the record the scores are read from.
"""

import asyncio
import json
from collections import deque

import numpy as np
import websockets

from voxline.bench.client import AUDIBLE_RMS
from voxline.bench.prompts import SAMPLE_RATE, Prompt
from voxline.bench.turn_audio import rms, speech_start, to_float, to_pcm
from voxline.bench.turn_scoring import (
    FRAME_SECS,
    CallRecord,
    Utterance,
    first_audible,
    last_audible,
)
from voxline.room import LeakyRoom, Room
from voxline.transports.reply_end import ReplyEnd

FRAME_SAMPLES = int(SAMPLE_RATE * FRAME_SECS)
CONNECT_TIMEOUT_SECS = 20.0
POLL_SECS = FRAME_SECS


class CallError(Exception):
    """The call could not go on (refused, closed, or the server sent an error)."""


class ScriptedCall:
    """One conversation on `/ws` (`async with`): say clips on cue, wait on what the user hears.

    `system_prompt` replaces the server's for this call (a storyteller, for long replies).
    `echo_cancellation` None sends no such field; True/False asks the server for (no) echo
    cancellation, and is dropped if this server refuses the field (`echo_cancellation_sent`
    says which).
    """

    def __init__(self, url: str, *, room: Room | None = None, system_prompt: str | None = None,
                 echo_cancellation: bool | None = None):
        self._url = url
        self._room = LeakyRoom(room)
        self._system_prompt = system_prompt
        self._echo_cancellation = echo_cancellation
        self.echo_cancellation_sent = False
        self.record = CallRecord()
        self._speech: deque[bytes] = deque()
        self._background: np.ndarray | None = None
        self._background_at = 0
        self._ws = None
        self._tasks: list[asyncio.Task] = []
        self._started_at = 0.0

    async def __aenter__(self) -> "ScriptedCall":
        self._ws = await websockets.connect(self._url, max_size=None,
                                            open_timeout=CONNECT_TIMEOUT_SECS)
        try:
            await self._start()
        except BaseException:
            await self._ws.close()
            raise
        self._started_at = asyncio.get_running_loop().time()
        self._tasks = [asyncio.create_task(self._microphone(), name="turn-call-microphone"),
                       asyncio.create_task(self._listen(), name="turn-call-listener")]
        return self

    async def __aexit__(self, *exc) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._ws.close()

    @property
    def now(self) -> float:
        """Seconds on the call's clock (the first microphone frame is 0)."""
        return asyncio.get_running_loop().time() - self._started_at

    def say(self, clip: Prompt, label: str = "") -> Utterance:
        """Queue `clip` after whatever is still queued; returns where its speech will begin
        and end on the call's clock (the microphone sends on a fixed 20 ms schedule)."""
        frame_bytes = FRAME_SAMPLES * 2
        at = (len(self.record.played) + len(self._speech)) * FRAME_SECS
        for offset in range(0, len(clip.pcm), frame_bytes):
            self._speech.append(clip.pcm[offset: offset + frame_bytes].ljust(frame_bytes, b"\0"))
        onset = at + speech_start(clip.pcm)
        said = Utterance(label or clip.id, clip.text, round(onset, 3),
                         round(at + clip.speech_end_secs, 3))
        self.record.utterances.append(said)
        return said

    def set_background(self, audio: np.ndarray | None) -> None:
        """Mix `audio` (floats, 16 kHz, looped) into every frame from now on; None: stop."""
        self._background, self._background_at = audio, 0

    async def wait_until(self, secs: float) -> None:
        """Sleep until the call's clock reads `secs`."""
        self._check()
        await asyncio.sleep(max(0.0, secs - self.now))
        self._check()

    async def wait_audible(self, after: float, timeout_secs: float) -> float | None:
        """When bot audio was first heard after `after` (None if not within the timeout)."""
        deadline = self.now + timeout_secs
        while self.now < deadline:
            if (heard := first_audible(self.record, after)) is not None:
                return heard
            await self.wait_until(self.now + POLL_SECS)
        return None

    async def wait_event(self, kind: str, after: float, timeout_secs: float) -> float | None:
        """When the first `kind` event at or after `after` arrived (None: not in time)."""
        deadline = self.now + timeout_secs
        while self.now < deadline:
            if (at := self.record.first_event_at(kind, after)) is not None:
                return at
            await self.wait_until(self.now + POLL_SECS)
        return None

    async def wait_reply_end(self, after: float, timeout_secs: float,
                             quiet_secs: float = 1.0) -> bool:
        """Wait until the reply begun after `after` is over (written, spoken or interrupted,
        its audio stopped; nothing left to play) and `quiet_secs` have passed without bot
        audio. False if that did not happen within the timeout."""
        deadline = self.now + timeout_secs
        while self.now < deadline:
            end = ReplyEnd()
            for t, event in self.record.events:
                if t >= after:
                    end.see(event)
            is_over = not end.waiting_for()
            last = last_audible(self.record, after) or after
            if is_over and self._room.queued_secs == 0 and self.now - last >= quiet_secs:
                return True
            await self.wait_until(self.now + POLL_SECS)
        return False

    async def _start(self) -> None:
        start = {"type": "start", "sample_rate": SAMPLE_RATE, "greeting": ""}
        if self._system_prompt:
            start["system_prompt"] = self._system_prompt
        if self._echo_cancellation is not None:
            await self._ws.send(json.dumps({**start,
                                            "echo_cancellation": self._echo_cancellation}))
            answer = await self._answer()
            if answer.get("type") == "ready":
                self.echo_cancellation_sent = True
                return
            if answer.get("code") != "bad_start":
                raise CallError(f"start refused: {answer}")
        await self._ws.send(json.dumps(start))
        answer = await self._answer()
        if answer.get("type") != "ready":
            raise CallError(f"start refused: {answer}")

    async def _answer(self) -> dict:
        return json.loads(await asyncio.wait_for(self._ws.recv(), CONNECT_TIMEOUT_SECS))

    async def _microphone(self) -> None:
        """Sends one frame every 20 ms on a fixed schedule (catching up after a late wake),
        plays the same 20 ms of bot audio, records whether it was audible."""
        loop = asyncio.get_running_loop()
        silence = bytes(FRAME_SAMPLES * 2)
        while True:
            frame = self._speech.popleft() if self._speech else silence
            if self._background is not None:
                frame = to_pcm(to_float(frame) + self._next_background())
            mixed, played = self._room.capture(frame)
            self.record.played.append(rms(to_float(played)) > AUDIBLE_RMS)
            await self._ws.send(mixed)
            due = self._started_at + len(self.record.played) * FRAME_SECS
            await asyncio.sleep(max(0.0, due - loop.time()))

    def _next_background(self) -> np.ndarray:
        audio = self._background
        indices = (self._background_at + np.arange(FRAME_SAMPLES)) % len(audio)
        self._background_at = int(indices[-1]) + 1
        return audio[indices]

    async def _listen(self) -> None:
        """Bot audio to the loudspeaker; events to the record. On `interrupted` the player
        drops what it has not played yet, as a client must."""
        async for message in self._ws:
            if isinstance(message, bytes):
                self._room.play(message)
                continue
            event = json.loads(message)
            self.record.events.append((round(self.now, 3), event))
            if event.get("type") == "interrupted":
                self._room.clear()

    def _check(self) -> None:
        """Raise if the microphone or the listener has ended (the connection closed)."""
        for task in self._tasks:
            if task.done():
                error = None if task.cancelled() else task.exception()
                raise CallError(f"the call ended early: {error or 'connection closed'}")
