"""The Wyoming server (`voxline wyoming`), driven by the wyoming package's own async TCP client
the way Home Assistant's integration drives it: describe, streamed transcription of generated
speech, synthesis (whole and streamed) that transcribes back to its words, bad input, and
clients that vanish."""

import asyncio
import json
from contextlib import asynccontextmanager

import pytest
from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import async_write_event
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from tests.conftest import make_settings
from tests.helpers import cer, transcribe, wer, words
from voxline.bench.turn_audio import ESPEAK_VOICES, Speaker
from voxline.bus import events
from voxline.transports.wyoming import WyomingServer
from voxline.worker import Worker

RATE = 16000
CHUNK_BYTES = 3200  # 100 ms, as Home Assistant streams its microphone
EVENT_SECS = 60.0  # a reply within this (a loaded CI machine decodes slowly)


@pytest.fixture(scope="module")
def speaker(tmp_path_factory):
    speaker = Speaker(tmp_path_factory.mktemp("wyoming-speech"), enable_kokoro=False)
    yield speaker
    speaker.close()


class Running:
    """A worker with its Wyoming server on a free loopback port, and its bus events."""

    def __init__(self, worker: Worker, server: WyomingServer):
        self.worker, self.server = worker, server
        self.events: list[events.Event] = []
        self.arrived = asyncio.Event()  # set whenever an event is collected

    def client(self) -> AsyncTcpClient:
        return AsyncTcpClient("127.0.0.1", self.server.port)

    def of_type(self, cls):
        return [e for e in self.events if isinstance(e, cls)]

    async def wait_for(self, cls, count: int = 1) -> list:
        """The events of `cls` once there are `count` of them (the bus delivers after the
        server has moved on)."""
        async with asyncio.timeout(5):
            while len(self.of_type(cls)) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.of_type(cls)


@asynccontextmanager
async def wyoming_server(settings, models):
    """A worker and its Wyoming server, collecting the worker's bus events."""
    async with Worker(settings, models, with_dashboard=False) as worker:
        server = WyomingServer(worker.host, settings)
        await server.start()
        running = Running(worker, server)
        subscription = worker.bus.subscribe(lambda e: True)

        async def collect():
            async for event in subscription:
                running.events.append(event)
                running.arrived.set()

        collector = asyncio.create_task(collect())
        try:
            yield running
        finally:
            await worker.host.end_all("test over", wait_secs=2)
            await server.close()
            subscription.close()
            collector.cancel()
            await asyncio.gather(collector, return_exceptions=True)


@pytest.fixture
async def wyoming(models):
    settings = make_settings(wyoming={"port": 0, "interim_interval_secs": 0.5,
                                      "max_audio_secs": 8})
    async with wyoming_server(settings, models) as running:
        yield running


async def _next(client: AsyncTcpClient):
    event = await asyncio.wait_for(client.read_event(), EVENT_SECS)
    assert event is not None, "the server closed the connection"
    return event


async def _stream_audio(client: AsyncTcpClient, pcm: bytes, *, rate: int = RATE,
                        real_time: bool = True) -> None:
    await client.write_event(AudioStart(rate=rate, width=2, channels=1).event())
    for offset in range(0, len(pcm), CHUNK_BYTES):
        await client.write_event(
            AudioChunk(rate=rate, width=2, channels=1, audio=pcm[offset:offset + CHUNK_BYTES])
            .event())
        if real_time:
            await asyncio.sleep(CHUNK_BYTES / 2 / rate)
    await client.write_event(AudioStop().event())


async def _read_until(client: AsyncTcpClient, done) -> list:
    """Events until one for which `done(event)` is true (included)."""
    seen = []
    while True:
        event = await _next(client)
        seen.append(event)
        if done(event):
            return seen


async def _audio_until(client: AsyncTcpClient, done) -> tuple[bytes, int, list]:
    """The PCM of every audio-chunk before the event `done` accepts, its rate, and the
    events' types in order."""
    pcm, rate, types = bytearray(), 0, []
    for event in await _read_until(client, done):
        types.append(event.type)
        if AudioChunk.is_type(event.type):
            chunk = AudioChunk.from_event(event)
            pcm += chunk.audio
            rate = chunk.rate
    return bytes(pcm), rate, types


async def test_describe_says_what_the_server_offers(wyoming, models, settings):
    async with wyoming.client() as client:
        await client.write_event(Describe().event())
        info = Info.from_event(await _next(client))
    (asr,) = info.asr
    assert asr.supports_transcript_streaming and asr.installed
    assert [m.name for m in asr.models] == ["whisper-tiny.en"]
    assert asr.models[0].languages == [settings.stt.language]
    (tts,) = info.tts
    assert tts.supports_synthesize_streaming
    assert [v.name for v in tts.voices] == ["en_US-joe-medium"]
    assert tts.voices[0].languages == ["en"]
    assert asr.version and tts.version and asr.attribution.url.startswith("https://")


async def test_speech_is_transcribed_with_partials_on_the_way(wyoming, speaker):
    text = "Please turn off the lights in the kitchen and close the blinds."
    voice = ESPEAK_VOICES[3]  # en-us+f4, slow: a long utterance with room for partials
    pcm = speaker.say(text, voice).pcm
    async with wyoming.client() as client:
        await client.write_event(Transcribe(language="en").event())
        streaming = asyncio.create_task(_stream_audio(client, pcm))
        seen = await _read_until(client, lambda e: TranscriptStop.is_type(e.type))
        await streaming
    types = [e.type for e in seen]
    assert types[0] == TranscriptStart().event().type
    assert types[-2:] == ["transcript", "transcript-stop"]
    partials = [TranscriptChunk.from_event(e).text for e in seen
                if TranscriptChunk.is_type(e.type)]
    assert partials, "no transcript-chunk while the audio streamed in"
    assert words(partials[-1]) & words(text), partials
    final = Transcript.from_event(seen[-2])
    assert wer(text, final.text) <= 0.25, final.text
    assert final.language == "en"
    # The connection was a session of the worker, on the bus and in its metrics.
    await wyoming.wait_for(events.SessionEnded)
    (started,) = wyoming.of_type(events.SessionStarted)
    assert started.transport == "wyoming"
    assert [e.text for e in wyoming.of_type(events.TranscriptFinal)] == [final.text]
    assert wyoming.of_type(events.SessionEnded)[0].reason == "client disconnected"
    metrics = wyoming.worker.metrics.render().decode()
    assert 'voxline_speech_requests_total{kind="stt",transport="wyoming"} 1.0' in metrics
    assert 'voxline_sessions_started_total{transport="wyoming"} 1.0' in metrics


async def test_audio_at_another_rate_in_stereo_is_converted(wyoming, speaker):
    import numpy as np
    import soxr

    text = "What is the weather like tomorrow?"
    mono = np.frombuffer(speaker.say(text, ESPEAK_VOICES[2]).pcm, dtype=np.int16)
    resampled = soxr.resample(mono.astype(np.float32), RATE, 22050).astype(np.int16)
    stereo = np.repeat(resampled, 2).tobytes()  # interleaved left, right
    async with wyoming.client() as client:
        await client.write_event(Transcribe().event())
        await client.write_event(AudioStart(rate=22050, width=2, channels=2).event())
        for offset in range(0, len(stereo), 8820):
            await client.write_event(AudioChunk(rate=22050, width=2, channels=2,
                                                audio=stereo[offset:offset + 8820]).event())
        await client.write_event(AudioStop().event())
        seen = await _read_until(client, lambda e: TranscriptStop.is_type(e.type))
    final = Transcript.from_event(next(e for e in seen if Transcript.is_type(e.type)))
    assert wer(text, final.text) <= 0.25, final.text


async def test_a_synthesis_transcribes_back_to_its_words(wyoming, models):
    text = "The front door is locked and the alarm is on."
    async with wyoming.client() as client:
        await client.write_event(
            Synthesize(text=text, voice=SynthesizeVoice(name="en_US-joe-medium")).event())
        pcm, rate, types = await _audio_until(client, lambda e: AudioStop.is_type(e.type))
    assert types[0] == "audio-start" and types.count("audio-chunk") >= 2
    assert rate == models.tts.sample_rate
    # Character error rate: tiny Whisper writes near-homophones differently ("door's lock").
    assert cer(text, transcribe(models, pcm, rate)) <= 0.15
    await wyoming.wait_for(events.SessionEnded)
    assert [e.text for e in wyoming.of_type(events.BotSpoken)] == [text]
    served = wyoming.of_type(events.SpeechServed)
    assert [s.kind for s in served] == ["tts"] and served[0].audio_secs > 1.5


async def test_streamed_text_is_spoken_sentence_by_sentence(wyoming, models):
    """Home Assistant streams an LLM's answer: the first sentence is spoken before the text
    ends, each sentence in its own audio-start … audio-stop, then synthesize-stopped."""
    sentences = ["The kitchen lights are off now.", "Is there anything else?"]
    async with wyoming.client() as client:
        await client.write_event(SynthesizeStart().event())
        for word in sentences[0].split(" "):
            await client.write_event(SynthesizeChunk(text=word + " ").event())
        await client.write_event(SynthesizeChunk(text=sentences[1].split(" ")[0]).event())
        # The first sentence is complete: its audio comes before the rest of the text.
        first, rate, types = await _audio_until(client, lambda e: AudioStop.is_type(e.type))
        for word in sentences[1].split(" ")[1:]:
            await client.write_event(SynthesizeChunk(text=" " + word).event())
        # Sent for servers without streaming; a streaming server must not speak it twice.
        await client.write_event(Synthesize(text=" ".join(sentences)).event())
        await client.write_event(SynthesizeStop().event())
        second, _, more = await _audio_until(
            client, lambda e: SynthesizeStopped.is_type(e.type))
    assert types[0] == "audio-start" and types[-1] == "audio-stop"
    assert more[0] == "audio-start" and more[-2:] == ["audio-stop", "synthesize-stopped"]
    assert more.count("audio-start") == 1, "the compatibility copy was spoken as well"
    assert wer(sentences[0], transcribe(models, first, rate)) <= 0.2
    assert wer(sentences[1], transcribe(models, second, rate)) <= 0.34


async def test_a_bad_field_gets_an_error_and_the_connection_goes_on(wyoming):
    async with wyoming.client() as client:
        await client.write_event(AudioStart(rate="fast", width=2, channels=1).event())
        error = Error.from_event(await _next(client))
        assert error.code == "unsupported_audio" and "16000" in error.text
        await client.write_event(AudioChunk(rate=16000, width=2, channels=1,
                                            audio=b"\0" * 320).event())
        assert Error.from_event(await _next(client)).code == "no_audio_stream"
        await client.write_event(Synthesize(text="x" * 5000).event())
        error = Error.from_event(await _next(client))
        assert error.code == "text_too_long" and "tts.max_text_chars" in error.text
        await client.write_event(Synthesize(text="Hi.",
                                            voice=SynthesizeVoice(name="nobody")).event())
        error = Error.from_event(await _next(client))
        assert error.code == "unknown_voice" and "en_US-joe-medium" in error.text
        await client.write_event(Transcribe(language="de").event())
        assert Error.from_event(await _next(client)).code == "unsupported_language"
        await client.write_event(Describe().event())
        assert Info.is_type((await _next(client)).type)


async def test_too_much_audio_is_refused(wyoming):
    async with wyoming.client() as client:
        await client.write_event(Transcribe().event())
        await _stream_audio(client, b"\0" * (RATE * 2 * 9), real_time=False)
        seen = await _read_until(client, lambda e: Error.is_type(e.type))
        error = Error.from_event(seen[-1])
        assert error.code == "audio_too_long" and "wyoming.max_audio_secs" in error.text
        # The rest of that stream is refused too; the connection still answers.
        assert Error.from_event(await _next(client)).code == "no_audio_stream"
        await client.write_event(Describe().event())
        while not Info.is_type((event := await _next(client)).type):
            assert Error.is_type(event.type)


@pytest.mark.parametrize("garbage", [
    b"this is not json\n",
    b'["a", "list"]\n',
    b'{"type": "audio-chunk", "payload_length": 999999999}\n',
    b'{"type": "describe", "data_length": 5}\nnope!',
    b"{" + b"x" * 70_000 + b"\n",
], ids=["not-json", "not-an-object", "huge-payload", "bad-data", "huge-line"])
async def test_malformed_input_is_answered_and_the_server_stays_up(wyoming, garbage):
    reader, writer = await asyncio.open_connection("127.0.0.1", wyoming.server.port)
    writer.write(garbage)
    await writer.drain()
    line = await asyncio.wait_for(reader.readline(), EVENT_SECS)
    header = json.loads(line)
    assert header["type"] == "error"
    data = json.loads(await reader.readexactly(header["data_length"]))
    assert data["code"] == "bad_event" and "closing the connection" in data["text"]
    assert await asyncio.wait_for(reader.read(), EVENT_SECS) == b""  # closed by the server
    writer.close()
    async with wyoming.client() as client:  # and the next client is served
        await client.write_event(Describe().event())
        assert Info.is_type((await _next(client)).type)
    assert (await wyoming.wait_for(events.SessionEnded))[0].reason == "bad event"


async def test_a_client_that_vanishes_mid_stream_leaves_nothing_behind(wyoming, speaker):
    pcm = speaker.say("Set a timer for ten minutes please.", ESPEAK_VOICES[0]).pcm
    _, writer = await asyncio.open_connection("127.0.0.1", wyoming.server.port)
    await async_write_event(Transcribe().event(), writer)
    await async_write_event(AudioStart(rate=RATE, width=2, channels=1).event(), writer)
    for offset in range(0, len(pcm) // 2, CHUNK_BYTES):  # half the sentence, then gone
        await async_write_event(AudioChunk(rate=RATE, width=2, channels=1,
                                           audio=pcm[offset:offset + CHUNK_BYTES]).event(),
                                writer)
    writer.transport.abort()
    await asyncio.wait_for(wyoming.worker.host.wait_idle(), 5)
    async with wyoming.client() as other:  # a synthesis cut off mid-way, too
        await other.write_event(Synthesize(text="One. Two. Three. Four.").event())
        await _next(other)
    await asyncio.wait_for(wyoming.worker.host.wait_idle(), 5)
    reasons = [e.reason for e in await wyoming.wait_for(events.SessionEnded, 2)]
    assert reasons == ["client disconnected", "client disconnected"]
    async with wyoming.client() as client:
        await client.write_event(Describe().event())
        assert Info.is_type((await _next(client)).type)


async def test_a_full_worker_says_so(models):
    settings = make_settings(wyoming={"port": 0}, server={"max_sessions": 1})
    async with (wyoming_server(settings, models) as running,
                running.client() as first, running.client() as second):
        await first.write_event(Describe().event())
        await _next(first)  # the first holds the only slot
        error = Error.from_event(await _next(second))
        assert error.code == "server_busy"
        assert await asyncio.wait_for(second.read_event(), EVENT_SECS) is None


async def test_an_operator_or_a_shutdown_ends_a_connection(wyoming):
    async with wyoming.client() as client:
        await client.write_event(Describe().event())
        await _next(client)
        (session_id,) = [e.session_id for e in wyoming.of_type(events.SessionStarted)]
        assert await wyoming.worker.host.end(session_id, "ended by an operator")
        assert await asyncio.wait_for(client.read_event(), EVENT_SECS) is None
    assert (await wyoming.wait_for(events.SessionEnded))[0].reason == "ended by an operator"
