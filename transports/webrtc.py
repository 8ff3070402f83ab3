"""Browser voice over WebRTC: `/api/offer` signalling and one SmallWebRTC session per peer.

aiortc terminates the media in this process (no media server). Events travel to the page over
the peer's data channel, in the same JSON as on the WebSocket (docs/protocol.md).
"""

import asyncio
import time
import uuid
from typing import Literal

import aioice.ice
from aiortc.sdp import SessionDescription
from fastapi import HTTPException
from loguru import logger
from pipecat.transports.base_transport import TransportParams
from pipecat.transports.smallwebrtc.connection import IceServer, SmallWebRTCConnection
from pipecat.transports.smallwebrtc.request_handler import (
    IceCandidate,
    SmallWebRTCPatchRequest,
    SmallWebRTCRequest,
    SmallWebRTCRequestHandler,
)
from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voxline.agent import SessionOptions
from voxline.config.settings import WebRTCSettings
from voxline.transports.client_events import ClientOutbox
from voxline.worker import SessionHost

WEBRTC_OUTPUT_SAMPLE_RATE = 24000  # Opus resamples to 48 kHz itself; 24 kHz keeps TTS cheap
KEEPALIVE_CHECK_SECS = 1.0
CONNECT_TIMEOUT_SECS = 20.0


class SignallingError(Exception):
    """A request we refuse: `status` is the HTTP status, `code` stable, `message` the fix."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class OfferBody(BaseModel):
    """`POST /api/offer`: the browser's SDP offer (or a renegotiation of an existing peer)."""

    model_config = ConfigDict(extra="ignore")
    sdp: str = Field(min_length=1)
    type: Literal["offer"]
    pc_id: str | None = Field(default=None, max_length=100)
    restart_pc: bool = False


class CandidateBody(BaseModel):
    """One trickled ICE candidate."""

    candidate: str = Field(max_length=2000)
    sdp_mid: str = Field(max_length=100)
    sdp_mline_index: int = Field(ge=0, le=16)


class PatchBody(BaseModel):
    """`PATCH /api/offer`: trickled ICE candidates for a peer."""

    pc_id: str = Field(max_length=100)
    candidates: list[CandidateBody] = Field(max_length=64)


class WebRTCGateway:
    """Answers offers and runs a session for each new peer connection."""

    def __init__(self, host: SessionHost):
        self._host = host
        self.settings = host.settings.webrtc
        _restrict_host_candidates(self.settings.ice_host_addresses)
        self._handler = SmallWebRTCRequestHandler(ice_servers=_ice_servers(self.settings))
        self._sessions: set[asyncio.Task] = set()
        self._peer_ids: set[str] = set()  # peers with a running session

    def is_new_peer(self, pc_id: str | None) -> bool:
        """Whether an offer with this `pc_id` starts a session (pipecat makes a new peer for an
        unknown id, too), as opposed to renegotiating a running one."""
        return pc_id is None or pc_id not in self._peer_ids

    async def offer(self, body: object) -> dict:
        """Validate an offer, answer it, and start a session if the peer is new."""
        offer = _parse(OfferBody, body)
        if len(offer.sdp.encode()) > self.settings.max_sdp_bytes:
            raise SignallingError(413, "sdp_too_large", "the SDP offer is larger than allowed")
        _check_has_audio(offer.sdp)
        if self.is_new_peer(offer.pc_id) and self._host.is_full:
            max_sessions = self._host.settings.server.max_sessions
            raise SignallingError(503, "server_busy",
                                  f"all {max_sessions} session slots are in use; retry later")
        request = SmallWebRTCRequest(sdp=offer.sdp, type=offer.type, pc_id=offer.pc_id,
                                     restart_pc=offer.restart_pc)
        try:
            answer = await self._handler.handle_web_request(request, self._on_new_peer)
        except SignallingError:
            raise
        except Exception as e:  # aiortc raises many kinds for a bad SDP: one request's boundary
            logger.info("Rejected SDP offer: {}", e)
            raise SignallingError(
                400, "bad_sdp", f"the SDP offer could not be used: {e}"
            ) from None
        return {"sdp": answer["sdp"], "type": answer["type"], "pc_id": answer["pc_id"]}

    async def add_candidates(self, body: object) -> None:
        """Add trickled ICE candidates to a known peer."""
        patch = _parse(PatchBody, body)
        try:
            await self._handler.handle_patch_request(SmallWebRTCPatchRequest(
                pc_id=patch.pc_id,
                candidates=[IceCandidate(c.candidate, c.sdp_mid, c.sdp_mline_index)
                            for c in patch.candidates],
            ))
        except ValueError as e:
            raise SignallingError(
                400, "bad_candidate", f"ICE candidate not understood: {e}"
            ) from None
        except HTTPException as e:  # pipecat's answer for an unknown peer
            raise SignallingError(e.status_code, "unknown_peer", str(e.detail)) from None

    async def close(self) -> None:
        """End every WebRTC session (server shutdown)."""
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)
        await self._handler.close()

    async def _on_new_peer(self, connection: SmallWebRTCConnection) -> None:
        # Must return quickly: the browser is waiting for the answer.
        task = asyncio.create_task(self._run_peer(connection), name=f"webrtc-{connection.pc_id}")
        self._sessions.add(task)
        self._peer_ids.add(connection.pc_id)
        task.add_done_callback(self._sessions.discard)
        task.add_done_callback(lambda _task: self._peer_ids.discard(connection.pc_id))

    async def _run_peer(self, connection: SmallWebRTCConnection) -> None:
        session_id = uuid.uuid4().hex[:12]

        async def send(message: dict) -> None:
            connection.send_app_message(message)

        outbox = ClientOutbox(send)
        outbox.put({"type": "ready", "session_id": session_id,
                    "output_sample_rate": WEBRTC_OUTPUT_SAMPLE_RATE})
        transport = SmallWebRTCTransport(connection, TransportParams(
            audio_in_enabled=True, audio_out_enabled=True,
            audio_out_sample_rate=WEBRTC_OUTPUT_SAMPLE_RATE,
        ))
        watchdog = asyncio.create_task(
            _hang_up_when_silent(connection, asyncio.current_task()), name="webrtc-watchdog")
        try:
            await self._host.run(transport, SessionOptions(
                session_id=session_id, transport="webrtc", persona=self._host.persona,
                worker_id=self._host.worker_id, client=connection.pc_id,
                audio_out_sample_rate=WEBRTC_OUTPUT_SAMPLE_RATE,
            ), client=outbox)
        finally:
            watchdog.cancel()
            await connection.disconnect()


async def _hang_up_when_silent(connection: SmallWebRTCConnection, session: asyncio.Task) -> None:
    """A closed tab sends nothing; ICE would notice only after ~30 s (consent expiry). The page
    pings over the data channel every second, and pipecat counts a peer that pinged as connected
    for 3 s after its last ping: a peer that was connected and no longer is has gone, and one
    that never connected within `CONNECT_TIMEOUT_SECS` never will. Hang up on either."""
    started = time.monotonic()
    was_connected = False
    while True:
        await asyncio.sleep(KEEPALIVE_CHECK_SECS)
        if connection.is_connected():
            was_connected = True
            continue
        if was_connected or time.monotonic() - started > CONNECT_TIMEOUT_SECS:
            logger.info("WebRTC peer {} is gone or never connected; hanging up",
                        connection.pc_id)
            await connection.disconnect()
            # A peer that never reached "connected" gets no disconnect event from pipecat's
            # transport, so its session would wait forever: end it here (if the disconnect has
            # not already; its `finally` cancels this task first).
            session.cancel()
            return


def _check_has_audio(sdp: str) -> None:
    """Refuse, before any peer is created, an offer that cannot carry the user's voice."""
    try:
        media = SessionDescription.parse(sdp).media
    except Exception as e:  # aiortc's parser raises ValueError, IndexError, KeyError, ...
        raise SignallingError(400, "bad_sdp", f"the SDP offer could not be parsed: {e}") from None
    if not any(m.kind == "audio" for m in media):
        raise SignallingError(
            400, "bad_sdp", "the SDP offer has no audio section (m=audio); offer a microphone track"
        )


def _parse(model: type[BaseModel], body: object):
    try:
        return model.model_validate(body)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise SignallingError(400, "bad_request", f"{field}: {first['msg']}") from None


def _ice_servers(webrtc: WebRTCSettings) -> list[IceServer]:
    return [
        IceServer(urls=s.urls, username=s.username,
                  credential=s.credential.get_secret_value() if s.credential else None)
        for s in webrtc.ice_servers
    ]


def _restrict_host_candidates(addresses: list[str] | None) -> None:
    """aioice offers no option to choose the local addresses it gathers (and always skips
    127.0.0.1), so when the config names them we replace its address lookup, process-wide."""
    if addresses is None:
        return
    chosen = list(addresses)
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: chosen
    logger.info("WebRTC: ICE host candidates limited to {}", ", ".join(chosen))
