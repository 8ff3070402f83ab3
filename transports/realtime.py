"""`GET /v1/realtime`: OpenAI's Realtime API over a WebSocket, on our own session pipeline
(turn taking, barge-in, echo cancellation). A client of the API — OpenAI's SDKs, or anything
written for it — talks to the local models as it would to OpenAI's. What is and is not
supported: README "OpenAI-compatible"."""

import asyncio
import base64
import binascii
import json
import uuid
from collections.abc import Callable

from fastapi import WebSocket, WebSocketDisconnect
from loguru import logger
from pipecat.audio.utils import (
    alaw_to_pcm,
    create_stream_resampler,
    pcm_to_alaw,
    pcm_to_ulaw,
    ulaw_to_pcm,
)
from pipecat.frames.frames import InputAudioRawFrame, LLMMessagesAppendFrame, LLMRunFrame

from voxline.agent import SessionOptions
from voxline.auth import AccessGuard, Refusal, client_address
from voxline.bus import SessionBus, events
from voxline.transports.client_events import ClientOutbox
from voxline.transports.model_names import OPENAI_VOICES, ModelNames
from voxline.transports.protocol import CLOSE_NORMAL, CLOSE_TRY_AGAIN_LATER
from voxline.transports.realtime_conversation import BadEvent, RealtimeConversation
from voxline.transports.realtime_events import EventNamer
from voxline.transports.realtime_session import (
    FORMAT_RATES,
    RealtimeSession,
    SessionUpdateError,
)
from voxline.transports.realtime_transport import (
    OUTPUT_SAMPLE_RATE,
    PIPELINE_SAMPLE_RATE,
    RealtimeCallbacks,
    RealtimeTransport,
)
from voxline.transports.serializer import AudioBudget
from voxline.worker import NoSlot, SessionHost
from voxline.worker.host import Slot

# One append's audio (11 s of pcm16): OpenAI takes up to 15 MiB, but the server's WebSocket
# frames end at 16 × server.max_frame_bytes (1 MiB by default: uvicorn closes with 1009 above
# it); appends are meant to be the audio as it is captured.
MAX_APPEND_BYTES = 512 * 1024
MAX_EVENT_BYTES = 1024 * 1024
FUNCTION_OUTPUT_WAIT_SECS = 5.0
MAX_HELD_SECS = 120  # push-to-talk: the most audio one turn holds
ROLES = ("user", "assistant", "system")


async def realtime_endpoint(websocket: WebSocket, host: SessionHost,
                            access: AccessGuard) -> None:
    """One Realtime connection, from handshake to close. Never raises into the server."""
    await websocket.accept()
    beta = websocket.headers.get("openai-beta", "").startswith("realtime")
    namer = EventNamer(beta=beta)
    grant = await access.admit(websocket)
    refusal = grant if isinstance(grant, Refusal) else access.take_session(websocket, grant)
    if refusal is not None:
        await _refuse(websocket, namer, refusal.close_code, refusal.code, refusal.message)
        return
    try:
        slot = host.reserve(address=client_address(websocket) or None, key_id=grant.key_id)
    except NoSlot as e:
        await _refuse(websocket, namer, CLOSE_TRY_AGAIN_LATER if e.code == "server_busy"
                      else 4429, e.code, e.message)
        return
    model = websocket.query_params.get("model") or "voxline"
    await RealtimeConnection(websocket, host, slot, namer, model=model,
                             rate_limits=lambda: access.sessions_left(websocket)).run()


async def _refuse(websocket: WebSocket, namer: EventNamer, close_code: int, code: str,
                  message: str) -> None:
    kind = "server_error" if code == "server_busy" else "invalid_request_error"
    try:
        await websocket.send_text(json.dumps(namer.error(code, message, kind=kind)))
        await websocket.close(code=close_code, reason=message[:120])
    except (RuntimeError, WebSocketDisconnect, OSError):
        pass


class RealtimeConnection:
    """One client: its events in, the session's events out. The session is built on the first
    event that needs it (audio, an item, a response), so that a `session.update` sent first
    (instructions, formats) applies from the start."""

    def __init__(self, websocket: WebSocket, host: SessionHost, slot: Slot, namer: EventNamer,
                 *, model: str, rate_limits: Callable[[], tuple[int, int, float]]):
        self._ws, self._host, self._slot, self._namer = websocket, host, slot, namer
        self._rate_limits = rate_limits
        self._session_id = uuid.uuid4().hex[:12]
        self._names = ModelNames.of(host.models, host.settings)
        self._voices = frozenset(self._names.voices) | OPENAI_VOICES
        self._config = RealtimeSession(id=f"sess_{self._session_id}", model=model,
                                       voice=self._names.voices[0],
                                       instructions=host.persona.system_prompt)
        self._outbox = ClientOutbox(lambda message: websocket.send_text(json.dumps(message)),
                                    max_pending=4096)
        server = host.settings.server
        self._budget = AudioBudget(rate=server.max_audio_rate,
                                   burst_secs=server.max_audio_burst_secs)
        self._resampler = create_stream_resampler()
        self._out_resampler = create_stream_resampler()
        self._transport: RealtimeTransport | None = None
        self._run: asyncio.Task | None = None
        self._bad_events = 0
        self._audio_ms = 0  # of the user's audio fed so far
        self._held = bytearray()  # push-to-talk: the user's audio until the commit
        self._conversation = RealtimeConversation(
            namer, self._outbox.put, audio_ms=lambda: self._audio_ms,
            encode=self._from_pipeline_pcm, after_response=self._say_rate_limits)
        self._emit = self._conversation.emit

    async def run(self) -> None:
        self._emit("session.created", session=self._config.shape(beta=self._namer.beta))
        self._say_rate_limits()
        try:
            while True:
                message = await self._ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                await self._handle(message.get("text"))
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the client went away
        finally:
            if self._transport is None:
                self._slot.release()
                await self._outbox.close()
            else:
                await self._transport.disconnect("client disconnected")
                await asyncio.gather(self._run, return_exceptions=True)

    # The client's events

    async def _handle(self, text: str | None) -> None:
        if text is None:
            return self._bad("invalid_event", "send JSON text events; audio goes base64 in "
                                              "input_audio_buffer.append")
        if len(text) > MAX_EVENT_BYTES:
            return self._bad("event_too_large", f"an event over {MAX_EVENT_BYTES} bytes")
        try:
            event = json.loads(text)
        except (ValueError, RecursionError):
            return self._bad("invalid_json", "the event is not JSON")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return self._bad("invalid_event", "an event is a JSON object with a \"type\"")
        handler = self._handlers().get(event["type"])
        event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        if handler is None:
            return self._bad("unknown_event", f"unknown or unsupported event type "
                                              f"{event['type'][:60]!r}", event_id=event_id)
        try:
            await handler(event)
        except BadEvent as e:
            self._bad(e.code, e.message, event_id=event_id, param=e.param)

    def _handlers(self):
        return {
            "session.update": self._session_update,
            "input_audio_buffer.append": self._append,
            "input_audio_buffer.commit": self._commit,
            "input_audio_buffer.clear": self._clear,
            "conversation.item.create": self._item_create,
            "conversation.item.truncate": self._truncate,
            "response.create": self._response_create,
            "response.cancel": self._response_cancel,
        }

    async def _session_update(self, event: dict) -> None:
        update = event.get("session")
        if isinstance(update, dict) and update.get("tools") and \
                self._host.settings.llm.provider != "openai":
            raise BadEvent("tools_need_remote_llm", "function tools need a remote "
                            "OpenAI-compatible LLM (llm.provider: openai); the local model does "
                            "not call functions", "session.tools")
        try:
            updated = self._config.updated(event.get("session"), voices=self._voices,
                                           started=self._transport is not None)
        except SessionUpdateError as e:
            raise BadEvent(e.code, e.message, e.param) from None
        if updated.instructions != self._host.persona.system_prompt and \
                not self._host.settings.agent.allow_client_prompt:
            # Refused whole: none of the update's other fields are taken either.
            raise BadEvent("client_prompt_not_allowed", "this server keeps its own "
                            "instructions (agent.allow_client_prompt is false)",
                            "session.instructions")
        self._config = updated
        self._emit("session.updated", session=self._config.shape(beta=self._namer.beta))

    async def _append(self, event: dict) -> None:
        data = _decoded(event.get("audio"))
        if len(data) > MAX_APPEND_BYTES:
            raise BadEvent("audio_too_large", f"one append carries at most {MAX_APPEND_BYTES}"
                            " bytes of audio", "audio")
        fmt = self._config.input_format
        if fmt == "pcm16" and len(data) % 2:
            raise BadEvent("invalid_audio", "pcm16 audio is whole 16-bit samples", "audio")
        rate = FORMAT_RATES[fmt]
        samples = len(data) // 2 if fmt == "pcm16" else len(data)
        if not data:
            return
        if not self._budget.spend(samples / rate):
            self._outbox.put(self._namer.error(
                "audio_too_fast", "audio arrives much faster than real time; send it as it "
                "is captured; closing"))
            await self._outbox.close()
            await self._ws.close(code=1008, reason="audio too fast")
            return
        pcm = await self._to_pipeline_pcm(data, fmt, self._resampler)
        self._audio_ms += round(samples * 1000 / rate)
        if self._config.turn_detection is None:  # push-to-talk: held until the commit
            if len(self._held) + len(pcm) > MAX_HELD_SECS * PIPELINE_SAMPLE_RATE * 2:
                raise BadEvent("buffer_full", f"the input buffer holds at most "
                                f"{MAX_HELD_SECS} s: commit or clear it", "audio")
            self._held += pcm
            return
        self._ensure_session().input().feed(
            InputAudioRawFrame(audio=pcm, sample_rate=PIPELINE_SAMPLE_RATE, num_channels=1))

    @staticmethod
    async def _to_pipeline_pcm(data: bytes, fmt: str, resampler) -> bytes:
        if fmt == "g711_ulaw":
            return await ulaw_to_pcm(data, 8000, PIPELINE_SAMPLE_RATE, resampler)
        if fmt == "g711_alaw":
            return await alaw_to_pcm(data, 8000, PIPELINE_SAMPLE_RATE, resampler)
        return await resampler.resample(data, 24000, PIPELINE_SAMPLE_RATE)

    async def _commit(self, _event: dict) -> None:
        """Push-to-talk: the held audio is the user's turn, transcribed whole; the client asks
        for the answer (`response.create`)."""
        if self._config.turn_detection is not None:
            raise BadEvent("not_needed", "with server_vad or semantic_vad the server commits "
                            "each turn itself; set turn_detection to null for push-to-talk")
        if not self._held:
            raise BadEvent("input_audio_buffer_commit_empty", "the input buffer is empty")
        pcm, self._held = bytes(self._held), bytearray()
        await self._spoken_turn(pcm, self._conversation.add_audio(committed=True))

    async def _spoken_turn(self, pcm: bytes, item_id: str) -> None:
        """A user audio item, transcribed whole, into the conversation (no answer yet)."""
        transport = self._ensure_session()
        transcript = await self._host.models.stt.decode(pcm)
        SessionBus(self._host.bus, session_id=self._session_id,
                   source=self._host.worker_id).publish(events.TranscriptFinal,
                                                        text=transcript.text)
        transport.input().feed(LLMMessagesAppendFrame(
            messages=[{"role": "user", "content": transcript.text}], run_llm=False))
        self._conversation.transcribed(item_id, transcript.text)

    async def _clear(self, _event: dict) -> None:
        self._held = bytearray()
        self._emit("input_audio_buffer.cleared")

    async def _item_create(self, event: dict) -> None:
        item = event.get("item")
        if isinstance(item, dict) and item.get("type") == "function_call_output":
            return self._conversation.function_output(item)
        if not isinstance(item, dict) or item.get("type") != "message" or \
                item.get("role") not in ROLES:
            raise BadEvent("unsupported_item", "conversation.item.create takes a message item "
                            "(role user, assistant or system) with input_text content, or a "
                            "function_call_output; audio items are not supported yet", "item")
        content = item.get("content") if isinstance(item.get("content"), list) else []
        given_id = item.get("id") if isinstance(item.get("id"), str) else None
        audio = [part.get("audio") for part in content
                 if isinstance(part, dict) and part.get("type") == "input_audio"]
        if audio and item["role"] == "user":
            pcm = b"".join([await self._item_audio(a) for a in audio])
            return await self._spoken_turn(pcm, self._conversation.add_audio(item_id=given_id))
        texts = [part.get("text") for part in content
                 if isinstance(part, dict) and part.get("type") in ("input_text", "text",
                                                                     "output_text")]
        if not texts or not all(isinstance(t, str) for t in texts):
            raise BadEvent("unsupported_item", "the item's content must be input_text parts, "
                           "or input_audio parts for a user item", "item.content")
        text = " ".join(texts)
        self._ensure_session().input().feed(LLMMessagesAppendFrame(
            messages=[{"role": item["role"], "content": text}], run_llm=False))
        self._conversation.add_text(item["role"], text, given_id)

    async def _item_audio(self, audio) -> bytes:
        """An audio item's base64 audio (in the session's input format) as pipeline PCM."""
        data = _decoded(audio)
        fmt = self._config.input_format
        if fmt == "pcm16" and len(data) % 2:
            raise BadEvent("invalid_audio", "pcm16 audio is whole 16-bit samples",
                           "item.content")
        return await self._to_pipeline_pcm(data, fmt, create_stream_resampler())

    async def _truncate(self, event: dict) -> None:
        # The server already keeps only what was played of an interrupted reply.
        self._emit("conversation.item.truncated", item_id=event.get("item_id"),
                   content_index=event.get("content_index", 0),
                   audio_end_ms=event.get("audio_end_ms", 0))

    async def _response_create(self, _event: dict) -> None:
        # A function's output just given must be in the LLM's context before it runs again.
        await self._conversation.function_outputs_delivered(FUNCTION_OUTPUT_WAIT_SECS)
        self._ensure_session().input().feed(LLMRunFrame())

    async def _response_cancel(self, _event: dict) -> None:
        if not self._conversation.is_responding or self._transport is None:
            raise BadEvent("response_cancel_not_active", "no response is in progress")
        await self._transport.input().interrupt()

    def _bad(self, code: str, message: str, *, event_id: str | None = None,
             param: str | None = None) -> None:
        self._bad_events += 1
        logger.log("INFO" if self._bad_events == 1 else "DEBUG", "Realtime client error {}: {}",
                   code, message)
        self._outbox.put(self._namer.error(code, message, event_id=event_id, param=param))

    # The session

    def _ensure_session(self) -> RealtimeTransport:
        if self._transport is not None:
            return self._transport
        host = self._host
        self._transport = RealtimeTransport(
            callbacks=RealtimeCallbacks(audio=self._conversation.bot_audio,
                                        user_started=self._conversation.user_started,
                                        user_stopped=self._conversation.user_stopped,
                                        interrupted=self._conversation.interrupted),
            name=f"realtime-{self._session_id}")
        client = self._ws.client
        options = SessionOptions(
            session_id=self._session_id, transport="realtime",
            persona=host.persona.with_overrides(system_prompt=self._config.instructions or None,
                                                greeting=""),
            worker_id=host.worker_id, client=f"{client.host}:{client.port}" if client else "",
            audio_in_sample_rate=PIPELINE_SAMPLE_RATE, audio_out_sample_rate=OUTPUT_SAMPLE_RATE,
            echo_cancellation=host.settings.audio.echo_cancellation,
            vad_stop_secs=self._config.vad_stop_secs,
            incomplete_grace_secs=self._config.incomplete_grace_secs,
            tools=self._config.function_schemas(),
            function_call_handler=self._conversation.function_call if self._config.tools
            else None)
        self._run = asyncio.create_task(
            host.run(self._transport, options, client=self, slot=self._slot),
            name=f"voxline-realtime-{self._session_id}")
        self._run.add_done_callback(lambda _task: asyncio.ensure_future(self._session_over()))
        return self._transport

    async def _session_over(self) -> None:
        """The session ended on the server's side (an operator, a timeout): close."""
        try:
            await self._ws.close(code=CLOSE_NORMAL, reason="session ended")
        except (RuntimeError, WebSocketDisconnect, OSError):
            pass

    async def _from_pipeline_pcm(self, pcm: bytes) -> bytes:
        fmt = self._config.output_format
        if fmt == "pcm16":
            return pcm
        convert = pcm_to_ulaw if fmt == "g711_ulaw" else pcm_to_alaw  # a phone bridge: 8 kHz
        return await convert(pcm, OUTPUT_SAMPLE_RATE, 8000, self._out_resampler)

    def _say_rate_limits(self) -> None:
        """`rate_limits.updated`: the new sessions (connections) this client may still open
        this minute, when a limit applies (`limits.sessions_per_minute_per_ip`)."""
        limit, left, refill_secs = self._rate_limits()
        if limit:
            self._emit("rate_limits.updated", rate_limits=[{
                "name": "requests", "limit": limit, "remaining": left,
                "reset_seconds": round(refill_secs, 1)}])

    # The session host's client (worker/host.py SessionClient)

    def deliver(self, event: events.Event) -> None:
        if isinstance(event, events.SessionError):
            self._outbox.put(self._namer.error(event.code, event.message, kind="server_error"))
        self._conversation.deliver(event)

    def error(self, code: str, message: str) -> None:
        self._outbox.put(self._namer.error(code, message, kind="server_error"))

    async def say_shutting_down(self) -> None:
        self._outbox.put(self._namer.error("server_shutdown", "the server is shutting down; "
                                           "reconnect to go on", kind="server_error"))
        await self._outbox.close()

    async def close(self) -> None:
        await self._outbox.close()


def _decoded(audio) -> bytes:
    """Base64 audio from a client event, or `BadEvent`."""
    if not isinstance(audio, str):
        raise BadEvent("invalid_value", "audio must be base64 text", "audio")
    try:
        return base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise BadEvent("invalid_audio", "audio is not valid base64", "audio") from None
