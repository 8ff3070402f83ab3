"""Audio files in and out of the OpenAI-compatible endpoints, through PyAV (FFmpeg): any
container FFmpeg reads (wav, mp3, ogg/opus, flac, webm, m4a, ...) decoded to Whisper's PCM, and
synthesized PCM encoded as it is made, for a body that streams."""

import io
from dataclasses import dataclass

import av
import numpy as np

OUTPUT_RATE = 24000  # what OpenAI's speech endpoint returns in every format


class UnreadableAudio(ValueError):
    """Bytes FFmpeg cannot read as audio."""


@dataclass(frozen=True)
class OutputFormat:
    """One `response_format` of the speech endpoint: FFmpeg's muxer and encoder for it (None
    for raw PCM) and its media type."""

    muxer: str | None
    codec: str | None
    media_type: str


OUTPUT_FORMATS = {
    "mp3": OutputFormat("mp3", "libmp3lame", "audio/mpeg"),
    "opus": OutputFormat("ogg", "libopus", "audio/ogg"),
    "aac": OutputFormat("adts", "aac", "audio/aac"),
    "flac": OutputFormat("flac", "flac", "audio/flac"),
    "wav": OutputFormat("wav", "pcm_s16le", "audio/wav"),
    "pcm": OutputFormat(None, None, "audio/pcm"),  # 24 kHz 16-bit little-endian mono, no header
}


def decode_to_pcm16(data: bytes, *, rate: int, max_secs: float) -> bytes:
    """The first audio stream of a file as 16-bit mono PCM at `rate`. Raises `UnreadableAudio`
    for what FFmpeg cannot read, and for audio longer than `max_secs`. Blocking (CPU)."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise UnreadableAudio("the file has no audio stream")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            pcm = bytearray()
            limit = int(max_secs * rate) * 2
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    pcm += out.to_ndarray().tobytes()
                if len(pcm) > limit:
                    raise UnreadableAudio(f"the audio is longer than {max_secs:g} s")
            for out in resampler.resample(None):
                pcm += out.to_ndarray().tobytes()
    except (av.error.FFmpegError, ValueError) as e:
        if isinstance(e, UnreadableAudio):
            raise
        raise UnreadableAudio(f"the file is not audio that FFmpeg can read ({e})") from None
    return bytes(pcm[:limit])


class _Sink(io.RawIOBase):
    """Where the muxer writes: not seekable, so every format is written for streaming (a wav's
    sizes say "unknown", as OpenAI's streamed wav does), and taken away piece by piece."""

    def __init__(self):
        super().__init__()
        self._written = bytearray()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data) -> int:
        self._written += data
        return len(data)

    def take(self) -> bytes:
        taken = bytes(self._written)
        self._written.clear()
        return taken


class StreamingEncoder:
    """16-bit mono PCM at `input_rate` in, bytes of `response_format` out as they are ready:
    `encode(pcm)` for each piece, then `finish()`."""

    def __init__(self, response_format: str, input_rate: int):
        self._format = OUTPUT_FORMATS[response_format]
        self._input_rate = input_rate
        self._sink = _Sink()
        self._container = self._stream = None
        if self._format.muxer is None:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=OUTPUT_RATE)
            return
        self._container = av.open(self._sink, mode="w", format=self._format.muxer)
        self._stream = self._container.add_stream(self._format.codec, rate=OUTPUT_RATE)
        self._stream.layout = "mono"
        codec = self._stream.codec_context
        self._resampler = av.AudioResampler(format=codec.format.name, layout="mono",
                                            rate=OUTPUT_RATE, frame_size=codec.frame_size or None)

    @property
    def media_type(self) -> str:
        return self._format.media_type

    def encode(self, pcm: bytes) -> bytes:
        """The output bytes ready after `pcm` (possibly none yet: encoders work in frames)."""
        frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, dtype=np.int16).reshape(1, -1),
                                           format="s16", layout="mono")
        frame.sample_rate = self._input_rate
        return self._write(self._resampler.resample(frame))

    def finish(self) -> bytes:
        """The rest: what the resampler and the encoder held back, and the container's end."""
        tail = self._write(self._resampler.resample(None))
        if self._container is None:
            return tail
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return tail + self._sink.take()

    def _write(self, frames: list[av.AudioFrame]) -> bytes:
        if self._container is None:
            return b"".join(f.to_ndarray().tobytes() for f in frames)
        for frame in frames:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        return self._sink.take()

