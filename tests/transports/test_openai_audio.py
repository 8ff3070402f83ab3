"""The OpenAI-compatible endpoints, driven by the official `openai` SDK the way its users call
them: transcriptions of every common file format (equal to decoding the file directly with the
same model), every response format and the streamed one, speech streamed in every format and
transcribed back, the model list, and OpenAI-shaped errors for bad requests."""

import asyncio
import io
import json
import time
import urllib.error
import urllib.request

import av
import numpy as np
import openai
import pytest
from faster_whisper import WhisperModel
from openai import AsyncOpenAI

from tests.helpers import transcribe, wer
from voxline.bench.turn_audio import ESPEAK_VOICES, Speaker
from voxline.bus import events
from voxline.models import catalog
from voxline.models.registry import ModelRegistry

QUESTION = "How many minutes are left on the kitchen timer?"
# (container, codec, file name): what people upload.
FILE_FORMATS = [("wav", "pcm_s16le", "q.wav"), ("mp3", "libmp3lame", "q.mp3"),
                ("ogg", "libopus", "q.ogg"), ("flac", "flac", "q.flac"),
                ("webm", "libopus", "q.webm"), ("ipod", "aac", "q.m4a")]


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    """16 kHz mono PCM of the question in an espeak-ng voice."""
    speaker = Speaker(tmp_path_factory.mktemp("openai-speech"), enable_kokoro=False)
    yield speaker.say(QUESTION, ESPEAK_VOICES[4]).pcm
    speaker.close()


@pytest.fixture
async def client(server):
    async with AsyncOpenAI(base_url=f"{server.http_url}/v1", api_key="no-key-needed",
                           max_retries=0) as client:
        yield client


def encode_file(pcm: bytes, container: str, codec: str) -> bytes:
    """`pcm` (16 kHz mono) as a file of `container`/`codec`, written by FFmpeg (PyAV)."""
    out = io.BytesIO()
    with av.open(out, mode="w", format=container) as file:
        rate = 48000 if codec == "libopus" else 16000
        stream = file.add_stream(codec, rate=rate)
        stream.layout = "mono"
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono",
                                      rate=rate, frame_size=stream.codec_context.frame_size or None)
        frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, np.int16).reshape(1, -1),
                                           format="s16", layout="mono")
        frame.sample_rate = 16000
        for piece in [*resampler.resample(frame), *resampler.resample(None)]:
            file.mux(stream.encode(piece))
        file.mux(stream.encode(None))
    return out.getvalue()


@pytest.fixture(scope="module")
def whisper_direct(settings):
    """The same Whisper model, loaded on its own: 'decoding the file directly'."""
    model_dir = ModelRegistry(settings.models.cache_dir).path_of(catalog.WHISPER_TINY_EN).parent
    return WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=2)


@pytest.mark.parametrize("container, codec, name", FILE_FORMATS,
                         ids=[f[2].split(".")[1] for f in FILE_FORMATS])
async def test_a_file_is_transcribed_as_decoding_it_directly_would(
        client, spoken, whisper_direct, container, codec, name):
    data = encode_file(spoken, container, codec)
    result = await client.audio.transcriptions.create(model="whisper-1", file=(name, data))
    segments, _ = await asyncio.to_thread(whisper_direct.transcribe, io.BytesIO(data),
                                          language="en", vad_filter=False)
    direct = " ".join(s.text.strip() for s in segments)
    assert result.text == direct
    assert wer(QUESTION, result.text) <= 0.25, result.text


async def test_every_response_format(client, spoken):
    data = encode_file(spoken, "wav", "pcm_s16le")
    verbose = await client.audio.transcriptions.create(
        model="whisper-tiny.en", file=("q.wav", data), response_format="verbose_json",
        timestamp_granularities=["segment"])
    assert verbose.language == "english" and verbose.duration == pytest.approx(
        len(spoken) / 32000, abs=0.05)
    assert verbose.segments and verbose.segments[0].start == pytest.approx(0, abs=1)
    assert verbose.segments[-1].end <= verbose.duration + 0.5
    assert verbose.text == " ".join(s.text.strip() for s in verbose.segments)
    text = await client.audio.transcriptions.create(model="whisper-1", file=("q.wav", data),
                                                    response_format="text")
    assert text.strip() == verbose.text
    srt = await client.audio.transcriptions.create(model="whisper-1", file=("q.wav", data),
                                                   response_format="srt")
    assert srt.startswith("1\n00:00:0") and " --> 00:00:0" in srt
    assert verbose.segments[0].text.strip() in srt
    vtt = await client.audio.transcriptions.create(model="whisper-1", file=("q.wav", data),
                                                   response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:0") and "." in vtt.split("\n")[2][:12]


async def test_a_streamed_transcription_sends_deltas_then_the_whole_text(client, spoken, server):
    seen = []
    subscription = server.worker.bus.subscribe(lambda e: isinstance(e, events.SessionStarted)
                                               and e.transport == "openai-audio")
    stream = await client.audio.transcriptions.create(
        model="whisper-1", file=("q.wav", encode_file(spoken, "wav", "pcm_s16le")), stream=True)
    async for event in stream:
        seen.append(event)
    assert [e.type for e in seen][-1] == "transcript.text.done"
    deltas = [e.delta for e in seen if e.type == "transcript.text.delta"]
    assert deltas and "".join(deltas) == seen[-1].text
    assert wer(QUESTION, seen[-1].text) <= 0.25
    started = await asyncio.wait_for(anext(aiter(subscription)), 5)
    subscription.close()
    assert started.client.startswith("127.0.0.1:")


@pytest.mark.parametrize("response_format", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
async def test_speech_streams_in_every_format_and_says_its_words(client, models,
                                                                 response_format):
    text = "The timer has three minutes left. Shall I add five more?"
    pieces, first_at = [], None
    started = time.monotonic()
    async with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=text, response_format=response_format) as reply:
        assert reply.status_code == 200
        async for piece in reply.iter_bytes():
            if first_at is None and piece:
                first_at = time.monotonic() - started
            pieces.append(piece)
    body = b"".join(pieces)
    if response_format == "pcm":
        pcm, rate = body, 24000
    else:
        with av.open(io.BytesIO(body)) as file:
            resampler = av.AudioResampler(format="s16", layout="mono", rate=24000)
            pcm = b"".join(out.to_ndarray().tobytes() for frame in file.decode(audio=0)
                           for out in resampler.resample(frame))
        rate = 24000
    assert len(pcm) / 2 / rate > 2.0
    assert wer(text, transcribe(models, pcm, rate)) <= 0.25
    assert first_at is not None


async def test_speech_streams_before_the_whole_text_is_synthesized(client):
    """The first sentence's audio is on the wire while the rest is still being made."""
    text = " ".join(["The first sentence is short."] + ["This sentence comes later on."] * 6)
    async with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="en_US-joe-medium", input=text, response_format="pcm") as reply:
        chunks = reply.iter_bytes()
        started = time.monotonic()
        first = await anext(chunks)
        first_secs = time.monotonic() - started
        rest = b"".join([piece async for piece in chunks])
        total_secs = time.monotonic() - started
    assert first and len(rest) > len(first)
    assert first_secs < total_secs / 2, (first_secs, total_secs)


async def test_speed_changes_the_length(client):
    lengths = {}
    for speed in (1.0, 2.0):
        response = await client.audio.speech.create(
            model="tts-1", voice="alloy", input="Counting slowly from one to ten.",
            response_format="pcm", speed=speed)
        lengths[speed] = len(response.content)
    assert lengths[2.0] < 0.7 * lengths[1.0]


async def test_requests_are_counted_in_metrics(client, server):
    await client.audio.speech.create(model="tts-1", voice="alloy", input="Counting.",
                                     response_format="pcm")
    metrics = server.worker.metrics.render().decode()
    assert 'voxline_speech_requests_total{kind="tts",transport="openai-audio"}' in metrics
    assert 'voxline_sessions_started_total{transport="openai-audio"}' in metrics


async def test_models_lists_what_is_loaded(client):
    listed = [m.id async for m in client.models.list()]
    assert listed[:2] == ["whisper-tiny.en", "piper-en_US-joe-medium"]
    assert listed[2] == "smollm2-135m"


@pytest.mark.parametrize("call, status, code, param", [
    (lambda c: c.audio.speech.create(model="tts-1", voice="alloy", input="x" * 1001),
     400, "text_too_long", "input"),
    (lambda c: c.audio.speech.create(model="tts-1", voice="nobody", input="Hi."),
     400, "unknown_voice", "voice"),
    (lambda c: c.audio.speech.create(model="tts-1", voice="alloy", input="Hi.",
                                     response_format="ogg"),
     400, "unsupported_response_format", "response_format"),
    (lambda c: c.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", speed=9),
     400, "invalid_value", "speed"),
    (lambda c: c.audio.speech.create(model="dall-e-3", voice="alloy", input="Hi."),
     404, "model_not_found", "model"),
    (lambda c: c.audio.transcriptions.create(model="whisper-1",
                                             file=("notes.txt", b"just some text, not audio")),
     400, "unsupported_format", "file"),
    (lambda c: c.audio.transcriptions.create(model="whisper-1", file=("q.wav", b"RIFF"),
                                             language="fr"),
     400, "unsupported_language", "language"),
    (lambda c: c.audio.transcriptions.create(model="whisper-1", file=("q.wav", b"RIFF"),
                                             response_format="diarized_json"),
     400, "unsupported_response_format", "response_format"),
], ids=["text-too-long", "unknown-voice", "bad-format", "bad-speed", "unknown-model",
        "not-audio", "language", "transcription-format"])
async def test_bad_requests_get_openai_errors(client, call, status, code, param):
    with pytest.raises(openai.APIStatusError) as raised:
        await call(client)
    error = raised.value
    assert error.status_code == status
    assert error.code == code and error.param == param
    assert error.body["message"] and error.body["type"]


def _post(url: str, body: bytes, headers: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


async def test_a_missing_file_and_a_bad_body(server):
    url = f"{server.http_url}/v1/audio"
    status, body = await asyncio.to_thread(
        _post, f"{url}/transcriptions", b"--x\r\nContent-Disposition: form-data; "
        b"name=\"model\"\r\n\r\nwhisper-1\r\n--x--\r\n",
        {"Content-Type": "multipart/form-data; boundary=x"})
    assert (status, body["error"]["code"], body["error"]["param"]) == (400, "missing_file",
                                                                        "file")
    status, body = await asyncio.to_thread(_post, f"{url}/speech", b"{not json",
                                           {"Content-Type": "application/json"})
    assert (status, body["error"]["code"]) == (400, "invalid_json")



async def test_an_upload_over_the_limit_is_refused_with_413(client, server):
    too_big = server.worker.settings.openai.max_upload_bytes + 1
    with pytest.raises(openai.APIStatusError) as raised:
        await client.audio.transcriptions.create(model="whisper-1",
                                                 file=("big.wav", b"\0" * too_big))
    assert raised.value.status_code == 413
    assert raised.value.code == "file_too_large" and raised.value.type == "invalid_request_error"

