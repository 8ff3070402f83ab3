"""The pipecat transport of one OpenAI Realtime API connection: the connection's handler feeds
it the client's audio and control frames; the bot's audio and what the pipeline says about the
turn (the user's turn started or ended, an interruption) go back out through callbacks."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    StartFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import TransportParams

from voxline.pipeline.fed_input import FedInputTransport, FedTransport

PIPELINE_SAMPLE_RATE = 16000
OUTPUT_SAMPLE_RATE = 24000  # the Realtime API's pcm16
MAX_QUEUED_INPUT_FRAMES = 500  # ~10 s of 20 ms chunks; the oldest go if the loop lags


@dataclass
class RealtimeCallbacks:
    """What the connection hears from the pipeline, in pipeline order."""

    audio: Callable[[bytes], Awaitable[None]]  # 24 kHz mono s16 of the bot, as it plays
    user_started: Callable[[], None]
    user_stopped: Callable[[], None]
    interrupted: Callable[[], None]


class RealtimeInput(FedInputTransport):
    """Pushes what the connection feeds (16 kHz audio, control frames) into the pipeline."""

    def __init__(self, params: TransportParams, *, on_started, **kwargs):
        super().__init__(params, on_started=on_started, **kwargs)
        self._queue: asyncio.Queue[Frame] = asyncio.Queue(MAX_QUEUED_INPUT_FRAMES)

    def feed(self, frame: Frame) -> None:
        """Queue a frame for the pipeline (from the first message on, so nothing is lost while
        the session starts); the oldest audio goes if the queue overflows."""
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(frame)

    async def interrupt(self) -> None:
        """Cut the bot's reply now (`response.cancel`)."""
        await self.broadcast_interruption()

    async def _feed_task_handler(self):
        while True:
            frame = await self._queue.get()
            if isinstance(frame, InputAudioRawFrame):
                await self.push_audio_frame(frame)
            else:
                await self.push_frame(frame)


class RealtimeOutput(BaseOutputTransport):
    """Hands the bot's audio to the connection at the pace it plays (as the WebSocket transport
    does), so that an interruption keeps only what the user heard; reports turns and
    interruptions."""

    def __init__(self, params: TransportParams, *, callbacks: RealtimeCallbacks, **kwargs):
        super().__init__(params, **kwargs)
        self._callbacks = callbacks
        self._next_send_at = 0.0

    async def start(self, frame: StartFrame):
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, InterruptionFrame):
            self._next_send_at = 0.0
            self._callbacks.interrupted()
        elif isinstance(frame, UserStartedSpeakingFrame):
            self._callbacks.user_started()
        elif isinstance(frame, UserStoppedSpeakingFrame):
            self._callbacks.user_stopped()

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        await self._callbacks.audio(frame.audio)
        # Play-out clock: the next chunk is due when this one has played.
        now = time.monotonic()
        self._next_send_at = max(self._next_send_at, now) + len(frame.audio) / 2 / \
            OUTPUT_SAMPLE_RATE
        await asyncio.sleep(max(0.0, self._next_send_at - now - 0.02))
        return True


class RealtimeTransport(FedTransport):
    """`Session`'s transport for one Realtime connection; `disconnect()` ends that session."""

    def __init__(self, *, callbacks: RealtimeCallbacks, name: str):
        super().__init__(name=name)
        params = TransportParams(
            audio_in_enabled=True, audio_in_sample_rate=PIPELINE_SAMPLE_RATE,
            audio_out_enabled=True, audio_out_sample_rate=OUTPUT_SAMPLE_RATE,
            audio_out_10ms_chunks=2, audio_out_auto_silence=False)
        self._input = RealtimeInput(params, on_started=self._on_input_started,
                                    name=f"{name}#input")
        self._output = RealtimeOutput(params, callbacks=callbacks, name=f"{name}#output")

    def input(self) -> RealtimeInput:
        return self._input

    def output(self) -> RealtimeOutput:
        return self._output
