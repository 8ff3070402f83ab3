"""The OpenAI-compatible endpoints: `POST /v1/audio/transcriptions`, `POST /v1/audio/speech`
and `GET /v1/models`, for OpenAI's SDKs and the tools built on them. Same API keys, origins and
rate limits as /ws; each request is one of the worker's sessions (transport `openai-audio`)
while it runs, so it takes a slot, shows on the dashboard and is counted in /metrics."""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from loguru import logger
from starlette.datastructures import UploadFile

from voxline.auth import AccessGuard, Grant, Refusal, client_address
from voxline.models.whisper import WHISPER_SAMPLE_RATE, Segment
from voxline.transports.audio_files import (
    OUTPUT_FORMATS,
    StreamingEncoder,
    UnreadableAudio,
    decode_to_pcm16,
)
from voxline.transports.http_body import BodyTooLarge, read_body, replayed
from voxline.transports.model_names import ModelNames, is_language_heard
from voxline.transports.openai_errors import OpenAIError
from voxline.transports.speech import SpeechRequests
from voxline.transports.subtitles import srt, vtt
from voxline.worker import Worker
from voxline.worker.host import NoSlot, ServedConnection, SessionHost, Slot

TRANSPORT = "openai-audio"
TRANSCRIPTION_FORMATS = ("json", "text", "verbose_json", "srt", "vtt")
MAX_SPEECH_BODY_BYTES = 64 * 1024
MIN_SPEED, MAX_SPEED = 0.25, 4.0
LANGUAGE_NAMES = {"en": "english"}  # verbose_json names the language as Whisper does


def mount_openai_audio(app: FastAPI, worker: Worker) -> None:
    """Add the /v1 routes to the worker's app."""
    host, access, settings = worker.host, worker.access, worker.settings
    names = ModelNames.of(worker.models, settings)
    started = int(time.time())

    @app.get("/v1/models")
    async def list_models(request: Request):
        grant = await access.admit(request)
        if isinstance(grant, Refusal):
            return OpenAIError.from_refusal(grant).response()
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": started, "owned_by": "voxline"}
            for name in names.listed]}

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request):
        try:
            grant = await _admit_session(request, access)
            body = await _read_limited(request, settings.openai.max_upload_bytes)
            async with replayed(request, body).form() as form:
                ask = _TranscriptionAsk.parse(form, names, settings)
                data = await ask.file.read()
            pcm = await _decode(data, settings.openai.max_audio_secs)
            slot = _reserve(host, request, grant)
        except OpenAIError as e:
            return e.response()
        if ask.stream:
            return SlotStreamingResponse(_transcript_events(host, request, slot, ask, pcm),
                                         slot=slot, media_type="text/event-stream")
        try:
            async with _session(host, request, slot) as (speech, served):
                segments = []
                async for segment in speech.transcribe_file(pcm, prompt=ask.prompt):
                    if served.end_reason:
                        raise OpenAIError(503, "session_ended",
                                          f"the request was {served.end_reason}")
                    segments.append(segment)
        except OpenAIError as e:
            return e.response()
        return _transcription(segments, ask.response_format,
                              duration=len(pcm) / 2 / WHISPER_SAMPLE_RATE,
                              language=settings.stt.language)

    @app.post("/v1/audio/speech")
    async def speech(request: Request):
        try:
            grant = await _admit_session(request, access)
            body = await _read_limited(request, MAX_SPEECH_BODY_BYTES)
            ask = _SpeechAsk.parse(body, names, settings)
            slot = _reserve(host, request, grant)
        except OpenAIError as e:
            return e.response()
        encoder = StreamingEncoder(ask.response_format, worker.models.tts.sample_rate)
        return SlotStreamingResponse(_speech_bytes(host, request, slot, ask, encoder),
                                     slot=slot, media_type=encoder.media_type)


class SlotStreamingResponse(StreamingResponse):
    """A streamed body that gives its session slot back however it ends, also when the client
    left before the body began (its generator then never runs)."""

    def __init__(self, content, *, slot: Slot, **kwargs):
        super().__init__(content, **kwargs)
        self._slot = slot

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._slot.release()


class _TranscriptionAsk:
    """A transcription request's form, checked."""

    def __init__(self, file: UploadFile, prompt: str | None, response_format: str, stream: bool):
        self.file, self.prompt = file, prompt
        self.response_format, self.stream = response_format, stream

    @classmethod
    def parse(cls, form, names: ModelNames, settings) -> "_TranscriptionAsk":
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise OpenAIError(400, "missing_file", "send the audio as the multipart field "
                                                   "'file'", param="file")
        model = _text_field(form, "model")
        if model is not None and not names.transcribes_as(model):
            raise OpenAIError(404, "model_not_found",
                              f"no transcription model {model!r} here; use "
                              f"{names.stt!r} (or whisper-1)", param="model")
        language = _text_field(form, "language")
        if language and not is_language_heard(language, settings):
            raise OpenAIError(400, "unsupported_language",
                              f"this server transcribes {settings.stt.language!r} only",
                              param="language")
        response_format = _text_field(form, "response_format") or "json"
        if response_format not in TRANSCRIPTION_FORMATS:
            raise OpenAIError(400, "unsupported_response_format",
                              f"response_format {response_format!r} is not one of "
                              f"{', '.join(TRANSCRIPTION_FORMATS)}", param="response_format")
        stream = (_text_field(form, "stream") or "false").lower() == "true"
        if stream and response_format not in ("json", "text"):
            raise OpenAIError(400, "unsupported_response_format",
                              "stream=true sends transcript.text.delta events: use "
                              "response_format json or text", param="stream")
        if "word" in form.getlist("timestamp_granularities[]"):
            raise OpenAIError(400, "unsupported_value", "word timestamps are not supported; "
                                                        "segment timestamps are",
                              param="timestamp_granularities[]")
        return cls(file, _text_field(form, "prompt"), response_format, stream)


def _text_field(form, name: str) -> str | None:
    value = form.get(name)
    if value is not None and not isinstance(value, str):
        raise OpenAIError(400, "invalid_value", f"{name} must be text", param=name)
    return value


class _SpeechAsk:
    """A speech request's JSON body, checked."""

    def __init__(self, text: str, response_format: str, speed: float):
        self.input, self.response_format, self.speed = text, response_format, speed

    @classmethod
    def parse(cls, body: bytes, names: ModelNames, settings) -> "_SpeechAsk":
        try:
            ask = json.loads(body)
        except (ValueError, RecursionError):
            ask = None
        if not isinstance(ask, dict):
            raise OpenAIError(400, "invalid_json", "the request body must be a JSON object")
        model = ask.get("model")
        if not isinstance(model, str) or not names.speaks_as(model):
            raise OpenAIError(404 if isinstance(model, str) else 400, "model_not_found",
                              f"no speech model {model!r} here; use {names.tts!r} (or tts-1)",
                              param="model")
        text = ask.get("input")
        if not isinstance(text, str) or not text.strip():
            raise OpenAIError(400, "missing_input", "'input' must be the text to speak",
                              param="input")
        if len(text) > settings.tts.max_text_chars:
            raise OpenAIError(400, "text_too_long",
                              f"'input' has {len(text)} characters; at most "
                              f"{settings.tts.max_text_chars} (tts.max_text_chars)",
                              param="input")
        voice = ask.get("voice", names.voices[0])
        voice = voice.get("id") if isinstance(voice, dict) else voice
        if not isinstance(voice, str) or not names.has_voice(voice):
            raise OpenAIError(400, "unknown_voice",
                              f"no voice {voice!r}; voices: {', '.join(names.voices)} (OpenAI's "
                              "voice names speak with the first)", param="voice")
        response_format = ask.get("response_format", "mp3")
        if response_format not in OUTPUT_FORMATS:
            raise OpenAIError(400, "unsupported_response_format",
                              f"response_format {response_format!r} is not one of "
                              f"{', '.join(OUTPUT_FORMATS)}", param="response_format")
        speed = ask.get("speed", 1.0)
        if (isinstance(speed, bool) or not isinstance(speed, int | float)
                or not MIN_SPEED <= speed <= MAX_SPEED):
            raise OpenAIError(400, "invalid_value",
                              f"speed must be a number from {MIN_SPEED} to {MAX_SPEED}",
                              param="speed")
        if ask.get("stream_format", "audio") != "audio":
            raise OpenAIError(400, "unsupported_value", "stream_format 'sse' is not "
                                                        "supported; the audio body streams",
                              param="stream_format")
        return cls(text, response_format, float(speed))


async def _admit_session(request: Request, access: AccessGuard) -> Grant:
    """The caller's grant, counted as a new session against its rate limits."""
    grant = await access.admit(request)
    if isinstance(grant, Refusal):
        raise OpenAIError.from_refusal(grant)
    if refusal := access.take_session(request, grant):
        raise OpenAIError.from_refusal(refusal)
    return grant


async def _read_limited(request: Request, max_bytes: int) -> bytes:
    try:
        return await read_body(request, max_bytes)
    except BodyTooLarge as e:
        raise OpenAIError(413, "file_too_large", str(e)) from None


async def _decode(data: bytes, max_secs: float) -> bytes:
    try:
        return await asyncio.to_thread(decode_to_pcm16, data, rate=WHISPER_SAMPLE_RATE,
                                       max_secs=max_secs)
    except UnreadableAudio as e:
        code = "audio_too_long" if "longer than" in str(e) else "unsupported_format"
        raise OpenAIError(400, code, f"{e} (wav, mp3, ogg/opus, flac, webm, m4a and any other "
                                     "format FFmpeg reads are taken)", param="file") from None


def _reserve(host: SessionHost, request: Request, grant: Grant) -> Slot:
    try:
        return host.reserve(address=client_address(request) or None, key_id=grant.key_id)
    except NoSlot as e:
        raise OpenAIError(503 if e.code == "server_busy" else 429, e.code, e.message) from None


@asynccontextmanager
async def _session(host: SessionHost, request: Request,
                   slot: Slot) -> AsyncIterator[tuple[SpeechRequests, ServedConnection]]:
    """The request as one of the worker's sessions; an operator's end marks it (the request
    stops at its next piece)."""
    session_id = f"oai-{uuid.uuid4().hex[:12]}"
    peer = request.client
    client = f"{peer.host}:{peer.port}" if peer else ""

    async def stop() -> None:
        pass  # `served.end_reason` is set: the request's loop sees it

    with logger.contextualize(session_id=session_id):
        async with host.serving(session_id=session_id, transport=TRANSPORT, client=client,
                                slot=slot, stop=stop) as served:
            yield SpeechRequests(host.models, served, transport=TRANSPORT,
                                 max_text_chars=host.settings.tts.max_text_chars), served


async def _transcript_events(host: SessionHost, request: Request, slot: Slot,
                             ask: _TranscriptionAsk, pcm: bytes) -> AsyncIterator[bytes]:
    """Server-sent events as OpenAI streams a transcription: a delta per segment, then done."""
    texts = []
    async with _session(host, request, slot) as (speech, served):
        async for segment in speech.transcribe_file(pcm, prompt=ask.prompt):
            if served.end_reason:
                return
            delta = segment.text if not texts else " " + segment.text
            texts.append(segment.text)
            yield _sse({"type": "transcript.text.delta", "delta": delta, "logprobs": None})
    yield _sse({"type": "transcript.text.done", "text": " ".join(texts), "logprobs": None,
                "usage": _usage(len(pcm) / 2 / WHISPER_SAMPLE_RATE)})


def _sse(event: dict) -> bytes:
    return f"data: {json.dumps(event)}\n\n".encode()


async def _speech_bytes(host: SessionHost, request: Request, slot: Slot, ask: _SpeechAsk,
                        encoder: StreamingEncoder) -> AsyncIterator[bytes]:
    async with _session(host, request, slot) as (speech, served):
        async for pcm in speech.synthesize(ask.input, speed=ask.speed):
            if served.end_reason:
                break
            if encoded := await asyncio.to_thread(encoder.encode, pcm):
                yield encoded
    yield await asyncio.to_thread(encoder.finish)


def _usage(duration_secs: float) -> dict:
    return {"type": "duration", "seconds": max(1, round(duration_secs))}


def _transcription(segments: list[Segment], response_format: str, *, duration: float,
                   language: str) -> Response:
    text = " ".join(s.text for s in segments if s.text)
    if response_format == "text":
        return PlainTextResponse(text + "\n")
    if response_format == "srt":
        return PlainTextResponse(srt(segments))
    if response_format == "vtt":
        return PlainTextResponse(vtt(segments), media_type="text/vtt")
    if response_format == "json":
        return JSONResponse({"text": text, "usage": _usage(duration)})
    return JSONResponse({
        "task": "transcribe", "language": LANGUAGE_NAMES.get(language, language),
        "duration": round(duration, 2), "text": text, "usage": _usage(duration),
        "segments": [
            {"id": i, "seek": 0, "start": s.start, "end": s.end, "text": " " + s.text,
             "tokens": list(s.tokens), "temperature": s.temperature,
             "avg_logprob": s.avg_logprob, "compression_ratio": s.compression_ratio,
             "no_speech_prob": s.no_speech_prob}
            for i, s in enumerate(segments)],
    })
