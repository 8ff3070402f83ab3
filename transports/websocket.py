"""The `/ws` endpoint: handshake, then one pipecat WebSocket transport per conversation."""

import asyncio
import json
import math
import uuid

from fastapi import WebSocket, WebSocketDisconnect
from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport

from voxline.agent import SessionOptions
from voxline.auth import AccessGuard, Grant, Refusal, client_address
from voxline.auth.guard import CLOSE_RATE_LIMITED
from voxline.config.settings import VoxlineSettings
from voxline.transports.client_events import ClientOutbox
from voxline.transports.protocol import (
    CLOSE_BAD_START,
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    CLOSE_START_TIMEOUT,
    CLOSE_TRY_AGAIN_LATER,
    ProtocolError,
    StartMessage,
    error_message,
    parse_start,
    parse_text,
)
from voxline.transports.serializer import PIPELINE_SAMPLE_RATE, AudioBudget, PCMSerializer
from voxline.worker import NoSlot, SessionHost

MAX_BAD_STARTS = 5


async def websocket_endpoint(websocket: WebSocket, host: SessionHost,
                             access: AccessGuard) -> None:
    """One client connection, from handshake to close. Never raises into the server."""
    await websocket.accept()  # then refusals can carry a close code and a reason
    grant = await _admitted(websocket, access)
    if grant is None or await _refused_when_busy(websocket, host):
        return
    settings = host.settings
    start = await _receive_start(websocket, settings)
    if start is None:
        return
    # The slot is taken only now: other clients may have taken the free ones meanwhile.
    try:
        slot = host.reserve(address=client_address(websocket), key_id=grant.key_id)
    except NoSlot as e:
        await _refuse(websocket, CLOSE_TRY_AGAIN_LATER if e.code == "server_busy"
                      else CLOSE_RATE_LIMITED, e.code, e.message)
        return
    session_id = uuid.uuid4().hex[:12]
    outbox = ClientOutbox(lambda message: websocket.send_text(json.dumps(message)))
    outbox.put({"type": "ready", "session_id": session_id,
                "sample_rate": start.sample_rate, "output_sample_rate": start.out_rate})
    await host.run(
        _transport(websocket, start, settings, outbox),
        SessionOptions(
            session_id=session_id, transport="websocket",
            persona=host.persona.with_overrides(
                system_prompt=start.system_prompt, greeting=start.greeting),
            worker_id=host.worker_id, client=_client_name(websocket),
            audio_in_sample_rate=PIPELINE_SAMPLE_RATE, audio_out_sample_rate=start.out_rate,
            record=start.record,
            echo_cancellation=(settings.audio.echo_cancellation
                               if start.echo_cancellation is None else start.echo_cancellation),
        ),
        client=outbox, slot=slot,
    )


def _transport(
    websocket: WebSocket, start: StartMessage, settings: VoxlineSettings, outbox: ClientOutbox
) -> FastAPIWebsocketTransport:
    server = settings.server

    async def give_up(code: str, message: str) -> None:
        """The client floods or only sends garbage: tell it, close; the session then ends."""
        outbox.error(code, message)
        await outbox.close()
        await _close(websocket, CLOSE_POLICY_VIOLATION, message)

    transport = FastAPIWebsocketTransport(
        websocket,
        FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_in_sample_rate=PIPELINE_SAMPLE_RATE,
            audio_out_enabled=True,
            audio_out_sample_rate=start.out_rate,
            audio_out_auto_silence=False,  # send bot speech only, not a stream of zeros
            audio_out_end_silence_secs=0,
            serializer=PCMSerializer(
                client_sample_rate=start.sample_rate, max_frame_bytes=server.max_frame_bytes,
                max_text_bytes=server.max_text_bytes, report_error=outbox.error,
                audio_budget=AudioBudget(rate=server.max_audio_rate,
                                         burst_secs=server.max_audio_burst_secs),
                give_up=give_up,
            ),
            session_timeout=max(1, math.ceil(server.max_session_secs)),
            allowed_origins=[],
        ),
    )

    @transport.event_handler("on_session_timeout")
    async def on_session_timeout(_transport, _websocket):
        outbox.error("session_timeout", f"sessions last at most {server.max_session_secs:g}s")
        await outbox.close()
        await _close(websocket, CLOSE_NORMAL, "maximum session length reached")

    return transport


async def _receive_start(websocket: WebSocket, settings: VoxlineSettings) -> StartMessage | None:
    """Wait for a valid `start`; answer bad ones with an error; give up after a few or a timeout."""
    server = settings.server
    for _ in range(MAX_BAD_STARTS):
        try:
            message = await asyncio.wait_for(websocket.receive(), server.start_timeout_secs)
        except TimeoutError:
            await _refuse(websocket, CLOSE_START_TIMEOUT, "start_timeout",
                          f"no start message within {server.start_timeout_secs:g}s; send "
                          "{\"type\": \"start\", \"sample_rate\": 16000} first")
            return None
        if message["type"] == "websocket.disconnect":
            return None
        try:
            if message.get("text") is None:
                raise ProtocolError("not_started", "send the JSON start message before audio")
            start = parse_start(parse_text(message["text"], max_bytes=server.max_text_bytes))
            if (start.system_prompt is not None or start.greeting is not None) and \
                    not settings.agent.allow_client_prompt:
                raise ProtocolError(
                    "client_prompt_not_allowed",
                    "this server keeps its own system prompt and greeting "
                    "(agent.allow_client_prompt is false); send start without them")
            if start.record and not settings.privacy.allow_recording:
                raise ProtocolError(
                    "recording_not_allowed",
                    "this server does not record sessions (privacy.allow_recording is false); "
                    "send start without \"record\": true")
            return start
        except ProtocolError as e:
            await websocket.send_text(json.dumps(error_message(e.code, e.message)))
    await _refuse(websocket, CLOSE_BAD_START, "bad_start",
                  f"{MAX_BAD_STARTS} invalid start messages; closing")
    return None


async def _admitted(websocket: WebSocket, access: AccessGuard) -> Grant | None:
    """The client's grant, or None after refusing (4403 origin, 4401 key, 4429 rate) a client
    the access rule does not let in. A client let in counts as a new session for the rates."""
    grant = await access.admit(websocket)
    refusal = grant if isinstance(grant, Refusal) else access.take_session(websocket, grant)
    if refusal is None:
        return grant
    await _refuse(websocket, refusal.close_code, refusal.code, refusal.message, refusal.reason)
    return None


async def _refused_when_busy(websocket: WebSocket, host: SessionHost) -> bool:
    """Refuse (server_busy, 1013) at once, before `start`, when every session slot is taken;
    say whether it did."""
    if not host.is_full:
        return False
    max_sessions = host.settings.server.max_sessions
    await _refuse(websocket, CLOSE_TRY_AGAIN_LATER, "server_busy",
                  f"all {max_sessions} session slots are in use; retry")
    return True


async def _refuse(websocket: WebSocket, code: int, error: str, message: str,
                  reason: str | None = None) -> None:
    """Send the error, then close with `code` and `reason` (default: the message, cut)."""
    try:
        await websocket.send_text(json.dumps(error_message(error, message)))
    except (RuntimeError, WebSocketDisconnect, OSError):
        return
    await _close(websocket, code, reason or message)


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    try:
        await websocket.close(code=code, reason=reason[:120])
    except (RuntimeError, WebSocketDisconnect, OSError):
        pass  # already closed by the client


def _client_name(websocket: WebSocket) -> str:
    client = websocket.client
    return f"{client.host}:{client.port}" if client else ""
