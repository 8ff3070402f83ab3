"""Wyoming, the protocol of Home Assistant's voice pipeline: speech to text (`asr`, with
streaming partial transcripts) and text to speech (`tts`, with streaming text in), one TCP
connection per request as Home Assistant makes them. Each connection is one of the worker's
sessions (transport `wyoming`), so it has a slot, shows on the dashboard and in /metrics, and an
operator or a shutdown can end it."""

import asyncio
import contextlib
import json
import uuid
from typing import TypeVar

from loguru import logger
from pipecat.utils.text.simple_text_aggregator import SimpleTextAggregator
from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioChunkConverter, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event, Eventable, async_write_event
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
)

from voxline.config.settings import VoxlineSettings
from voxline.models.whisper import WHISPER_SAMPLE_RATE
from voxline.transports.model_names import ModelNames, is_language_heard
from voxline.transports.speech import BYTES_PER_SAMPLE, SpeechRequests, TextTooLong
from voxline.transports.wyoming_info import describe
from voxline.worker.host import NoSlot, ServedConnection, SessionHost

E = TypeVar("E", bound=Eventable)
MAX_LINE_BYTES = 64 * 1024  # an event's JSON header line
MAX_PART_BYTES = 4 * 1024 * 1024  # its data or payload (a second of 48 kHz stereo is 192 kB)
CHUNK_SECS = 0.1  # synthesized audio goes out in pieces this long


class BadEvent(Exception):
    """Bytes that are not a Wyoming event: the stream cannot be followed any more."""


class RequestError(Exception):
    """A well-formed event that cannot be served: answered with an `error` event; the
    connection goes on."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


async def read_event(reader: asyncio.StreamReader) -> Event | None:
    """The next event, or None at the end of the stream. The wyoming package's own reader ends
    the connection without a word on a bad line and trusts the lengths a client announces; this
    one raises `BadEvent` for both, so the client is told why before it is disconnected."""
    try:
        line = await reader.readline()
    except ValueError:  # longer than the stream's limit
        raise BadEvent(f"an event header longer than {MAX_LINE_BYTES} bytes") from None
    if not line:
        return None
    try:
        header = json.loads(line)
    except ValueError:
        raise BadEvent("an event header that is not one line of JSON") from None
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise BadEvent("an event header without a \"type\"")
    data = header.get("data") or {}
    lengths = [header.get("data_length") or 0, header.get("payload_length") or 0]
    if not isinstance(data, dict) or not all(
            isinstance(n, int) and 0 <= n <= MAX_PART_BYTES for n in lengths):
        raise BadEvent(f"an event whose data is not an object, or whose data or payload is "
                       f"over {MAX_PART_BYTES} bytes")
    data_length, payload_length = lengths
    if data_length:
        try:
            more = json.loads(await reader.readexactly(data_length))
        except ValueError:
            raise BadEvent("event data that is not JSON") from None
        if not isinstance(more, dict):
            raise BadEvent("event data that is not a JSON object")
        data.update(more)
    payload = await reader.readexactly(payload_length) if payload_length else None
    return Event(type=header["type"], data=data, payload=payload)


def parse(cls: type[E], event: Event) -> E:
    """`cls.from_event`, with a missing or mistyped field answered as a bad request."""
    try:
        return cls.from_event(event)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise RequestError("bad_event", f"{event.type}: a field is missing or invalid "
                                        f"({type(e).__name__}: {e})") from None


def check_audio_format(audio: AudioStart | AudioChunk) -> None:
    """Raise `RequestError` unless rate, width and channels describe PCM we can convert."""
    fields = (audio.rate, audio.width, audio.channels)
    if not (all(isinstance(f, int) for f in fields) and 8000 <= audio.rate <= 192000
            and audio.width in (1, 2, 3, 4) and 1 <= audio.channels <= 8):
        raise RequestError("unsupported_audio",
                           f"audio of rate {audio.rate}, width {audio.width}, channels "
                           f"{audio.channels}: send PCM of 8000-192000 Hz, width 1-4 bytes and "
                           "1-8 channels (16000 Hz, width 2, mono is best)")


class WyomingConnection:
    """One client connection: reads events until the client leaves, answering each."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 host: SessionHost, settings: VoxlineSettings, info: Info):
        self._reader, self._writer = reader, writer
        self._host, self._settings, self._info = host, settings, info
        self._names = ModelNames.of(host.models, settings)
        self._speech: SpeechRequests | None = None
        self._language: str | None = None
        self._audio: bytearray | None = None  # a transcription's 16 kHz audio, as it streams in
        self._converter: AudioChunkConverter | None = None
        self._partial: asyncio.Task | None = None
        self._audio_at_partial = 0  # bytes of audio the last partial transcript was started on
        self._text_stream: SimpleTextAggregator | None = None  # streaming synthesis

    async def run(self) -> None:
        """Serve the connection to its end; it counts as one session while it lasts."""
        peer = self._writer.get_extra_info("peername") or ("unknown", 0)
        try:
            slot = self._host.reserve(address=peer[0])
        except NoSlot as e:
            await self._say_error(e.code, e.message)
            await self._close()
            return
        session_id = f"wyoming-{uuid.uuid4().hex[:12]}"
        with logger.contextualize(session_id=session_id):
            try:
                async with self._host.serving(session_id=session_id, transport="wyoming",
                                              client=f"{peer[0]}:{peer[1]}", slot=slot,
                                              stop=self._close) as served:
                    self._speech = SpeechRequests(
                        self._host.models, served, transport="wyoming",
                        max_text_chars=self._settings.tts.max_text_chars)
                    await self._serve(served)
            except Exception:  # one connection's boundary: the server and the others go on
                logger.exception("Wyoming connection {} failed", session_id)
                await self._say_error("internal_error", "the request failed on the server")
            finally:
                await self._stop_partial()
                await self._close()

    async def _serve(self, served: ServedConnection) -> None:
        while True:
            try:
                event = await read_event(self._reader)
            except BadEvent as e:
                await self._say_error("bad_event", f"received {e}; closing the connection")
                served.ended_because("bad event")
                return
            except (asyncio.IncompleteReadError, ConnectionError):
                event = None
            if event is None:
                served.ended_because("client disconnected")
                return
            try:
                await self._handle(event)
            except RequestError as e:
                await self._say_error(e.code, e.message)
            except ConnectionError:
                served.ended_because("client disconnected")
                return

    async def _handle(self, event: Event) -> None:
        """Answer one event; events of other domains (wake words, intents) are dropped, as
        the protocol asks of a server that does not serve them."""
        if Describe.is_type(event.type):
            await self._write(self._info)
        elif Ping.is_type(event.type):
            await self._write(Pong(text=parse(Ping, event).text))
        elif Transcribe.is_type(event.type):
            self._start_transcription(parse(Transcribe, event))
        elif AudioStart.is_type(event.type):
            await self._audio_started(parse(AudioStart, event))
        elif AudioChunk.is_type(event.type):
            await self._audio_chunk(parse(AudioChunk, event))
        elif AudioStop.is_type(event.type):
            await self._audio_stopped()
        elif Synthesize.is_type(event.type):
            if self._text_stream is None:  # else the streaming client's copy for old servers
                synthesize = parse(Synthesize, event)
                self._check_voice(synthesize.voice)
                await self._speak(synthesize.text)
        elif SynthesizeStart.is_type(event.type):
            self._check_voice(parse(SynthesizeStart, event).voice)
            self._text_stream = SimpleTextAggregator()
        elif SynthesizeChunk.is_type(event.type):
            await self._text_chunk(parse(SynthesizeChunk, event).text)
        elif SynthesizeStop.is_type(event.type):
            await self._text_stopped()

    # Speech to text

    def _start_transcription(self, transcribe: Transcribe) -> None:
        if transcribe.language and not is_language_heard(transcribe.language, self._settings):
            raise RequestError("unsupported_language",
                               f"this server transcribes {self._settings.stt.language!r} only, "
                               f"not {transcribe.language!r}")
        self._language = transcribe.language

    async def _audio_started(self, start: AudioStart) -> None:
        check_audio_format(start)
        await self._stop_partial()
        self._audio, self._audio_at_partial = bytearray(), 0
        self._converter = AudioChunkConverter(rate=WHISPER_SAMPLE_RATE, width=BYTES_PER_SAMPLE,
                                              channels=1)
        await self._write(TranscriptStart(language=self._language or
                                          self._settings.stt.language))

    async def _audio_chunk(self, chunk: AudioChunk) -> None:
        if self._audio is None:
            raise RequestError("no_audio_stream", "audio-chunk before audio-start")
        check_audio_format(chunk)
        self._audio += self._converter.convert(chunk).audio
        limit = self._settings.wyoming.max_audio_secs
        if len(self._audio) > limit * WHISPER_SAMPLE_RATE * BYTES_PER_SAMPLE:
            self._audio = None
            await self._stop_partial()
            raise RequestError("audio_too_long",
                               f"more than {limit:g} s of audio in one transcription "
                               "(wyoming.max_audio_secs); this one is dropped")
        interval = self._settings.wyoming.interim_interval_secs
        due = self._audio_at_partial + interval * WHISPER_SAMPLE_RATE * BYTES_PER_SAMPLE
        if len(self._audio) >= due and (self._partial is None or self._partial.done()):
            self._audio_at_partial = len(self._audio)
            self._partial = asyncio.create_task(self._send_partial(bytes(self._audio)),
                                                name="voxline-wyoming-partial")

    async def _send_partial(self, audio: bytes) -> None:
        text = await self._speech.transcribe_so_far(audio)
        if text is not None:
            with contextlib.suppress(ConnectionError):
                await self._write(TranscriptChunk(text=text))

    async def _audio_stopped(self) -> None:
        if self._audio is None:
            raise RequestError("no_audio_stream", "audio-stop without audio-start")
        audio, self._audio = bytes(self._audio), None
        await self._stop_partial()
        text = await self._speech.transcribe(audio)
        language = self._language or self._settings.stt.language
        await self._write(Transcript(text=text, language=language))
        await self._write(TranscriptStop())

    async def _stop_partial(self) -> None:
        if self._partial is not None:
            self._partial.cancel()
            await asyncio.gather(self._partial, return_exceptions=True)
            self._partial = None

    # Text to speech

    def _check_voice(self, voice) -> None:
        names = self._names.voices
        if voice is not None and voice.name and voice.name not in names:
            raise RequestError("unknown_voice", f"no voice {voice.name!r} here; voices: "
                                                f"{', '.join(names)}")

    async def _text_chunk(self, text: str) -> None:
        if self._text_stream is None:
            raise RequestError("no_text_stream", "synthesize-chunk before synthesize-start")
        async for sentence in self._text_stream.aggregate(text):
            await self._speak(sentence.text)

    async def _text_stopped(self) -> None:
        if self._text_stream is None:
            raise RequestError("no_text_stream", "synthesize-stop before synthesize-start")
        rest = await self._text_stream.flush()
        self._text_stream = None
        if rest is not None and rest.text.strip():
            await self._speak(rest.text)
        await self._write(SynthesizeStopped())

    async def _speak(self, text: str) -> None:
        """`text` as audio-start, audio-chunk (one or more), audio-stop."""
        rate = self._speech.sample_rate
        pieces = aiter(self._speech.synthesize(text))
        try:
            first = await anext(pieces, None)
        except TextTooLong as e:
            raise RequestError("text_too_long", str(e)) from None
        await self._write(AudioStart(rate=rate, width=BYTES_PER_SAMPLE, channels=1))
        size = int(rate * CHUNK_SECS) * BYTES_PER_SAMPLE
        if first is not None:
            async for pcm in _prepend(first, pieces):
                for offset in range(0, len(pcm), size):
                    await self._write(AudioChunk(rate=rate, width=BYTES_PER_SAMPLE, channels=1,
                                                 audio=pcm[offset:offset + size]))
        await self._write(AudioStop())

    # The wire

    async def _write(self, message: Eventable) -> None:
        await async_write_event(message.event(), self._writer)

    async def _say_error(self, code: str, message: str) -> None:
        logger.info("wyoming: {} ({})", message, code)
        with contextlib.suppress(ConnectionError):
            await self._write(Error(text=message, code=code))

    async def _close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


async def _prepend(first: bytes, rest):
    yield first
    async for item in rest:
        yield item


class WyomingServer:
    """Wyoming over TCP for the worker's session host."""

    def __init__(self, host: SessionHost, settings: VoxlineSettings):
        self._host, self._settings = host, settings
        self.info = describe(host.models, settings)
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> int:
        """Listen on `wyoming.host`:`wyoming.port`; returns the port (a free one for 0)."""
        wyoming = self._settings.wyoming
        self._server = await asyncio.start_server(self._connected, wyoming.host, wyoming.port,
                                                  limit=MAX_LINE_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("voxline: Wyoming listening on tcp://{}:{}", wyoming.host, self.port)
        return self.port

    async def close(self) -> None:
        """Stop listening (end the sessions first: `SessionHost.end_all`)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _connected(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        await WyomingConnection(reader, writer, host=self._host, settings=self._settings,
                                info=self.info).run()
