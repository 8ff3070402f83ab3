"""The pipecat transport of one member's conversation in a voice channel.

Input: that member's 16 kHz mono speech from the channel's receiver. Output: the bot's voice,
through the channel's `PlaybackFloor` so replies to different members never overlap.
"""

import asyncio
import contextlib

import numpy as np
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InterruptionFrame,
    InterruptionWorkerFrame,
    LLMFullResponseEndFrame,
    OutputAudioRawFrame,
    StartFrame,
    UserStartedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import TransportParams

from voxline.bots.discord.floor import PlaybackFloor
from voxline.bots.discord.receive import PIPELINE_SAMPLE_RATE
from voxline.config.voice import AgentSettings, VADSettings
from voxline.pipeline.fed_input import FedInputTransport, FedTransport

DISCORD_SAMPLE_RATE = 48000
MAX_QUEUED_INPUT_FRAMES = 250  # ~5 s of 20 ms packets; older audio is dropped if the loop lags
PACKET_SECS = 0.02
SILENCE_PACKET = bytes(int(PIPELINE_SAMPLE_RATE * PACKET_SECS) * 2)  # 16 kHz mono s16
# No packet for this long: the member's client stopped transmitting (it does after five Opus
# silence frames, when its voice activity ends), so silence stands in for what it no longer
# sends. Long enough that ordinary network jitter does not insert silence into speech.
STOPPED_SENDING_SECS = 0.06
SILENCE_FILL_MARGIN_SECS = 1.0


def silence_fill_secs(vad: VADSettings, agent: AgentSettings) -> float:
    """How long to feed silence after a member stops sending: past every wait before their
    turn ends (the VAD's stop time, the grace after an unfinished sentence), and a margin."""
    return vad.stop_secs + agent.incomplete_grace_secs + SILENCE_FILL_MARGIN_SECS


def speaker_transport_params() -> TransportParams:
    """Mono 16 kHz in; 48 kHz out in 20 ms chunks, real audio only (no auto silence: a quiet
    session must give up the floor), and no write timeout short enough to fire while a reply
    waits its turn behind others."""
    return TransportParams(
        audio_in_enabled=True, audio_in_sample_rate=PIPELINE_SAMPLE_RATE,
        audio_out_enabled=True, audio_out_sample_rate=DISCORD_SAMPLE_RATE,
        audio_out_10ms_chunks=2, audio_out_auto_silence=False,
        audio_out_write_timeout_secs=600.0,
    )


class SpeakerInput(FedInputTransport):
    """Pushes the member's audio, fed from the loop by the channel, into the pipeline.

    A Discord client sends nothing while its member is quiet, but the VAD ends a turn on
    silence it hears: from `STOPPED_SENDING_SECS` after the last packet, silence is pushed in
    real time (as discord.js and discord-ext-voice-recv do) for up to `silence_fill_secs`,
    enough for every end-of-turn wait; then nothing until the member speaks again.
    """

    def __init__(self, params: TransportParams, *, on_started, silence_fill_secs: float,
                 **kwargs):
        super().__init__(params, on_started=on_started, **kwargs)
        self._silence_fill_secs = silence_fill_secs
        self._queue: asyncio.Queue[InputAudioRawFrame] = asyncio.Queue(MAX_QUEUED_INPUT_FRAMES)
        self._fed = asyncio.Event()

    def feed(self, pcm: bytes) -> None:
        """16 kHz mono s16 from the receiver. Queued from the first packet, so the member's
        first words are not lost while their session starts; the oldest go if it overflows."""
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(
            InputAudioRawFrame(audio=pcm, sample_rate=PIPELINE_SAMPLE_RATE, num_channels=1)
        )
        self._fed.set()

    async def _feed_task_handler(self):
        loop = asyncio.get_running_loop()
        heard_at: float | None = None  # when the member's last packet was pushed
        filled_secs = 0.0  # silence pushed since
        while True:
            if not self._queue.empty():
                await self.push_audio_frame(self._queue.get_nowait())
                heard_at, filled_secs = loop.time(), 0.0
                continue
            self._fed.clear()
            if heard_at is None or filled_secs >= self._silence_fill_secs:
                heard_at = None  # quiet long enough: nothing until the member speaks again
                await self._fed.wait()
                continue
            next_due = heard_at + max(STOPPED_SENDING_SECS, filled_secs + PACKET_SECS)
            if await self._fed_before(next_due):
                continue
            # Whole packets of silence up to now: the first time, the whole stall.
            packets = max(1, round((loop.time() - heard_at - filled_secs) / PACKET_SECS))
            await self._push_silence(packets)
            filled_secs += packets * PACKET_SECS

    async def _fed_before(self, deadline: float) -> bool:
        """Whether the member's audio arrived before `deadline` (loop time)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await self._fed.wait()
        return not self._queue.empty()

    async def _push_silence(self, packets: int) -> None:
        for _ in range(packets):
            await self.push_audio_frame(InputAudioRawFrame(
                audio=SILENCE_PACKET, sample_rate=PIPELINE_SAMPLE_RATE, num_channels=1))


class SpeakerOutput(BaseOutputTransport):
    """Writes the bot's reply to this member onto the channel's floor, in turn.

    A member who starts speaking cuts whatever reply is playing (barge-in); a reply cut because
    *another* member spoke interrupts this session's pipeline too, so its LLM stops.
    """

    def __init__(self, params: TransportParams, *, floor: PlaybackFloor, **kwargs):
        super().__init__(params, **kwargs)
        self._floor = floor
        self._enable_barge_in = True

    def configure(self, *, enable_barge_in: bool) -> None:
        self._enable_barge_in = enable_barge_in

    async def start(self, frame: StartFrame):
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def stop(self, frame: EndFrame):
        await super().stop(frame)
        self._floor.drop(self)

    async def cancel(self, frame: CancelFrame):
        await super().cancel(frame)
        self._floor.drop(self)

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        # Wait for this reply's turn before its audio reaches the media sender, so the bot
        # "starts speaking" (events, metrics) when it really does. An interruption cancels the
        # wait (and drops the reply) like any other processing.
        if isinstance(frame, OutputAudioRawFrame) and not await self._floor.acquire(self):
            return
        await super().process_frame(frame, direction)
        if isinstance(frame, InterruptionFrame):
            self._floor.drop(self)
        elif isinstance(frame, UserStartedSpeakingFrame) and self._enable_barge_in:
            self._floor.barge_in(self)
        elif isinstance(frame, LLMFullResponseEndFrame):
            self._floor.reply_finished(self)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        mono = np.frombuffer(frame.audio, dtype=np.int16)
        stereo = np.repeat(mono, 2) if frame.num_channels == 1 else mono
        await self._floor.write(self, stereo.tobytes())
        return True

    def on_floor_taken(self) -> None:
        """Another member barged in on this session's reply: interrupt the whole session, as
        the worker does (from the pipeline's start), so the LLM stops and this output's own
        queued audio is dropped too — a broadcast from here would never reach this output."""
        self.create_task(self.push_frame(InterruptionWorkerFrame(), FrameDirection.UPSTREAM))


class SpeakerTransport(FedTransport):
    """`run_session`'s transport for one member; `disconnect()` ends that session."""

    def __init__(self, *, floor: PlaybackFloor, name: str,
                 silence_fill: float | None = None):
        super().__init__(name=name)
        params = speaker_transport_params()
        if silence_fill is None:  # as the default settings would have it
            silence_fill = silence_fill_secs(VADSettings(), AgentSettings())
        self._input = SpeakerInput(params, on_started=self._on_input_started,
                                   silence_fill_secs=silence_fill, name=f"{name}#input")
        self._output = SpeakerOutput(params, floor=floor, name=f"{name}#output")

    def input(self) -> SpeakerInput:
        return self._input

    def output(self) -> SpeakerOutput:
        return self._output

    def feed(self, pcm: bytes) -> None:
        self._input.feed(pcm)
