"""Session limits: a session past `server.max_session_secs` is told why and closed cleanly."""

import json

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
