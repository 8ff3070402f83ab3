"""Session limits: a session past `server.max_session_secs` is told why and closed cleanly."""

import asyncio
import json
import urllib.error
import urllib.request

import pytest
import websockets

from tests.conftest import RunningServer, make_settings


async def test_session_longer_than_the_limit_is_closed_with_a_reason(models):
    server = await RunningServer(make_settings(server={"max_session_secs": 1}), models).start()
    try:
        async with websockets.connect(server.ws_url) as ws:
            await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
            messages = []
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    message = await ws.recv()
                    if isinstance(message, str):
                        messages.append(json.loads(message))
        assert closed.value.rcvd.code == 1000
        assert "maximum session length" in closed.value.rcvd.reason
        errors = [m for m in messages if m["type"] == "error"]
        assert errors and errors[0]["code"] == "session_timeout"
    finally:
        await server.stop()


async def test_a_huge_signalling_body_is_refused_before_it_is_read_whole(server):
    """Regression: /api/offer read any body whole before checking webrtc.max_sdp_bytes."""
    request = urllib.request.Request(server.http_url + "/api/offer", data=b"x" * 600_000,
                                     method="POST", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        await asyncio.to_thread(urllib.request.urlopen, request, timeout=20)
    answer = json.loads(refused.value.read())
    assert refused.value.code == 413 and answer["error"] == "body_too_large", answer
