"""Where `voxline talk --mic` hears the user and plays the bot: the computer's microphone and
speakers through PortAudio (`SoundDevice`), or a wav spoken into a simulated room whose speaker
leaks back into its microphone (`WavRoomDevice`, for tests and the bench).

Both give 16-bit mono PCM in 20 ms microphone frames, in real time, and play the bot's PCM from
a queue that `clear()` empties when the user interrupts.
"""

import asyncio
import threading
import time
from typing import Protocol

from loguru import logger

from voxline.room import SAMPLE_RATE, LeakyRoom

FRAME_SECS = 0.02
MAX_BACKLOG_FRAMES = 50  # 1 s: older microphone frames are dropped, the stream stays live
PORTAUDIO_APT_PACKAGE = "libportaudio2"


class DeviceError(Exception):
    """No usable microphone or speaker; the message names what is missing and the fix."""


class AudioDevice(Protocol):
    """A microphone and a speaker, owned by one conversation, which closes them."""

    def open(self, *, sample_rate: int, output_sample_rate: int) -> None:
        """Start capturing at `sample_rate` and playing at `output_sample_rate` (Hz)."""

    async def read(self) -> bytes:
        """The next 20 ms microphone frame; waits for it in real time."""

    def play(self, pcm: bytes) -> None:
        """Queue bot audio for the speaker; returns at once."""

    def clear(self) -> None:
        """Drop the queued bot audio not yet played (the user interrupted)."""

    @property
    def queued_secs(self) -> float:
        """Bot audio still waiting to be played."""

    def close(self) -> None:
        """Stop both streams; safe to call twice or before `open`."""


class WavRoomDevice:
    """A user who says wav clips into a room whose speaker leaks into the microphone.

    The clips are 16 kHz 16-bit mono PCM, said one after the other as `say()` queues them, then
    silence; each 20 ms frame comes when its time has come. `room` plays what the client plays
    and mixes its echo into each frame (`LeakyRoom(None)`: headphones).
    """

    def __init__(self, room: LeakyRoom):
        self.room = room
        self.dropped_samples = 0  # of bot audio dropped by clear(): cut by an interruption
        self._speech = bytearray()
        self._frames = 0
        self._started: float | None = None
        self._frame_bytes = 0

    def say(self, pcm: bytes) -> None:
        """Queue a clip to be spoken after what is already queued."""
        self._speech.extend(pcm)

    def open(self, *, sample_rate: int, output_sample_rate: int) -> None:
        if sample_rate != self.room_rate or output_sample_rate != self.room_rate:
            raise DeviceError(f"the simulated room runs at {self.room_rate} Hz, not "
                              f"{sample_rate}/{output_sample_rate} Hz; ask the server for "
                              f"{self.room_rate} Hz both ways")
        self._frame_bytes = int(sample_rate * FRAME_SECS) * 2
        self._started = time.monotonic()

    @property
    def room_rate(self) -> int:
        """The room's one sample rate, Hz, both ways."""
        return SAMPLE_RATE

    async def read(self) -> bytes:
        if self._started is None:
            raise DeviceError("WavRoomDevice.read() before open()")
        self._frames += 1
        await asyncio.sleep(max(0.0, self._started + self._frames * FRAME_SECS
                                - time.monotonic()))
        frame = bytes(self._speech[: self._frame_bytes]).ljust(self._frame_bytes, b"\0")
        del self._speech[: self._frame_bytes]
        mixed, _played = self.room.capture(frame)
        return mixed

    def play(self, pcm: bytes) -> None:
        self.room.play(pcm)

    def clear(self) -> None:
        self.dropped_samples += round(self.room.queued_secs * self.room_rate)
        self.room.clear()

    @property
    def queued_secs(self) -> float:
        return self.room.queued_secs

    @property
    def is_speaking(self) -> bool:
        """Speech is still queued."""
        return bool(self._speech)

    def close(self) -> None:
        self._started = None


def import_sounddevice():
    """The `sounddevice` module, or a `DeviceError` naming the package that is missing."""
    try:
        import sounddevice
    except OSError as e:  # sounddevice raises this when it cannot load the PortAudio library
        raise DeviceError(f"cannot use audio devices: {e}; install PortAudio with `sudo apt-get "
                          f"install {PORTAUDIO_APT_PACKAGE}` (scripts/setup.sh does)") from None
    except ImportError:
        raise DeviceError("cannot use audio devices: the Python package sounddevice is not "
                          "installed; run `.venv/bin/pip install sounddevice==0.5.6`") from None
    return sounddevice


def parse_device(text: str | None) -> int | str | None:
    """A `--input-device`/`--output-device` value: an index when it is a number, else (part
    of) a name, as PortAudio matches it."""
    if text is None or not text.strip():
        return None
    return int(text) if text.strip().isdigit() else text


def device_table() -> str:
    """Every device PortAudio sees, one a line: index, name, host API, channels in/out, default
    rate; `>`/`<` marks the default input/output. A `DeviceError` when there are none."""
    sd = import_sounddevice()
    devices = sd.query_devices()
    if not devices:
        raise DeviceError("no audio devices found (PortAudio sees none); plug in a microphone "
                          "and speakers or headphones")
    default_in, default_out = sd.default.device
    hostapis = sd.query_hostapis()
    lines = [f"   {'#':>3}  {'name':<40} {'host API':<12} {'in':>3} {'out':>3}  rate"]
    for d in devices:
        mark = (">" if d["index"] == default_in else " ") + (
            "<" if d["index"] == default_out else " ")
        lines.append(f"{mark} {d['index']:>3}  {d['name'][:40]:<40} "
                     f"{hostapis[d['hostapi']]['name'][:12]:<12} {d['max_input_channels']:>3} "
                     f"{d['max_output_channels']:>3}  {d['default_samplerate']:g}")
    return "\n".join(lines)


def _find(sd, device: int | str | None, kind: str) -> dict:
    """PortAudio's description of the `kind` ("input"/"output") device, or a `DeviceError`."""
    what = "a microphone" if kind == "input" else "speakers or headphones"
    try:
        return sd.query_devices(device, kind)
    except (ValueError, sd.PortAudioError) as e:
        if device is None:
            raise DeviceError(f"no {kind} device found; plug in {what} or pass --{kind}-device "
                              "(`voxline talk --list-devices` lists them)") from None
        raise DeviceError(f"{kind} device {device!r} not found ({e}); pass --{kind}-device with "
                          "an index or name from `voxline talk --list-devices`") from None


class SoundDevice:
    """The computer's microphone and speakers through PortAudio (the `sounddevice` package).

    PortAudio's threads call back into us: captured frames hop onto the event loop's queue
    (oldest dropped beyond 1 s of backlog), and the output callback takes bot audio from a byte
    queue under a lock, silence when it runs dry.
    """

    def __init__(self, *, input_device: int | str | None = None,
                 output_device: int | str | None = None):
        self._input_device = input_device
        self._output_device = output_device
        self._streams: list = []
        self._frames: asyncio.Queue[bytes] = asyncio.Queue()
        self._playback = bytearray()
        self._lock = threading.Lock()
        self._output_rate = 0
        self.dropped_frames = 0

    def __str__(self) -> str:
        return "SoundDevice"

    def open(self, *, sample_rate: int, output_sample_rate: int) -> None:
        sd = import_sounddevice()
        mic = _find(sd, self._input_device, "input")
        speaker = _find(sd, self._output_device, "output")
        loop = asyncio.get_running_loop()
        self._output_rate = output_sample_rate

        def on_captured(indata, frames, when, status) -> None:  # PortAudio's thread
            loop.call_soon_threadsafe(self._put, bytes(indata))

        try:
            self._streams = [
                sd.RawInputStream(samplerate=sample_rate, blocksize=int(sample_rate * FRAME_SECS),
                                  device=mic["index"], channels=1, dtype="int16",
                                  latency="low", callback=on_captured),
                sd.RawOutputStream(samplerate=output_sample_rate, device=speaker["index"],
                                   channels=1, dtype="int16", latency="low",
                                   callback=self._on_output),
            ]
            for stream in self._streams:
                stream.start()
        except sd.PortAudioError as e:
            self.close()
            raise DeviceError(f"cannot open {mic['name']!r} at {sample_rate} Hz and "
                              f"{speaker['name']!r} at {output_sample_rate} Hz: {e}; pick other "
                              "devices with --input-device/--output-device") from None
        logger.debug("{}: capturing from {!r}, playing to {!r}", self, mic["name"],
                     speaker["name"])

    def _put(self, frame: bytes) -> None:
        if self._frames.qsize() >= MAX_BACKLOG_FRAMES:
            self._frames.get_nowait()
            self.dropped_frames += 1
            if self.dropped_frames == 1:
                logger.warning("{}: the event loop fell 1 s behind the microphone; dropping "
                               "the oldest frames", self)
        self._frames.put_nowait(frame)

    def _on_output(self, outdata, frames, when, status) -> None:  # PortAudio's thread
        with self._lock:
            n = min(len(self._playback), len(outdata))
            outdata[:n] = self._playback[:n]
            del self._playback[:n]
        outdata[n:] = bytes(len(outdata) - n)

    async def read(self) -> bytes:
        if not self._streams:
            raise DeviceError(f"{self}: read() before open()")
        return await self._frames.get()

    def play(self, pcm: bytes) -> None:
        with self._lock:
            self._playback.extend(pcm)

    def clear(self) -> None:
        with self._lock:
            self._playback.clear()

    @property
    def queued_secs(self) -> float:
        with self._lock:
            return len(self._playback) / 2 / self._output_rate if self._output_rate else 0.0

    def close(self) -> None:
        streams, self._streams = self._streams, []
        for stream in streams:
            stream.abort()  # at once: what was queued is not wanted any more
            stream.close()
