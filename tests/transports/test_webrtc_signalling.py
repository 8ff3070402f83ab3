"""WebRTC signalling against a real server, with offers from aiortc (the Python WebRTC stack):
slots are taken before any await, peer ids reach only their own live session, and peers that
never connect give their slot back."""

import asyncio
import http.client
import json

import pytest
from pipecat.transports.smallwebrtc.request_handler import SmallWebRTCRequestHandler

from tests.conftest import RunningServer, make_settings
from tests.sdp import audio_offer_sdp
from voxline.bus.events import SessionStarted
from voxline.transports.webrtc import CLOSE_TIMEOUT_SECS, WebRTCGateway

CONNECT_TIMEOUT_SECS = 2.0


@pytest.fixture
async def small_server(models):
    """Two slots; a peer that does not connect within 2 s is hung up on."""
    settings = make_settings(server={"max_sessions": 2},
                             webrtc={"ice_host_addresses": ["127.0.0.1"],
                                     "connect_timeout_secs": CONNECT_TIMEOUT_SECS,
                                     "max_renegotiations": 1})
    server = await RunningServer(settings, models).start()
    yield server
    await server.stop()


def _call(server, method: str, body: dict, source: str = "127.0.0.1") -> tuple[int, dict]:
    port = int(server.http_url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20,
                                            source_address=(source, 0))
    try:
        connection.request(method, "/api/offer", json.dumps(body),
                           {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


async def call(server, method: str, body: dict, source: str = "127.0.0.1") -> tuple[int, dict]:
    return await asyncio.to_thread(_call, server, method, body, source)


async def _until_no_sessions(server, timeout_secs: float = 15) -> None:
    async with asyncio.timeout(timeout_secs):
        await server.host.wait_idle()


async def test_concurrent_offers_never_take_more_slots_than_there_are(small_server):
    sdps = await asyncio.gather(*(audio_offer_sdp() for _ in range(6)))
    replies = await asyncio.gather(*(call(small_server, "POST", {"sdp": s, "type": "offer"})
                                     for s in sdps))
    statuses = sorted(status for status, _ in replies)
    assert statuses == [200, 200, 503, 503, 503, 503], replies
    assert all(r["error"] == "server_busy" for s, r in replies if s == 503)
    assert small_server.host.live <= 2
    # Neither peer ever connects: both are hung up on after the connect timeout, slots freed.
    await _until_no_sessions(small_server, CONNECT_TIMEOUT_SECS + 10)
    status, _ = await call(small_server, "POST", {"sdp": await audio_offer_sdp(), "type": "offer"})
    assert status == 200
    await _until_no_sessions(small_server, CONNECT_TIMEOUT_SECS + 10)


async def test_a_peer_id_reaches_only_its_own_live_session(small_server):
    sdp = await audio_offer_sdp()
    started = small_server.worker.bus.subscribe(lambda e: isinstance(e, SessionStarted))
    status, answer = await call(small_server, "POST", {"sdp": sdp, "type": "offer"})
    assert status == 200
    pc_id = answer["pc_id"]
    event = await asyncio.wait_for(started.get(), 10)
    started.close()
    assert event.client == "webrtc:127.0.0.1" and pc_id not in event.model_dump_json()
    # Another client (another address) cannot renegotiate or trickle into it.
    for method, body in (("POST", {"sdp": sdp, "type": "offer", "pc_id": pc_id}),
                         ("PATCH", {"pc_id": pc_id, "candidates": []})):
        status, reply = await call(small_server, method, body, source="127.0.0.2")
        assert (status, reply["error"]) == (404, "unknown_peer"), (method, reply)
    # An ICE restart is refused (pipecat would make a new peer connection for it).
    status, reply = await call(small_server, "POST",
                               {"sdp": sdp, "type": "offer", "pc_id": pc_id, "restart_pc": True})
    assert (status, reply["error"]) == (400, "restart_not_supported"), reply
    # Its own client may renegotiate, `webrtc.max_renegotiations` (1) times.
    status, reply = await call(small_server, "POST", {"sdp": sdp, "type": "offer",
                                                      "pc_id": pc_id})
    assert status != 404 and reply.get("error") != "too_many_renegotiations", reply
    status, reply = await call(small_server, "POST", {"sdp": sdp, "type": "offer",
                                                      "pc_id": pc_id})
    assert (status, reply["error"]) == (429, "too_many_renegotiations"), reply
    # Once its session has ended (and the peer has closed), the id is unknown to everyone.
    await _until_no_sessions(small_server, CONNECT_TIMEOUT_SECS + 10)
    for _ in range(50):
        status, _reply = await call(small_server, "POST", {"sdp": sdp, "type": "offer",
                                                            "pc_id": pc_id})
        if status == 404:
            break
        await asyncio.sleep(0.1)
    for method, body in (("POST", {"sdp": sdp, "type": "offer", "pc_id": pc_id}),
                         ("PATCH", {"pc_id": pc_id, "candidates": []})):
        status, reply = await call(small_server, method, body)
        assert (status, reply["error"]) == (404, "unknown_peer"), (method, reply)
    assert small_server.host.live == 0


async def test_per_address_cap_on_live_sessions(models):
    settings = make_settings(limits={"max_sessions_per_ip": 1},
                             webrtc={"ice_host_addresses": ["127.0.0.1"],
                                     "connect_timeout_secs": CONNECT_TIMEOUT_SECS})
    server = await RunningServer(settings, models).start()
    try:
        offer = {"sdp": await audio_offer_sdp(), "type": "offer"}
        status, _ = await call(server, "POST", offer)
        assert status == 200
        status, reply = await call(server, "POST", offer)
        assert (status, reply["error"]) == (429, "too_many_sessions"), reply
        status, _ = await call(server, "POST", offer, source="127.0.0.2")
        assert status == 200  # another address
        await _until_no_sessions(server, CONNECT_TIMEOUT_SECS + 10)
    finally:
        await server.stop()


async def test_shutdown_does_not_hang_on_a_peer_connection_that_never_closes(small_server,
                                                                            monkeypatch):
    """One shutdown waited over a minute on the WebRTC gateway: its close is bounded."""
    closing = asyncio.Event()

    async def hangs(_handler):
        closing.set()
        await asyncio.sleep(3600)

    monkeypatch.setattr(SmallWebRTCRequestHandler, "close", hangs)
    gateway = WebRTCGateway(small_server.host)
    async with asyncio.timeout(CLOSE_TIMEOUT_SECS + 5):
        await gateway.close()
    assert closing.is_set()
