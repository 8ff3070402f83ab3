"""Browser voice over WebRTC: `/api/offer` signalling and one SmallWebRTC session per peer.

aiortc terminates the media in this process (no media server). Events travel to the page over
the peer's data channel, in the same JSON as on the WebSocket (docs/protocol.md).
"""

import asyncio
import time
import uuid
from dataclasses import dataclass
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
from voxline.worker import NoSlot, SessionHost, Slot

WEBRTC_OUTPUT_SAMPLE_RATE = 24000  # Opus resamples to 48 kHz itself; 24 kHz keeps TTS cheap
KEEPALIVE_CHECK_SECS = 1.0
CLOSE_TIMEOUT_SECS = 5.0  # at shutdown


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


@dataclass(frozen=True)
class Caller:
    """Who sent a signalling request: its address and API key (None: keys are off)."""

    address: str
    key_id: str | None = None

    @property
    def owner(self) -> str:
        """What a peer is bound to: the key that created it, else the address."""
        return f"key:{self.key_id}" if self.key_id else f"address:{self.address}"


@dataclass
class _Peer:
    """A peer connection with a live session."""

    owner: str
    renegotiations: int = 0


class WebRTCGateway:
    """Answers offers and runs a session for each new peer connection.

    An offer without `pc_id` is a new session (it takes a slot before any await). An offer or
    candidates with a `pc_id` reach only a live peer of the same caller: the id of an ended
    session, or someone else's, is unknown (404), and a peer may renegotiate only
    `webrtc.max_renegotiations` times. ICE restart (`restart_pc`) is refused: pipecat makes a
    new peer connection for it whose old id it never forgets.
    """

    def __init__(self, host: SessionHost):
        self._host = host
        self.settings = host.settings.webrtc
        _restrict_host_candidates(self.settings.ice_host_addresses)
        self._handler = SmallWebRTCRequestHandler(ice_servers=_ice_servers(self.settings))
        self._sessions: set[asyncio.Task] = set()
        self._peers: dict[str, _Peer] = {}  # by pc_id: peers with a live session

    async def offer(self, body: object, caller: Caller) -> dict:
        """Validate an offer, answer it, and start a session if it is a new peer."""
        offer = _parse(OfferBody, body)
        if len(offer.sdp.encode()) > self.settings.max_sdp_bytes:
            raise SignallingError(413, "sdp_too_large", "the SDP offer is larger than allowed")
        if offer.restart_pc:
            raise SignallingError(400, "restart_not_supported",
                                  "ICE restart (restart_pc) is not supported; make a new offer "
                                  "without pc_id for a new session")
        _check_has_audio(offer.sdp)
        if offer.pc_id is not None:
            return await self._renegotiate(offer, self._live_peer(offer.pc_id, caller))
        try:
            slot = self._host.reserve(address=caller.address, key_id=caller.key_id)
        except NoSlot as e:
            raise SignallingError(503 if e.code == "server_busy" else 429, e.code,
                                  e.message) from None
        started: list[asyncio.Task] = []

        async def on_new_peer(connection: SmallWebRTCConnection) -> None:
            # Must return quickly: the browser is waiting for the answer.
            started.append(self._start_session(connection, slot, caller))

        try:
            return await self._answer(offer, on_new_peer)
        finally:
            if not started:
                slot.release()

    async def add_candidates(self, body: object, caller: Caller) -> None:
        """Add trickled ICE candidates to a live peer of this caller."""
        patch = _parse(PatchBody, body)
        self._live_peer(patch.pc_id, caller)
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
        """End every WebRTC session (server shutdown); give up on peers that do not close
        within `CLOSE_TIMEOUT_SECS` (the process is exiting)."""
        for task in list(self._sessions):
            task.cancel()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_SECS):
                await asyncio.gather(*self._sessions, return_exceptions=True)
                await self._handler.close()
        except TimeoutError:
            logger.warning("WebRTC: {} peer(s) still closing after {:g}s; leaving them",
                           len(self._sessions), CLOSE_TIMEOUT_SECS)

    def _live_peer(self, pc_id: str, caller: Caller) -> "_Peer":
        peer = self._peers.get(pc_id)
        if peer is None or peer.owner != caller.owner:
            raise SignallingError(404, "unknown_peer",
                                  "no live session of yours has this pc_id; make an offer "
                                  "without pc_id for a new session")
        return peer

    async def _renegotiate(self, offer: "OfferBody", peer: _Peer) -> dict:
        if peer.renegotiations >= self.settings.max_renegotiations:
            raise SignallingError(429, "too_many_renegotiations",
                                  f"a peer may renegotiate at most "
                                  f"{self.settings.max_renegotiations} times; make a new offer "
                                  "without pc_id for a new session")
        peer.renegotiations += 1
        return await self._answer(offer, _no_new_peer)

    async def _answer(self, offer: "OfferBody", on_new_peer) -> dict:
        request = SmallWebRTCRequest(sdp=offer.sdp, type=offer.type, pc_id=offer.pc_id)
        try:
            answer = await self._handler.handle_web_request(request, on_new_peer)
        except Exception as e:  # aiortc raises many kinds for a bad SDP: one request's boundary
            logger.info("Rejected SDP offer: {}", e)
            raise SignallingError(
                400, "bad_sdp", f"the SDP offer could not be used: {e}"
            ) from None
        return {"sdp": answer["sdp"], "type": answer["type"], "pc_id": answer["pc_id"]}

    def _start_session(self, connection: SmallWebRTCConnection, slot: Slot,
                       caller: Caller) -> asyncio.Task:
        pc_id = connection.pc_id  # fixed: restarts, which would change it, are refused
        task = asyncio.create_task(self._run_peer(connection, slot, caller),
                                   name=f"webrtc-{pc_id}")
        self._sessions.add(task)
        self._peers[pc_id] = _Peer(caller.owner)
        task.add_done_callback(self._sessions.discard)
        return task

    async def _run_peer(self, connection: SmallWebRTCConnection, slot: Slot,
                        caller: Caller) -> None:
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
            _hang_up_when_silent(connection, asyncio.current_task(),
                                 self.settings.connect_timeout_secs), name="webrtc-watchdog")
        try:
            # The client is named by its address, never its pc_id: events reach every dashboard
            # and Redis, and a pc_id is what signalling requests for the peer carry.
            await self._host.run(transport, SessionOptions(
                session_id=session_id, transport="webrtc", persona=self._host.persona,
                worker_id=self._host.worker_id, client=f"webrtc:{caller.address}",
                audio_out_sample_rate=WEBRTC_OUTPUT_SAMPLE_RATE,
            ), client=outbox, slot=slot)
        finally:
            self._peers.pop(connection.pc_id, None)
            watchdog.cancel()
            await connection.disconnect()


async def _no_new_peer(connection: SmallWebRTCConnection) -> None:
    """A renegotiation reuses its peer: pipecat never calls this for one."""


async def _hang_up_when_silent(connection: SmallWebRTCConnection, session: asyncio.Task,
                               connect_timeout_secs: float) -> None:
    """A closed tab sends nothing; ICE would notice only after ~30 s (consent expiry). The page
    pings over the data channel every second, and pipecat counts a peer that pinged as connected
    for 3 s after its last ping: a peer that was connected and no longer is has gone, and one
    that never connected within `connect_timeout_secs` (`webrtc.connect_timeout_secs`) never
    will. Hang up on either."""
    started = time.monotonic()
    was_connected = False
    while True:
        await asyncio.sleep(KEEPALIVE_CHECK_SECS)
        if connection.is_connected():
            was_connected = True
            continue
        if was_connected or time.monotonic() - started > connect_timeout_secs:
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
